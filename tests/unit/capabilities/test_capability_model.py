"""Construction, bounds, refusals, and use-time checks (`permits`)."""

from __future__ import annotations

from decimal import Decimal

import pytest

from shared import capabilities as caps
from shared.capabilities import (
    Amount,
    Capability,
    CapabilityError,
    Identifiers,
    attenuated,
    covered,
    permits,
    within,
)

R = "https://bank.example.com/accounts/*"


def cap(**kw: object) -> Capability:
    base: dict[str, object] = {"type": "records", "resource": R, "actions": {"read"}}
    base.update(kw)
    return Capability(**base)  # type: ignore[arg-type]


# -- construction -----------------------------------------------------------------------------------
def test_is_frozen_and_hashable() -> None:
    a = cap(identifiers=["x", {"from": 1, "to": 3}], constraints={"amount": {"value": "5.00", "currency": "EUR"}})
    b = cap(identifiers=[{"from": 1, "to": 3}, "x"], constraints={"amount": Amount("5", "EUR")})
    assert a == b and hash(a) == hash(b) and len({a, b}) == 1
    with pytest.raises(AttributeError):
        a.type = "other"  # type: ignore[misc]


@pytest.mark.parametrize(
    ("kw", "reason"),
    [
        ({"type": ""}, "invalid_type"),
        ({"type": "Records"}, "invalid_type"),
        ({"type": "records/read"}, "invalid_type"),
        ({"type": "r" * 65}, "invalid_type"),
        ({"type": 7}, "invalid_type"),
        ({"type": "records\n"}, "invalid_type"),
        ({"actions": {"read\n"}}, "invalid_actions"),
        ({"constraints": {"amount": {"value": "5\n", "currency": "EUR"}}}, "invalid_caveat"),
        ({"constraints": {"amount": {"value": "5", "currency": "EUR\n"}}}, "invalid_caveat"),
        ({"actions": set()}, "invalid_actions"),
        ({"actions": "read"}, "invalid_actions"),  # a string is not a set of actions
        ({"actions": {"*"}}, "invalid_actions"),  # no wildcard action
        ({"actions": {"Read"}}, "invalid_actions"),
        ({"actions": {"records/read"}}, "invalid_actions"),
        ({"actions": {"a" * 33}}, "invalid_actions"),
        ({"actions": {f"a{i}" for i in range(caps.MAX_ACTIONS + 1)}}, "too_large"),
        ({"resource": "not a uri"}, "invalid_resource"),
        ({"identifiers": []}, "invalid_identifiers"),
        ({"identifiers": ["x", "x"]}, "invalid_identifiers"),
        ({"identifiers": [{"from": 5, "to": 4}]}, "invalid_identifiers"),
        ({"identifiers": [{"from": 1}]}, "invalid_identifiers"),
        ({"identifiers": [{"from": 1, "to": 2, "step": 1}]}, "invalid_identifiers"),
        ({"identifiers": [{"from": True, "to": 2}]}, "invalid_identifiers"),
        ({"identifiers": [{"from": 0, "to": 2**63}]}, "invalid_identifiers"),
        ({"identifiers": ["a\nb"]}, "invalid_identifiers"),
        ({"identifiers": ["x" * 257]}, "invalid_identifiers"),
        ({"identifiers": [str(i) + "x" for i in range(caps.MAX_IDENTIFIERS + 1)]}, "too_large"),
        ({"identifiers": "acct-1"}, "invalid_identifiers"),
        ({"not_after": -1}, "invalid_caveat"),
        ({"not_after": 1.5}, "invalid_caveat"),
        ({"not_after": True}, "invalid_caveat"),
        ({"not_after": caps.MAX_TIMESTAMP + 1}, "invalid_caveat"),
        ({"data_class": "secret"}, "invalid_caveat"),
        ({"max_uses": 0}, "invalid_caveat"),
        ({"max_uses": caps.MAX_USES + 1}, "invalid_caveat"),
        ({"constraints": {"limit": 5}}, "unknown_field"),
        ({"constraints": {"amount": {"value": 5, "currency": "EUR"}}}, "invalid_caveat"),  # JSON number
        ({"constraints": {"amount": {"value": "-5", "currency": "EUR"}}}, "invalid_caveat"),
        ({"constraints": {"amount": {"value": "1e3", "currency": "EUR"}}}, "invalid_caveat"),
        ({"constraints": {"amount": {"value": "1.1234567", "currency": "EUR"}}}, "invalid_caveat"),
        ({"constraints": {"amount": {"value": "1" * 19, "currency": "EUR"}}}, "invalid_caveat"),
        ({"constraints": {"amount": {"value": "NaN", "currency": "EUR"}}}, "invalid_caveat"),
        ({"constraints": {"amount": {"value": "5", "currency": "eur"}}}, "invalid_caveat"),
        ({"constraints": {"amount": {"value": "5", "currency": "EUR", "fx": "1"}}}, "invalid_caveat"),
    ],
)
def test_refuses_malformed(kw: dict[str, object], reason: str) -> None:
    with pytest.raises(CapabilityError) as info:
        cap(**kw)
    assert info.value.reason == reason


