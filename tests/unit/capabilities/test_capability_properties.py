"""Properties of `within`: an order, sound against `permits`, and strict where it must be."""

from __future__ import annotations

from dataclasses import replace

from hypothesis import given
from hypothesis import strategies as st

from shared import uri
from shared.capabilities import DATA_CLASSES, Amount, Capability, Identifiers, permits, within
from tests.unit.capabilities.cap_strategies import (
    NEW_SEGMENT,
    capabilities,
    concrete_uris,
    narrower,
    operations,
    resources,
    wider,
)


@st.composite
def chain_of_three(draw: st.DrawFn) -> tuple[Capability, Capability, Capability]:
    c = draw(capabilities())
    b = draw(narrower(c))
    return draw(narrower(b)), b, c


@st.composite
def narrowed(draw: st.DrawFn) -> tuple[Capability, Capability]:
    parent = draw(capabilities())
    return draw(narrower(parent)), parent


@st.composite
def widened(draw: st.DrawFn) -> tuple[str, Capability, Capability]:
    parent = draw(capabilities())
    move, child = draw(wider(parent))
    return move, child, parent


@given(capabilities())
def test_reflexive(a: Capability) -> None:
    assert within(a, a)


@given(chain_of_three())
def test_transitive_along_narrowing(abc: tuple[Capability, Capability, Capability]) -> None:
    a, b, c = abc
    assert within(a, b) and within(b, c)
    assert within(a, c)


@given(capabilities(), capabilities(), capabilities())
def test_transitive_on_random_triples(a: Capability, b: Capability, c: Capability) -> None:
    if within(a, b) and within(b, c):
        assert within(a, c)


@given(narrowed())
def test_every_narrowing_move_stays_within(pair: tuple[Capability, Capability]) -> None:
    child, parent = pair
    assert within(child, parent)


@given(widened())
def test_every_widening_move_breaks_within(triple: tuple[str, Capability, Capability]) -> None:
    move, child, parent = triple
    assert not within(child, parent), move


@given(narrowed(), operations())
def test_within_is_sound_for_narrowed_children(pair: tuple[Capability, Capability], op: dict) -> None:
    """The point of `within`: whatever the child permits, the parent permits too."""
    child, parent = pair
    if permits(child, **op):
        assert permits(parent, **op)


@given(capabilities(), capabilities(), operations())
def test_within_is_sound_for_random_pairs(a: Capability, b: Capability, op: dict) -> None:
    if within(a, b) and permits(a, **op):
        assert permits(b, **op)


@given(widened(), operations())
def test_a_widened_child_is_never_less_than_its_parent_where_it_differs(
    triple: tuple[str, Capability, Capability], op: dict
) -> None:
    # Most widening moves only add operations: whatever the parent permits, the widened child
    # permits too. The moves below swap operations instead (a pattern does not match its own prefix;
    # omitted identifiers mean "none", not "all"), so they are checked by the test above only.
    move, child, parent = triple
    swaps = {"other type", "other host", "other currency", "concrete to pattern",
             "identifiers where parent has none", "drop identifiers"}
    if move in swaps:
        return
    if permits(parent, **op):
        assert permits(child, **op), move


# -- patterns: no widening through them, tested on concrete URIs -----------------------------------
@given(resources, resources, concrete_uris)
def test_pattern_cover_is_sound_on_concrete_uris(child: str, parent: str, concrete: str) -> None:
    c, p, u = uri.parse(child), uri.parse(parent), uri.parse(concrete)
    if p.covers(c) and c.matches(u):
        assert p.matches(u)


@given(resources, resources)
def test_pattern_cover_is_exact(child: str, parent: str) -> None:
    """When the parent does not cover the child, a concrete URI shows it: the child names it, the parent not."""
    c, p = uri.parse(child), uri.parse(parent)
    if p.covers(c):
        return
    witness_segments = [*c.segments, NEW_SEGMENT] if c.is_pattern else list(c.segments)
    witness = uri.parse(c.origin + "/" + "/".join(witness_segments))
    assert c.matches(witness)
    assert not p.matches(witness)


@given(resources, resources, concrete_uris)
def test_capability_resource_within_agrees_with_concrete_matching(child: str, parent: str, concrete: str) -> None:
    a = Capability("records", child, {"read"})
    b = Capability("records", parent, {"read"})
    if within(a, b) and permits(a, "read", concrete):
        assert permits(b, "read", concrete)


# -- one property per component --------------------------------------------------------------------
@given(st.frozensets(st.sampled_from(["read", "write", "pay", "delete"]), min_size=1),
       st.frozensets(st.sampled_from(["read", "write", "pay", "delete"]), min_size=1))
