"""RFC 9396 authorization details and UCAN 0.10 `cap`, both ways."""

from __future__ import annotations

import json

import pytest
from hypothesis import given
from hypothesis import strategies as st

from shared import capabilities as caps
from shared.capabilities import (
    Capability,
    CapabilityError,
    canonical,
    from_rar,
    from_ucan,
    parse_authorization_details,
    to_rar,
    to_ucan,
    within,
)
from tests.unit.capabilities.cap_strategies import capabilities


# -- round trips ------------------------------------------------------------------------------------
@given(capabilities())
def test_rar_round_trip(cap: Capability) -> None:
    detail = to_rar(cap)
    assert from_rar(json.loads(json.dumps(detail))) == cap  # through real JSON


@given(st.lists(capabilities(), max_size=6))
def test_ucan_round_trip(cs: list[Capability]) -> None:
    field = to_ucan(cs)
    back = from_ucan(json.loads(json.dumps(field)))
    assert back == canonical(cs)
    # Merging per-ability entries changes nothing a capability allows: each side covers the other.
    assert all(any(within(c, b) for b in back) for c in cs)
    assert all(any(within(b, c) for c in canonical(cs)) for b in back)


@given(capabilities())
def test_ucan_round_trip_of_one_capability_is_exact(cap: Capability) -> None:
    assert from_ucan(to_ucan([cap])) == [cap]


def test_rar_shape() -> None:
    cap = Capability(
        "payment_initiation",
        "https://bank.example.com/payments",
        {"pay"},
        identifiers=["acct-1"],
        not_after=100,
        constraints={"amount": {"value": "50.00", "currency": "EUR"}},
    )
    assert to_rar(cap) == {
        "type": "payment_initiation",
        "locations": ["https://bank.example.com/payments"],
        "actions": ["pay"],
        "identifier": "acct-1",
        "not_after": 100,
        "amount": {"value": "50", "currency": "EUR"},
    }
    many = Capability("records", "https://h.example.com/r/*", {"read"}, identifiers=["a", {"from": 1, "to": 3}])
    assert to_rar(many)["identifiers"] == ["a", {"from": 1, "to": 3}]
    assert "identifier" not in to_rar(many)
    assert to_rar(Capability("records", "https://h.example.com/r", {"read"}, identifiers=["7"]))["identifier"] == "7"


def test_ucan_shape() -> None:
    a = Capability("records", "https://h.example.com/r/*", {"read", "write"}, data_class="internal")
    b = Capability("records", "https://h.example.com/r/*", {"read"}, identifiers=["x"])
    assert to_ucan([a, b]) == {
        "https://h.example.com/r/*": {
            "records/read": [{"data_class": "internal"}, {"identifiers": ["x"]}],
            "records/write": [{"data_class": "internal"}],
        }
    }
    assert to_ucan([Capability("records", "https://h.example.com/r", {"read"})]) == {
        "https://h.example.com/r": {"records/read": [{}]}
    }


def test_ucan_abilities_are_case_insensitive_and_empty_caveats_grant_nothing() -> None:
    got = from_ucan({"https://h.example.com/r": {"Records/READ": [{}], "records/write": []}})
    assert got == [Capability("records", "https://h.example.com/r", {"read"})]
    assert from_ucan({}) == []


def test_parse_authorization_details() -> None:
    details = [to_rar(Capability("records", "https://h.example.com/r", {"read"}))]
    assert parse_authorization_details(details) == [Capability("records", "https://h.example.com/r", {"read"})]
    for bad in ([], {}, "x", details * (caps.MAX_CAPABILITIES + 1)):
        with pytest.raises(CapabilityError) as info:
            parse_authorization_details(bad)
        assert info.value.reason == "invalid_authorization_details"


# -- RAR refusals ---------------------------------------------------------------------------------
GOOD = {"type": "records", "locations": ["https://h.example.com/r"], "actions": ["read"]}