def test_amount_from_code_is_validated_too() -> None:
    with pytest.raises(CapabilityError):
        Amount(Decimal("-1"), "EUR")
    with pytest.raises(CapabilityError):
        Amount(Decimal("Infinity"), "EUR")
    assert Amount("50.00", "EUR") == Amount(Decimal("50"), "EUR")
    assert Amount("50.10", "EUR").to_json() == {"value": "50.1", "currency": "EUR"}


def test_data_class_scale_is_exported_in_order() -> None:
    assert caps.DATA_CLASSES == ("public", "internal", "confidential", "restricted")


# -- covered / attenuated -------------------------------------------------------------------------------
def test_grants_are_never_combined() -> None:
    read, write = cap(actions={"read"}), cap(actions={"write"})
    both = cap(actions={"read", "write"})
    assert not covered([both], [read, write])
    assert covered([read, write], [both])
    # UCAN entries carry one action each, so a merged child is checked per action (see below).
    assert attenuated([both], [read, write])
    assert not attenuated([both], [read])


def test_attenuation_checks_a_merged_child_one_action_at_a_time() -> None:
    # Two parent grants on different resources; the child narrows both onto one URI with the same
    # caveats, so `from_ucan` reads it back as ONE capability with two actions.
    read_all = cap(resource="https://bank.example.com/accounts/*", actions={"read"}, max_uses=5)
    write_one = cap(resource="https://bank.example.com/accounts/7/*", actions={"write"}, max_uses=5)
    child = cap(resource="https://bank.example.com/accounts/7/x", actions={"read", "write"}, max_uses=5)
    assert caps.from_ucan(caps.to_ucan([
        cap(resource=child.resource, actions={"read"}, max_uses=5),
        cap(resource=child.resource, actions={"write"}, max_uses=5),
    ])) == [child]
    assert attenuated([child], [read_all, write_one])
    assert not covered([child], [read_all, write_one])  # RAR never combines grants
    # Each action still needs a parent that allows it with every caveat.
    assert not attenuated([cap(resource=child.resource, actions={"read", "write"}, max_uses=6)], [read_all, write_one])
    assert not attenuated([cap(resource=child.resource, actions={"read", "pay"}, max_uses=5)], [read_all, write_one])


def test_every_request_needs_a_grant() -> None:
    assert covered([cap()], [cap(), cap(type="other")])
    assert not covered([cap(), cap(type="other")], [cap()])


def test_empty_request_is_not_covered_but_empty_delegation_is_attenuated() -> None:
    assert not covered([], [cap()])
    assert attenuated([], [cap()])
    assert not attenuated([cap()], [])


def test_covered_is_bounded() -> None:
    many = [cap()] * (caps.MAX_CAPABILITIES + 1)
    with pytest.raises(CapabilityError) as info:
        covered(many, [cap()])
    assert info.value.reason == "too_large"
    with pytest.raises(TypeError):
        within(cap(), caps.to_rar(cap()))  # type: ignore[arg-type]


# -- permits --------------------------------------------------------------------------------------------
PAY = Capability(
    "payment_initiation",
    "https://bank.example.com/payments/*",
    {"pay"},
    identifiers=["acct-1", {"from": 100, "to": 199}],
    not_after=1_000,
    data_class="confidential",
    max_uses=2,
    constraints={"amount": {"value": "50", "currency": "EUR"}},
)
OK = {
    "identifier": "acct-1",
    "data_class": "internal",
    "amount": {"value": "49.99", "currency": "EUR"},
    "uses": 1,
    "now": 1_000,
}