def test_actions_subset(child: frozenset[str], parent: frozenset[str]) -> None:
    r = "https://api.example.com/x"
    assert within(Capability("records", r, child), Capability("records", r, parent)) == (child <= parent)


@given(st.integers(0, 30), st.integers(0, 30), st.integers(0, 30), st.integers(0, 30))
def test_identifier_ranges_subset(a: int, b: int, c: int, d: int) -> None:
    lo1, hi1 = sorted((a, b))
    lo2, hi2 = sorted((c, d))
    r = "https://api.example.com/x"
    child = Capability("records", r, {"read"}, identifiers=[{"from": lo1, "to": hi1}])
    parent = Capability("records", r, {"read"}, identifiers=[{"from": lo2, "to": hi2}])
    assert within(child, parent) == (lo2 <= lo1 and hi1 <= hi2)


@given(st.sets(st.sampled_from("abcd"), min_size=1), st.sets(st.sampled_from("abcd"), min_size=1))
def test_identifier_ids_subset(child: set[str], parent: set[str]) -> None:
    r = "https://api.example.com/x"
    a = Capability("records", r, {"read"}, identifiers=sorted(child))
    b = Capability("records", r, {"read"}, identifiers=sorted(parent))
    assert within(a, b) == (child <= parent)


@given(st.sampled_from(DATA_CLASSES), st.sampled_from(DATA_CLASSES))
def test_data_class_order(child: str, parent: str) -> None:
    r = "https://api.example.com/x"
    a = Capability("records", r, {"read"}, data_class=child)
    b = Capability("records", r, {"read"}, data_class=parent)
    assert within(a, b) == (DATA_CLASSES.index(child) <= DATA_CLASSES.index(parent))


@given(st.integers(1, 50), st.integers(1, 50))
def test_max_uses(child: int, parent: int) -> None:
    r = "https://api.example.com/x"
    a = Capability("records", r, {"read"}, max_uses=child)
    b = Capability("records", r, {"read"}, max_uses=parent)
    assert within(a, b) == (child <= parent)


@given(st.integers(0, 10**6), st.integers(0, 10**6), st.sampled_from(["EUR", "USD"]), st.sampled_from(["EUR", "USD"]))
def test_amounts(child_cents: int, parent_cents: int, child_cur: str, parent_cur: str) -> None:
    r = "https://bank.example.com/payments"

    def cap(cents: int, cur: str) -> Capability:
        return Capability("payment_initiation", r, {"pay"}, constraints={"amount": Amount(f"{cents / 100:.2f}", cur)})

    expected = child_cur == parent_cur and child_cents <= parent_cents
    assert within(cap(child_cents, child_cur), cap(parent_cents, parent_cur)) == expected


@given(capabilities(), st.integers(0, 300), st.sampled_from(DATA_CLASSES), st.integers(1, 9))
def test_adding_any_caveat_keeps_within(cap: Capability, not_after: int, data_class: str, uses: int) -> None:
    """Caveats only narrow: a child may add a caveat its parent lacks, or tighten one it has."""
    child = cap
    if cap.not_after is None:
        child = replace(child, not_after=not_after)
    if cap.data_class is None:
        child = replace(child, data_class=data_class)
    if cap.max_uses is None:
        child = replace(child, max_uses=uses)
    if cap.amount is None:
        child = replace(child, constraints={"amount": Amount("1", "EUR")})
    assert within(child, cap)


def test_identifiers_omitted_in_grant_mean_none_not_all() -> None:
    r = "https://bank.example.com/accounts/*"
    grant = Capability("records", r, {"read"})
    assert not within(Capability("records", r, {"read"}, identifiers=["acct-1"]), grant)
    assert not within(grant, Capability("records", r, {"read"}, identifiers=["acct-1"]))
    assert permits(grant, "read", "https://bank.example.com/accounts/1")
    assert not permits(grant, "read", "https://bank.example.com/accounts/1", identifier="acct-1")


def test_integer_spelling_of_identifiers_is_canonical() -> None:
    assert Identifiers.of(["7", {"from": 8, "to": 9}, {"from": 1, "to": 6}]) == Identifiers.of([{"from": 1, "to": 9}])
    assert Identifiers.of(["007"]).ranges == () and Identifiers.of(["007"]).ids == {"007"}
    ids = Identifiers.of([{"from": 1, "to": 4}, "5", {"from": 6, "to": 9}])
    assert Identifiers.of([{"from": 1, "to": 9}]).issubset(ids)
