"""Hypothesis strategies for capabilities: random ones, narrower ones, wider ones, and operations.

Pools are small on purpose, so that random capabilities overlap often enough for `within` to be
interesting. Values outside the pools (`ESCALATE`, `EVIL_HOST`, `NEW_ID`) are what widening adds.
"""

from __future__ import annotations

from dataclasses import replace
from decimal import Decimal

from hypothesis import strategies as st

from shared.capabilities import DATA_CLASSES, Amount, Capability, Identifiers

TYPES = ("records", "payment_initiation")
ACTIONS = ("read", "write", "pay")
ESCALATE = "delete"  # never in a generated capability, so adding it always widens
HOSTS = ("api.example.com", "files.example.com")
EVIL_HOST = "evil.example.net"
SEGMENTS = ("a", "b", "c")
NEW_SEGMENT = "zz"  # never generated: a witness URI below any pattern
IDS = ("acct-1", "acct-2", "acct-3")
NEW_ID = "acct-new"
CURRENCIES = ("EUR", "USD")

segments = st.lists(st.sampled_from(SEGMENTS), max_size=4)


def _uri(host: str, segs: list[str]) -> str:
    return f"https://{host}/" + "/".join(segs)


concrete_uris = st.builds(_uri, st.sampled_from(HOSTS), segments)
patterns = st.builds(
    lambda h, segs: _uri(h, [*segs, "*"]), st.sampled_from(HOSTS), st.lists(st.sampled_from(SEGMENTS), max_size=3)
)
resources = st.one_of(concrete_uris, patterns)

actions = st.frozensets(st.sampled_from(ACTIONS), min_size=1)


@st.composite
def ranges(draw: st.DrawFn) -> dict[str, int]:
    lo = draw(st.integers(0, 20))
    return {"from": lo, "to": draw(st.integers(lo, 25))}


identifier_items = st.one_of(
    st.sampled_from(IDS),
    st.integers(0, 25).map(str),
    ranges(),
)
identifiers = st.lists(identifier_items, min_size=1, max_size=4, unique_by=repr).map(Identifiers.of)

amounts = st.builds(
    lambda v, c: Amount(format(Decimal(v) / 2, "f"), c), st.integers(0, 200), st.sampled_from(CURRENCIES)
)
timestamps = st.integers(100, 200)


@st.composite
def capabilities(draw: st.DrawFn) -> Capability:
    amount = draw(st.none() | amounts)
    return Capability(
        type=draw(st.sampled_from(TYPES)),
        resource=draw(resources),
        actions=draw(actions),
        identifiers=draw(st.none() | identifiers),
        not_after=draw(st.none() | timestamps),
        data_class=draw(st.none() | st.sampled_from(DATA_CLASSES)),
        max_uses=draw(st.none() | st.integers(1, 5)),
        constraints={} if amount is None else {"amount": amount},
    )


# -- narrowing -----------------------------------------------------------------------------------
@st.composite
def narrower(draw: st.DrawFn, cap: Capability) -> Capability:
    """A capability within `cap`, by any mix of the narrowing moves."""
    resource = cap.resource
    if cap.uri.is_pattern:
        prefix = list(cap.uri.segments)
        extra = draw(st.lists(st.sampled_from(SEGMENTS), max_size=2))
        if draw(st.booleans()):
            resource = cap.uri.origin + "/" + "/".join([*prefix, *extra, "*"])
        else:
            resource = cap.uri.origin + "/" + "/".join([*prefix, *extra, draw(st.sampled_from(SEGMENTS))])
    child_ids = None
    if cap.identifiers is not None:
        child_ids = draw(_narrower_identifiers(cap.identifiers))
    parent_amount = cap.amount
    if parent_amount is not None:
        value = max(Decimal(0), parent_amount.value - draw(st.integers(0, 3)) * Decimal("0.5"))
        amount: Amount | None = Amount(value, parent_amount.currency)
    else:
        amount = draw(st.none() | amounts)
    rank = DATA_CLASSES.index(cap.data_class) if cap.data_class else len(DATA_CLASSES) - 1
    return Capability(
        type=cap.type,
        resource=resource,
        actions=draw(st.frozensets(st.sampled_from(sorted(cap.actions)), min_size=1)),
        identifiers=child_ids,
        not_after=(cap.not_after - draw(st.integers(0, 5))) if cap.not_after else draw(st.none() | timestamps),
        data_class=draw(st.sampled_from(DATA_CLASSES[: rank + 1]))
        if cap.data_class
        else draw(st.none() | st.sampled_from(DATA_CLASSES)),
        max_uses=draw(st.integers(1, cap.max_uses)) if cap.max_uses else draw(st.none() | st.integers(1, 5)),
        constraints={} if amount is None else {"amount": amount},
    )