@pytest.mark.parametrize(
    "detail",
    [
        "records",
        {**GOOD, "unknown": 1},
        {**GOOD, "datatypes": ["x"]},
        {**GOOD, "privileges": ["admin"]},
        {k: v for k, v in GOOD.items() if k != "type"},
        {k: v for k, v in GOOD.items() if k != "locations"},  # omission never means "everywhere"
        {k: v for k, v in GOOD.items() if k != "actions"},  # omission never means "every action"
        {**GOOD, "actions": []},
        {**GOOD, "actions": ["read", "read"]},
        {**GOOD, "actions": "read"},
        {**GOOD, "actions": ["*"]},
        {**GOOD, "locations": []},
        {**GOOD, "locations": ["https://h.example.com/a", "https://h.example.com/b"]},
        {**GOOD, "locations": "https://h.example.com/r"},
        {**GOOD, "locations": ["https://h.example.com/*/r"]},
        {**GOOD, "identifier": "a", "identifiers": ["b"]},
        {**GOOD, "identifier": ["a"]},
        {**GOOD, "identifier": ""},
        {**GOOD, "identifiers": "a"},
        {**GOOD, "identifiers": []},
        {**GOOD, "identifiers": ["x"] * 2},
        {**GOOD, "identifiers": [f"id{i}" for i in range(caps.MAX_IDENTIFIERS + 1)]},
        {**GOOD, "amount": {"value": 5, "currency": "EUR"}},
        {**GOOD, "max_uses": "1"},
        {**GOOD, "not_after": "2030-01-01"},
        {**GOOD, "data_class": "top-secret"},
    ],
)
def test_rar_refusals(detail: object) -> None:
    with pytest.raises(CapabilityError) as info:
        from_rar(detail)  # type: ignore[arg-type]
    assert info.value.reason == "invalid_authorization_details"


# -- UCAN refusals ----------------------------------------------------------------------------------
R = "https://h.example.com/r"


@pytest.mark.parametrize(
    "field",
    [
        [],
        {R: {}},  # a resource needs one or more abilities
        {R: []},
        {R: {"*": [{}]}},  # the top ability is not supported
        {R: {"read": [{}]}},  # no namespace
        {R: {"records/read/x": [{}]}},
        {R: {"records/*": [{}]}},
        {R: {"records/read": {}}},
        {R: {"records/read": ["x"]}},
        {R: {"records/read": [{"nb": 1}]}},  # unknown caveat: nobody would enforce it
        {R: {"records/read": [{"identifiers": []}]}},
        {R: {"records/read": [{}], "RECORDS/read": [{}]}},  # same ability twice
        {"ucan:*": {"ucan/*": [{}]}},
        {"ucan:./*": {"ucan/*": [{}]}},
        {"https://h.example.com/*/r": {"records/read": [{}]}},
        {R: {"records/read": [{}] * (caps.MAX_UCAN_ENTRIES + 1)}},
        {f"{R}/{i}": {"records/read": []} for i in range(caps.MAX_UCAN_ENTRIES + 1)},
        {1: {"records/read": [{}]}},
        {f"{R}/{i}": {"records/read": [{}]} for i in range(caps.MAX_CAPABILITIES + 1)},
    ],
)
def test_ucan_refusals(field: object) -> None:
    with pytest.raises(CapabilityError) as info:
        from_ucan(field)  # type: ignore[arg-type]
    assert info.value.reason == "invalid_ucan_capability"


# -- fuzz: arbitrary JSON only ever meets a typed refusal ---------------------------------------------
json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=8),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner, max_size=3),
    max_leaves=12,
)
FULL = {
    "type": "records",
    "locations": ["https://h.example.com/r/*"],
    "actions": ["read", "write"],
    "identifiers": ["a", {"from": 1, "to": 3}],
    "not_after": 100,
    "data_class": "internal",
    "max_uses": 3,
    "amount": {"value": "5", "currency": "EUR"},
}
# One or two fields of a valid detail replaced by arbitrary JSON, so every field's check is reached.
mutations = st.dictionaries(st.sampled_from([*FULL, "identifier"]), json_values, min_size=1, max_size=2)


@given(mutations)
def test_from_rar_never_raises_anything_but_capability_error(changes: dict[str, object]) -> None:
    try:
        from_rar({**FULL, **changes})
    except CapabilityError as exc:
        assert exc.reason == "invalid_authorization_details"


@given(mutations, st.sampled_from(["records/read", "Records/Write", "*", "read", "records/"]))
def test_from_ucan_never_raises_anything_but_capability_error(changes: dict[str, object], ability: str) -> None:
    caveat = {k: v for k, v in {**FULL, **changes}.items() if k not in {"type", "locations", "actions"}}
    caveat.pop("identifier", None)
    for field in ({"https://h.example.com/r": {ability: [caveat]}}, changes, {"https://h.example.com/r": changes}):
        try:
            from_ucan(field)  # type: ignore[arg-type]
        except CapabilityError as exc:
            assert exc.reason == "invalid_ucan_capability"
