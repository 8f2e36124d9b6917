"""The published contracts are current, and every struct refuses what it should."""

from __future__ import annotations

import msgspec
import pytest

from contracts import export
from contracts import registration as reg
from contracts.subjects import ROUTES, TOPICS, check_token, tenant_of


def test_exported_files_are_current() -> None:
    stale = export.write(check=True)
    assert not stale, f"run `agentid contracts export`: stale {stale}"


def test_asyncapi_document_names_every_route_and_topic() -> None:
    doc = export.asyncapi()
    assert doc["asyncapi"] == "3.0.0"
    for route in ROUTES:
        assert route.name in doc["operations"]
    for topic in TOPICS:
        assert f"evt.{topic.name}" in doc["operations"]


@pytest.mark.parametrize("t", sorted({r.request for r in ROUTES} | {t.event for t in TOPICS}, key=str))
def test_unknown_fields_are_refused_everywhere(t: type) -> None:
    assert t.__struct_config__.forbid_unknown_fields


@pytest.mark.parametrize("token", ["a.b", "a*", ">", "", "a b", "ä"])
def test_subject_tokens_cannot_smuggle_wildcards(token: str) -> None:
    with pytest.raises(ValueError):
        check_token(token)


def test_tenant_of() -> None:
    assert tenant_of("agentid.v1.acme.registration.spawn") == "acme"
    with pytest.raises(ValueError):
        tenant_of("other.v1.acme.registration.spawn")


@pytest.mark.parametrize("body", [
    {"trust_domain": "UPPER.case"}, {"trust_domain": "a" * 300}, {"trust_domain": 5},
    {"trust_domain": "acme.example\n"},
])
def test_bounds(body: dict) -> None:
    with pytest.raises(msgspec.ValidationError):
        msgspec.convert(body, reg.CreateTenant)


def test_ids_refuse_a_trailing_newline() -> None:
    with pytest.raises(msgspec.ValidationError):
        msgspec.convert({"agent_id": "agt_1\n"}, reg.GetAgent)
    assert msgspec.convert({"agent_id": "agt_1"}, reg.GetAgent).agent_id == "agt_1"