def test_permits_the_operation_inside() -> None:
    assert permits(PAY, "pay", "https://bank.example.com/payments/p1", **OK)
    assert permits(PAY, "pay", "https://bank.example.com/payments/p1", **{**OK, "identifier": "150"})
    assert permits(PAY, "pay", "https://bank.example.com/payments/p1", **{**OK, "identifier": 150})
    assert permits(PAY, "pay", "HTTPS://BANK.example.com:443/payments/p1/x", **OK)


@pytest.mark.parametrize(
    ("action", "resource", "change"),
    [
        ("read", "https://bank.example.com/payments/p1", {}),  # action
        ("pay", "https://bank.example.com/payments", {}),  # the prefix itself
        ("pay", "https://bank.example.com/other/p1", {}),  # resource
        ("pay", "https://evil.example.net/payments/p1", {}),  # host
        ("pay", "https://bank.example.com/payments/p1", {"identifier": None}),  # identifier required
        ("pay", "https://bank.example.com/payments/p1", {"identifier": "acct-2"}),
        ("pay", "https://bank.example.com/payments/p1", {"identifier": "200"}),
        ("pay", "https://bank.example.com/payments/p1", {"identifier": "0150"}),  # not canonical
        ("pay", "https://bank.example.com/payments/p1", {"identifier": "150\n"}),
        ("pay", "https://bank.example.com/payments/p1", {"identifier": " 150"}),
        ("pay", "https://bank.example.com/payments/p1", {"identifier": "x" * 300}),
        ("pay", "https://bank.example.com/payments/p1", {"now": 1_001}),  # not_after
        ("pay", "https://bank.example.com/payments/p1", {"data_class": "restricted"}),
        ("pay", "https://bank.example.com/payments/p1", {"data_class": None}),  # ceiling needs a class
        ("pay", "https://bank.example.com/payments/p1", {"uses": 2}),  # max_uses
        ("pay", "https://bank.example.com/payments/p1", {"uses": None}),  # uses must be counted
        ("pay", "https://bank.example.com/payments/p1", {"uses": -1}),
        ("pay", "https://bank.example.com/payments/p1", {"amount": {"value": "50.01", "currency": "EUR"}}),
        ("pay", "https://bank.example.com/payments/p1", {"amount": {"value": "10", "currency": "USD"}}),
        ("pay", "https://bank.example.com/payments/p1", {"amount": None}),  # amount must be stated
    ],
)
def test_permits_refuses_outside(action: str, resource: str, change: dict[str, object]) -> None:
    assert not permits(PAY, action, resource, **{**OK, **change})  # type: ignore[arg-type]


def test_permits_without_caveats_ignores_extra_facts() -> None:
    plain = cap()
    assert permits(plain, "read", "https://bank.example.com/accounts/1", data_class="restricted", uses=99)


@pytest.mark.parametrize(
    ("resource", "kw"),
    [
        ("https://bank.example.com/payments/*", {}),  # a pattern is not an operation
        ("https://bank.example.com/payments/%2F", {}),
        ("https://bank.example.com/payments/p1", {"data_class": "secret"}),
        ("https://bank.example.com/payments/p1", {"amount": {"value": "x", "currency": "EUR"}}),
        ("https://bank.example.com/payments/p1", {"identifier": 1.5}),
    ],
)
def test_permits_refuses_malformed_operations(resource: str, kw: dict[str, object]) -> None:
    for capability in (PAY, cap()):  # whether or not the capability would look at the field
        with pytest.raises(CapabilityError) as info:
            permits(capability, "pay", resource, **{**OK, **kw})  # type: ignore[arg-type]
        assert info.value.reason == "invalid_operation"
    with pytest.raises(CapabilityError):
        permits(PAY, ["pay"], "https://bank.example.com/payments/p1", **OK)  # type: ignore[arg-type]


def test_permits_uses_the_wall_clock_by_default() -> None:
    past = cap(not_after=1_000)
    future = cap(not_after=caps.MAX_TIMESTAMP)
    assert not permits(past, "read", "https://bank.example.com/accounts/1")
    assert permits(future, "read", "https://bank.example.com/accounts/1")


def test_identifiers_bounds_are_constants() -> None:
    assert Identifiers.of([{"from": -caps.MAX_RANGE_BOUND, "to": caps.MAX_RANGE_BOUND}]).contains("0")
    assert len(Identifiers.of([str(i) for i in range(caps.MAX_IDENTIFIERS)]).ranges) == 1
