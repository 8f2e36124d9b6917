"""The delegation worker's pure parts: base capabilities per tier and purpose, rule validation, the
SDK's time arithmetic and the Graphviz rendering of a graph."""

from __future__ import annotations

from datetime import UTC, datetime

import msgspec
import pytest

from agentid.delegation import _epoch, to_dot
from contracts import delegation as dlg
from services.delegation import rules
from shared.capabilities import MAX_CAPABILITIES, to_rar
from shared.errors import InvalidRequest

READ = {"type": "records", "locations": ["https://api.example.com/records/*"], "actions": ["read"]}
PAY = {"type": "payments", "locations": ["https://bank.example/payments/*"], "actions": ["pay"],
       "amount": {"value": "100", "currency": "EUR"}}
CONFIG = dlg.DelegationConfig(base=[
    dlg.BaseCapabilities(capabilities=[READ]),                                 # everyone
    dlg.BaseCapabilities(tiers=["high"], purposes=["loan-decisions"], capabilities=[PAY]),
    dlg.BaseCapabilities(tiers=["high"], capabilities=[READ]),                 # a duplicate of the first
])


def test_an_agent_gets_the_union_of_the_rules_that_match_it() -> None:
    assert [to_rar(c) for c in rules.base_capabilities(CONFIG, tier="standard", purpose="x")] == [READ]
    assert [to_rar(c) for c in rules.base_capabilities(CONFIG, tier="high", purpose="x")] == [READ]
    high_loans = rules.base_capabilities(CONFIG, tier="high", purpose="loan-decisions")
    assert sorted(c.type for c in high_loans) == ["payments", "records"]


def test_no_rule_means_no_root() -> None:
    assert rules.base_capabilities(dlg.DelegationConfig(), tier="high", purpose="x") == []
    only_high = dlg.DelegationConfig(base=[dlg.BaseCapabilities(tiers=["high"], capabilities=[READ])])
    assert rules.base_capabilities(only_high, tier="standard", purpose="x") == []


@pytest.mark.parametrize("detail", [
    {"type": "records", "actions": ["read"]},                                          # no location
    {"type": "records", "locations": ["not a uri"], "actions": ["read"]},
    {"type": "records", "locations": ["https://a.example/*"], "actions": []},
    {"type": "records", "locations": ["https://a.example/*"], "actions": ["read"], "privileges": ["x"]},
])
def test_rules_that_are_not_capabilities_are_refused(detail: dict) -> None:
    with pytest.raises(InvalidRequest):
        rules.check(dlg.DelegationConfig(base=[dlg.BaseCapabilities(capabilities=[detail])]))


def test_rules_adding_up_to_too_many_capabilities_are_refused() -> None:
    many = [{"type": "records", "locations": [f"https://a.example/{i}"], "actions": ["read"]}
            for i in range(MAX_CAPABILITIES + 1)]
    config = dlg.DelegationConfig(base=[dlg.BaseCapabilities(capabilities=many[:16]),
                                        dlg.BaseCapabilities(capabilities=many[16:])])
    with pytest.raises(InvalidRequest):
        rules.check(config)
    rules.check(CONFIG)


def test_the_depth_limit_is_bounded_by_the_contract_and_the_verifier() -> None:
    assert rules.max_depth(dlg.DelegationConfig()) == 5
    with pytest.raises(msgspec.ValidationError):
        msgspec.convert({"max_depth": 17}, dlg.DelegationConfig)
    with pytest.raises(msgspec.ValidationError):
        msgspec.convert({"max_depth": 0}, dlg.DelegationConfig)


def test_times_are_aware_datetimes_or_seconds_from_now() -> None:
    assert _epoch(600, 1_000) == 1_600
    assert _epoch(datetime(2030, 1, 1, tzinfo=UTC), 0) == int(datetime(2030, 1, 1, tzinfo=UTC).timestamp())
    for bad in (datetime(2030, 1, 1), 0, -5, True, "600"):
        with pytest.raises(ValueError):
            _epoch(bad, 1_000)  # type: ignore[arg-type]


def test_the_dot_rendering_quotes_everything_and_marks_revoked_links() -> None:
    authority, agent = "did:key:z6MkAuthority", 'did:key:z6Mk"quoted"'
    graph = dlg.DelegationGraph(
        nodes=[dlg.GraphNode(did=authority, kind="authority", label="tenant authority"),
               dlg.GraphNode(did=agent, kind="agent", agent_id="agt_1", label='agt_1 ("x")')],
        edges=[dlg.GraphEdge(cid="b" + "a" * 58, issuer=authority, audience=agent, depth=1, capabilities=[READ],
                             status="revoked")])
    dot = to_dot(graph)
    assert dot.startswith("digraph delegation {\n") and dot.endswith("}\n")
    assert '"did:key:z6MkAuthority" -> "did:key:z6Mk\\"quoted\\""' in dot
    assert "records:read" in dot and "style=dashed" in dot and "doubleoctagon" in dot
    assert '\\"x\\"' in dot