@st.composite
def _narrower_identifiers(draw: st.DrawFn, parent: Identifiers) -> Identifiers:
    items: list[object] = [i for i in sorted(parent.ids) if draw(st.booleans())]
    for lo, hi in parent.ranges:
        if draw(st.booleans()):
            a = draw(st.integers(lo, hi))
            items.append({"from": a, "to": draw(st.integers(a, hi))})
    if not items:  # keep at least one: an empty set is refused
        items.append(sorted(parent.ids)[0] if parent.ids else {"from": parent.ranges[0][0], "to": parent.ranges[0][0]})
    return Identifiers.of(items)


# -- widening ------------------------------------------------------------------------------------
def widening_moves(cap: Capability) -> list[tuple[str, Capability]]:
    """Every single-step widening of `cap` that applies to it, each NOT within `cap` by construction."""
    moves = [
        ("add action", replace(cap, actions=cap.actions | {ESCALATE})),
        ("other type", replace(cap, type=next(t for t in TYPES if t != cap.type))),
        ("other host", replace(cap, resource=cap.resource.replace(cap.uri.origin, f"https://{EVIL_HOST}", 1))),
    ]
    segs = list(cap.uri.segments)
    if not cap.uri.is_pattern:
        moves.append(("concrete to pattern", replace(cap, resource=cap.uri.origin + "/" + "/".join([*segs, "*"]))))
    elif segs:
        moves.append(("shorter pattern", replace(cap, resource=cap.uri.origin + "/" + "/".join([*segs[:-1], "*"]))))
    if cap.identifiers is None:
        moves.append(("identifiers where parent has none", replace(cap, identifiers=Identifiers.of([NEW_ID]))))
    else:
        moves.append(("drop identifiers", replace(cap, identifiers=None)))
        moves.append(("add identifier", replace(cap, identifiers=Identifiers.of([*cap.identifiers.to_json(), NEW_ID]))))
        if cap.identifiers.ranges:
            lo, hi = cap.identifiers.ranges[-1]
            wider = [*cap.identifiers.to_json()[:-1], {"from": lo, "to": hi + 1}]
            moves.append(("longer range", replace(cap, identifiers=Identifiers.of(wider))))
    if cap.not_after is not None:
        moves.append(("drop not_after", replace(cap, not_after=None)))
        moves.append(("later not_after", replace(cap, not_after=cap.not_after + 1)))
    if cap.data_class is not None:
        moves.append(("drop data_class", replace(cap, data_class=None)))
        if cap.data_class != DATA_CLASSES[-1]:
            higher = DATA_CLASSES[DATA_CLASSES.index(cap.data_class) + 1]
            moves.append(("higher data_class", replace(cap, data_class=higher)))
    if cap.max_uses is not None:
        moves.append(("drop max_uses", replace(cap, max_uses=None)))
        moves.append(("more uses", replace(cap, max_uses=cap.max_uses + 1)))
    if cap.amount is not None:
        moves.append(("drop amount", replace(cap, constraints=())))
        bigger = Amount(format(cap.amount.value + Decimal("0.5"), "f"), cap.amount.currency)
        moves.append(("bigger amount", replace(cap, constraints={"amount": bigger})))
        other = next(c for c in CURRENCIES if c != cap.amount.currency)
        moves.append(("other currency", replace(cap, constraints={"amount": Amount(cap.amount.value, other)})))
    return moves


@st.composite
def wider(draw: st.DrawFn, cap: Capability) -> tuple[str, Capability]:
    return draw(st.sampled_from(widening_moves(cap)))


# -- operations ----------------------------------------------------------------------------------
@st.composite
def operations(draw: st.DrawFn) -> dict[str, object]:
    return {
        "action": draw(st.sampled_from((*ACTIONS, ESCALATE))),
        "resource": draw(st.one_of(concrete_uris, st.builds(_uri, st.just(EVIL_HOST), segments))),
        "identifier": draw(st.none() | st.sampled_from((*IDS, NEW_ID)) | st.integers(0, 26).map(str)),
        "data_class": draw(st.none() | st.sampled_from(DATA_CLASSES)),
        "amount": draw(st.none() | amounts),
        "uses": draw(st.none() | st.integers(0, 6)),
        "now": draw(st.integers(90, 210)),
    }
