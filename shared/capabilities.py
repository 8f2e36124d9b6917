"""The one capability model: what a grant allows, and when one grant is within another.

RAR authorization details, UCAN attenuation, token issuance, the resource-server `Verifier` and
policy all ask the same two questions through this module: "is capability A within capability B?"
(`within`, `covered`, `attenuated`) and "is this one concrete operation inside capability C?"
(`permits`). Nothing else defines them.

A `Capability` has a *scope* and *caveats*.

Scope (omission never means "all"):
  - `type`: the RAR type a tenant registered (`payment_initiation`, `records`); types must be equal.
  - `resource`: a normalised URI, or a pattern whose last segment is `*` (see `shared.uri`).
  - `actions`: a non-empty set such as `read`, `write`, `pay`. There is no `*` action.
  - `identifiers`: exact string ids and inclusive integer ranges, or `None`. `None` is not "any
    identifier": a capability without identifiers allows only operations that name no identifier.
    (This follows RAR: an `identifier` absent from the grant must be absent from the request.)

Caveats (omission means unconstrained; a caveat can only narrow):
  - `not_after`: epoch seconds; the capability is usable until then, inclusive.
  - `data_class`: a ceiling on the scale `DATA_CLASSES` (public < internal < confidential < restricted).
  - `max_uses`: how many times the capability may be used, counted by whoever enforces it.
  - constraints: type-specific fields with a registered comparator (`CONSTRAINTS`); today `amount`
    (`{"value": "<decimal>", "currency": "EUR"}`, at most the value, in the same currency).

Identifiers: an exact id that is the canonical decimal form of an integer (`"42"`, not `"042"`)
is the same as the range 42..42; ranges are merged, so two spellings of one set compare equal.
An operation's identifier matches when it is one of the exact ids, or is a canonical integer inside
a range.

Capabilities are frozen, hashable and validated (and normalised) on construction; every list and
string is bounded by the `MAX_*` constants. Errors are `CapabilityError(reason)`.
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Callable, Hashable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from decimal import Decimal
from types import MappingProxyType
from typing import Any

from shared import uri as _uri

__all__ = [
    "CONSTRAINTS",
    "DATA_CLASSES",
    "MAX_ACTIONS",
    "MAX_ACTION_LENGTH",
    "MAX_AMOUNT_DECIMALS",
    "MAX_AMOUNT_DIGITS",
    "MAX_CAPABILITIES",
    "MAX_IDENTIFIERS",
    "MAX_IDENTIFIER_LENGTH",
    "MAX_RANGE_BOUND",
    "MAX_TIMESTAMP",
    "MAX_TYPE_LENGTH",
    "MAX_UCAN_ENTRIES",
    "MAX_URI_LENGTH",
    "MAX_USES",
    "Amount",
    "Capability",
    "CapabilityError",
    "Constraint",
    "Identifiers",
    "attenuated",
    "canonical",
    "covered",
    "from_rar",
    "from_ucan",
    "parse_authorization_details",
    "permits",
    "to_rar",
    "to_ucan",
    "within",
]

# -- bounds --------------------------------------------------------------------------------------
MAX_TYPE_LENGTH = 64
MAX_ACTIONS = 16
MAX_ACTION_LENGTH = 32
MAX_IDENTIFIERS = 64  # exact ids plus ranges, as given
MAX_IDENTIFIER_LENGTH = 256
MAX_RANGE_BOUND = 2**63 - 1  # ranges live in [-MAX_RANGE_BOUND, MAX_RANGE_BOUND]
MAX_TIMESTAMP = 253_402_300_799  # 9999-12-31T23:59:59Z
MAX_USES = 2**31 - 1
MAX_AMOUNT_DIGITS = 18  # before the decimal point
MAX_AMOUNT_DECIMALS = 6
MAX_CAPABILITIES = 32  # in one authorization_details array, one UCAN, one covered() side
MAX_UCAN_ENTRIES = 128  # (resource, ability, caveat) triples in one UCAN `cap`, an empty array counting 1
MAX_URI_LENGTH = _uri.MAX_URI_LENGTH

DATA_CLASSES: tuple[str, ...] = ("public", "internal", "confidential", "restricted")
_DATA_RANK = {name: rank for rank, name in enumerate(DATA_CLASSES)}

# Always `fullmatch`: with `match`, a `$` anchor would also accept a trailing "\n".
_TYPE = re.compile(rf"[a-z][a-z0-9_.-]{{0,{MAX_TYPE_LENGTH - 1}}}")
_ACTION = re.compile(rf"[a-z][a-z0-9_-]{{0,{MAX_ACTION_LENGTH - 1}}}")
_CANONICAL_INT = re.compile(r"(0|-?[1-9][0-9]{0,18})")
_AMOUNT = re.compile(rf"(0|[1-9][0-9]{{0,{MAX_AMOUNT_DIGITS - 1}}})(\.[0-9]{{1,{MAX_AMOUNT_DECIMALS}}})?")
_CURRENCY = re.compile(r"[A-Z]{3}")
_AMOUNT_QUANTUM = Decimal(1).scaleb(-MAX_AMOUNT_DECIMALS)

_CAVEAT_FIELDS = ("not_after", "data_class", "max_uses")
_RAR_SCOPE_FIELDS = frozenset({"type", "locations", "actions", "identifier", "identifiers"})
# Common RAR fields we do not model. Dropping one would widen a grant (or a request), so a detail
# that carries one is refused rather than half-understood.
_RAR_UNSUPPORTED = frozenset({"datatypes", "privileges"})


class CapabilityError(ValueError):
    """A capability (or RAR detail, or UCAN `cap`) that is malformed, unknown or too large.

    `reason` is one of: invalid_type, invalid_resource, invalid_actions, invalid_identifiers,
    invalid_caveat, unknown_field, too_large, invalid_authorization_details (every refusal by
    `from_rar` / `parse_authorization_details`), invalid_ucan_capability (every refusal by
    `from_ucan`), invalid_operation (a malformed operation given to `permits`).
    """

    def __init__(self, reason: str, message: str | None = None) -> None:
        super().__init__(message or reason)
        self.reason = reason


# -- small validators ----------------------------------------------------------------------------
def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _timestamp(value: object, name: str) -> int:
    if not _is_int(value) or not 0 <= value <= MAX_TIMESTAMP:  # type: ignore[operator]
        raise CapabilityError("invalid_caveat", f"{name} is an integer number of seconds, 0..{MAX_TIMESTAMP}")
    return value  # type: ignore[return-value]


def _is_data_class(value: object) -> bool:
    return isinstance(value, str) and value in _DATA_RANK


def _ident_text(value: object) -> str:
    if (
        not isinstance(value, str)
        or not 1 <= len(value) <= MAX_IDENTIFIER_LENGTH
        or any(ord(c) < 0x20 or ord(c) == 0x7F for c in value)
    ):
        raise CapabilityError(
            "invalid_identifiers", f"an identifier is 1..{MAX_IDENTIFIER_LENGTH} characters, no control characters"
        )
    return value


def _as_int(identifier: str) -> int | None:
    """The integer an identifier spells canonically, or None (`"042"`, `"-0"`, `"+1"` are not integers)."""
    if _CANONICAL_INT.fullmatch(identifier):
        n = int(identifier)
        if -MAX_RANGE_BOUND <= n <= MAX_RANGE_BOUND:
            return n
    return None


# -- identifiers ---------------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class Identifiers:
    """A set of exact string ids and inclusive integer ranges, kept canonical.

    Build one with `Identifiers.of(["acct-1", "7", {"from": 10, "to": 20}])`. Exact ids that spell
    a canonical integer join the ranges; ranges are sorted and merged (overlapping or adjacent).
    """

    ids: frozenset[str] = frozenset()
    ranges: tuple[tuple[int, int], ...] = ()

    def __post_init__(self) -> None:
        if isinstance(self.ids, str) or not isinstance(self.ids, Iterable):
            raise CapabilityError("invalid_identifiers", "ids is a set of strings")
        ids, ranges = list(self.ids), list(self.ranges)
        if not ids and not ranges:
            raise CapabilityError("invalid_identifiers", "an identifier set is not empty (omit it instead)")
        if len(ids) + len(ranges) > MAX_IDENTIFIERS:
            raise CapabilityError("too_large", f"at most {MAX_IDENTIFIERS} identifiers and ranges")
        exact: set[str] = set()
        spans: list[tuple[int, int]] = []
        for ident in ids:
            n = _as_int(_ident_text(ident))
            if n is None:
                exact.add(ident)
            else:
                spans.append((n, n))
        for span in ranges:
            if not isinstance(span, tuple) or len(span) != 2 or not all(_is_int(x) for x in span):
                raise CapabilityError("invalid_identifiers", "a range is a pair of integers")
            lo, hi = span
            if not -MAX_RANGE_BOUND <= lo <= hi <= MAX_RANGE_BOUND:
                raise CapabilityError("invalid_identifiers", "a range has from <= to, within the integer bound")
            spans.append((lo, hi))
        object.__setattr__(self, "ids", frozenset(exact))
        object.__setattr__(self, "ranges", _merge(spans))

    @classmethod
    def of(cls, items: Iterable[object]) -> Identifiers:
        """From the JSON form: strings and `{"from": int, "to": int}` objects."""
        if isinstance(items, str | bytes | Mapping) or not isinstance(items, Iterable):
            raise CapabilityError("invalid_identifiers", "identifiers are a list")
        ids: list[str] = []
        ranges: list[tuple[int, int]] = []
        for count, item in enumerate(items):
            if count >= MAX_IDENTIFIERS:
                raise CapabilityError("too_large", f"at most {MAX_IDENTIFIERS} identifiers and ranges")
            if isinstance(item, Mapping):
                if set(item) != {"from", "to"}:
                    raise CapabilityError("invalid_identifiers", 'a range is exactly {"from": int, "to": int}')
                ranges.append((item["from"], item["to"]))
            else:
                ids.append(_ident_text(item))
        if len(set(ids)) != len(ids):
            raise CapabilityError("invalid_identifiers", "duplicate identifier")
        return cls(frozenset(ids), tuple(ranges))

    def to_json(self) -> list[Any]:
        out: list[Any] = sorted(self.ids)
        for lo, hi in self.ranges:
            out.append(str(lo) if lo == hi else {"from": lo, "to": hi})
        return out

    @property
    def single(self) -> str | None:
        """The one identifier this set holds, when it holds exactly one."""
        if len(self.ids) == 1 and not self.ranges:
            return next(iter(self.ids))
        if not self.ids and len(self.ranges) == 1 and self.ranges[0][0] == self.ranges[0][1]:
            return str(self.ranges[0][0])
        return None

    def contains(self, identifier: str | int) -> bool:
        if _is_int(identifier):
            n: int | None = identifier  # type: ignore[assignment]
        elif isinstance(identifier, str):
            if not 1 <= len(identifier) <= MAX_IDENTIFIER_LENGTH:
                return False
            n = _as_int(identifier)
            if n is None:
                return identifier in self.ids
        else:
            raise CapabilityError("invalid_operation", "an identifier is a string or an integer")
        return any(lo <= n <= hi for lo, hi in self.ranges)  # type: ignore[operator]

    def issubset(self, other: Identifiers) -> bool:
        # Ranges are merged, so a range inside the union of other's ranges is inside one of them.
        return self.ids <= other.ids and all(
            any(plo <= lo and hi <= phi for plo, phi in other.ranges) for lo, hi in self.ranges
        )


def _merge(spans: list[tuple[int, int]]) -> tuple[tuple[int, int], ...]:
    merged: list[tuple[int, int]] = []
    for lo, hi in sorted(spans):
        if merged and lo <= merged[-1][1] + 1:
            merged[-1] = (merged[-1][0], max(merged[-1][1], hi))
        else:
            merged.append((lo, hi))
    return tuple(merged)


# -- amount, the first registered constraint ------------------------------------------------------
@dataclass(frozen=True, slots=True)
class Amount:
    """A non-negative decimal amount in an ISO 4217-style currency code. Compared exactly."""

    value: Decimal
    currency: str

    def __post_init__(self) -> None:
        value = self.value
        if isinstance(value, str):
            if not _AMOUNT.fullmatch(value):
                raise CapabilityError(
                    "invalid_caveat",
                    f"an amount value is a decimal string with up to {MAX_AMOUNT_DIGITS} digits "
                    f"and {MAX_AMOUNT_DECIMALS} decimals, no sign or exponent",
                )
            value = Decimal(value)
        if not isinstance(value, Decimal) or not value.is_finite() or value < 0:
            raise CapabilityError("invalid_caveat", "an amount value is a non-negative decimal")
        # Bound the size before formatting (a Decimal like 1E-999999999 would format to a billion
        # characters) and refuse rather than round extra decimals.
        if value.adjusted() >= MAX_AMOUNT_DIGITS or value.quantize(_AMOUNT_QUANTUM) != value:
            raise CapabilityError("invalid_caveat", "amount value out of bounds")
        text = format(value.quantize(_AMOUNT_QUANTUM).normalize(), "f")  # "50.00" and "50" are one amount
        if not isinstance(self.currency, str) or not _CURRENCY.fullmatch(self.currency):
            raise CapabilityError("invalid_caveat", "a currency is three upper-case letters")
        object.__setattr__(self, "value", Decimal(text))

    @classmethod
    def parse(cls, obj: object) -> Amount:
        if isinstance(obj, Amount):
            return obj
        if not isinstance(obj, Mapping) or set(obj) != {"value", "currency"}:
            raise CapabilityError("invalid_caveat", 'an amount is exactly {"value": "<decimal>", "currency": "EUR"}')
        if not isinstance(obj["value"], str):
            raise CapabilityError("invalid_caveat", "an amount value is a string (JSON numbers are not exact)")
        return cls(obj["value"], obj["currency"])  # type: ignore[arg-type]

    def to_json(self) -> dict[str, str]:
        return {"value": format(self.value, "f"), "currency": self.currency}

    def at_most(self, other: Amount) -> bool:
        return self.currency == other.currency and self.value <= other.value


@dataclass(frozen=True, slots=True)
class Constraint:
    """A type-specific caveat field and its comparator. Only registered fields are accepted."""

    name: str
    parse: Callable[[object], Hashable]  # JSON (or an already-parsed value) -> canonical value
    dump: Callable[[Any], Any]  # canonical value -> JSON
    within: Callable[[Any, Any], bool]  # (child value, parent value): child is at least as strict
    permits: Callable[[Any, Any], bool]  # (operation value, capability value)


CONSTRAINTS: Mapping[str, Constraint] = MappingProxyType(
    {
        "amount": Constraint(
            name="amount",
            parse=Amount.parse,
            dump=Amount.to_json,
            within=Amount.at_most,
            permits=Amount.at_most,
        ),
    }
)
assert not set(CONSTRAINTS) & (set(_CAVEAT_FIELDS) | _RAR_SCOPE_FIELDS | _RAR_UNSUPPORTED | {"identifiers"})


# -- the capability ------------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class Capability:
    """One grant: scope (type, resource, actions, identifiers) and caveats. See the module docstring.

    `actions` accepts any iterable of strings; `identifiers` an `Identifiers` or its JSON list;
    `constraints` a mapping of registered constraint names to values (e.g. `{"amount": Amount(...)}`
    or its JSON). All are stored canonically. Raises `CapabilityError`.
    """

    type: str
    resource: str
    actions: frozenset[str]
    identifiers: Identifiers | None = None
    not_after: int | None = None
    data_class: str | None = None
    max_uses: int | None = None
    constraints: tuple[tuple[str, Hashable], ...] = ()
    _parsed: _uri.ResourceUri = field(init=False, repr=False, compare=False, hash=False)

    def __post_init__(self) -> None:
        if not isinstance(self.type, str) or not _TYPE.fullmatch(self.type):
            raise CapabilityError("invalid_type", f"a type matches {_TYPE.pattern}")
        try:
            parsed = _uri.parse(self.resource)
        except _uri.UriError as exc:
            raise CapabilityError("invalid_resource", str(exc)) from exc
        object.__setattr__(self, "resource", parsed.text)
        object.__setattr__(self, "_parsed", parsed)
        object.__setattr__(self, "actions", _actions(self.actions))
        if self.identifiers is not None and not isinstance(self.identifiers, Identifiers):
            object.__setattr__(self, "identifiers", Identifiers.of(self.identifiers))
        if self.not_after is not None:
            _timestamp(self.not_after, "not_after")
        if self.data_class is not None and not _is_data_class(self.data_class):
            raise CapabilityError("invalid_caveat", f"data_class is one of {', '.join(DATA_CLASSES)}")
        if self.max_uses is not None and (not _is_int(self.max_uses) or not 1 <= self.max_uses <= MAX_USES):
            raise CapabilityError("invalid_caveat", f"max_uses is an integer 1..{MAX_USES}")
        object.__setattr__(self, "constraints", _constraints(self.constraints))

    @property
    def uri(self) -> _uri.ResourceUri:
        """The parsed resource, for pattern matching."""
        return self._parsed

    def constraint(self, name: str) -> Any:
        """The value of a registered constraint, or None when the capability does not carry it."""
        return dict(self.constraints).get(name)

    @property
    def amount(self) -> Amount | None:
        return self.constraint("amount")  # type: ignore[no-any-return]

    def caveats_json(self) -> dict[str, Any]:
        """The caveats as one JSON object (the UCAN caveat object, and RAR type-specific fields)."""
        out: dict[str, Any] = {}
        for name in _CAVEAT_FIELDS:
            value = getattr(self, name)
            if value is not None:
                out[name] = value
        for name, value in self.constraints:
            out[name] = CONSTRAINTS[name].dump(value)
        return out


def _actions(actions: object) -> frozenset[str]:
    if isinstance(actions, str | bytes | Mapping) or not isinstance(actions, Iterable):
        raise CapabilityError("invalid_actions", "actions are a set of strings")
    out: set[str] = set()
    for count, action in enumerate(actions):
        if count >= MAX_ACTIONS:
            raise CapabilityError("too_large", f"at most {MAX_ACTIONS} actions")
        if not isinstance(action, str) or not _ACTION.fullmatch(action):
            # No `*`: an action wildcard would let a grant widen silently when new actions appear.
            raise CapabilityError("invalid_actions", f"an action matches {_ACTION.pattern}")
        out.add(action)
    if not out:
        raise CapabilityError("invalid_actions", "a capability has at least one action")
    return frozenset(out)


def _constraints(value: object) -> tuple[tuple[str, Hashable], ...]:
    items = value.items() if isinstance(value, Mapping) else value
    if isinstance(items, str | bytes) or not isinstance(items, Iterable):
        raise CapabilityError("invalid_caveat", "constraints are a mapping of name to value")
    out: dict[str, Hashable] = {}
    for pair in items:
        if not isinstance(pair, tuple) or len(pair) != 2:
            raise CapabilityError("invalid_caveat", "constraints are (name, value) pairs")
        name, raw = pair
        if not isinstance(name, str) or name not in CONSTRAINTS:
            raise CapabilityError("unknown_field", f"no registered constraint {name!r}")
        if name in out:
            raise CapabilityError("invalid_caveat", f"constraint {name!r} given twice")
        out[name] = CONSTRAINTS[name].parse(raw)
    return tuple(sorted(out.items()))


# -- within ---------------------------------------------------------------------------------------
def within(a: Capability, b: Capability) -> bool:
    """True when every operation `a` permits, `b` permits too ("a is within b").

    Rules, each necessary:
      1. same `type`;
      2. `a.resource` within `b.resource`: equal, or `b` is a pattern covering every URI `a` names;
      3. `a.actions` is a subset of `b.actions`;
      4. identifiers: if `b` has none, `a` has none (omission is not "all"); otherwise `a` has some,
         all inside `b`'s;
      5. each caveat `b` carries, `a` carries too and at least as strictly (`not_after` no later,
         `data_class` no higher, `max_uses` no more, constraints by their comparators); a caveat
         `b` lacks, `a` may add freely.
    """
    if not isinstance(a, Capability) or not isinstance(b, Capability):
        raise TypeError("within() compares two Capability objects")
    if a.type != b.type or not b.uri.covers(a.uri) or not a.actions <= b.actions:
        return False
    if b.identifiers is None:
        if a.identifiers is not None:
            return False
    elif a.identifiers is None or not a.identifiers.issubset(b.identifiers):
        return False
    if b.not_after is not None and (a.not_after is None or a.not_after > b.not_after):
        return False
    if b.data_class is not None and (
        a.data_class is None or _DATA_RANK[a.data_class] > _DATA_RANK[b.data_class]
    ):
        return False
    if b.max_uses is not None and (a.max_uses is None or a.max_uses > b.max_uses):
        return False
    mine = dict(a.constraints)
    for name, parent_value in b.constraints:
        if name not in mine or not CONSTRAINTS[name].within(mine[name], parent_value):
            return False
    return True


def covered(requested: Sequence[Capability], granted: Sequence[Capability]) -> bool:
    """True when every requested capability is within ONE granted capability.

    Grants are never combined to cover one request (two grants for `read` and `write` do not cover
    one request for both). An empty request is never covered: asking for nothing is a caller bug.
    """
    _bounded(requested, "requested")
    _bounded(granted, "granted")
    return bool(requested) and all(any(within(r, g) for g in granted) for r in requested)


def attenuated(child: Sequence[Capability], parent: Sequence[Capability]) -> bool:
    """The UCAN rule: every child capability, one action at a time, is within one parent capability.

    UCAN's unit is (resource, ability, caveat), one action each; `from_ucan` merges entries that
    differ only in their action, so a capability here may stand for several UCAN entries. Each of
    those entries must be within ONE parent capability; parents are never combined for one action.
    Checking per action is exact: `permits` looks at one action, and every other field is kept.
    A child may delegate nothing (an empty UCAN `cap`).
    """
    _bounded(child, "child")
    _bounded(parent, "parent")
    return all(any(within(part, p) for p in parent) for c in child for part in _per_action(c))


def _per_action(cap: Capability) -> list[Capability]:
    if len(cap.actions) == 1:
        return [cap]
    return [replace(cap, actions=frozenset({action})) for action in sorted(cap.actions)]


def _bounded(caps: Sequence[Capability], name: str) -> None:
    if isinstance(caps, str | bytes) or not isinstance(caps, Sequence):
        raise TypeError(f"{name} is a sequence of Capability")
    if len(caps) > MAX_CAPABILITIES:
        raise CapabilityError("too_large", f"at most {MAX_CAPABILITIES} capabilities")


# -- use time ---------------------------------------------------------------------------------------
def permits(
    cap: Capability,
    action: str,
    resource: str,
    *,
    identifier: str | int | None = None,
    data_class: str | None = None,
    amount: Amount | Mapping[str, str] | None = None,
    uses: int | None = None,
    now: float | None = None,
) -> bool:
    """Whether one concrete operation lies inside `cap`. Fails closed.

    `resource` is the concrete URI operated on (normalised here; a pattern is refused).
    `identifier` is the item the operation names, if any: a capability without identifiers permits
    only operations that name none. A caveat the capability carries needs the operation's value:
    `data_class` (the class of the data touched), `amount`, and `uses` (how many times this
    capability was already used, counted by the caller) are False when missing. `now` defaults to
    the wall clock; `not_after` is inclusive.

    Raises `CapabilityError("invalid_operation")` for a malformed operation (bad URI, pattern,
    unknown data class, malformed amount, an action or identifier of the wrong type).
    """
    if not isinstance(cap, Capability):
        raise TypeError("permits() needs a Capability")
    if not isinstance(action, str):
        raise CapabilityError("invalid_operation", "an action is a string")
    if identifier is not None and not (isinstance(identifier, str) or _is_int(identifier)):
        raise CapabilityError("invalid_operation", "an identifier is a string or an integer")
    try:
        target = _uri.parse(resource, pattern_allowed=False)
    except _uri.UriError as exc:
        raise CapabilityError("invalid_operation", str(exc)) from exc
    if data_class is not None and not _is_data_class(data_class):
        raise CapabilityError("invalid_operation", f"data_class is one of {', '.join(DATA_CLASSES)}")
    if amount is not None:
        try:
            amount = Amount.parse(amount)
        except CapabilityError as exc:
            raise CapabilityError("invalid_operation", str(exc)) from exc
    if action not in cap.actions or not cap.uri.matches(target):
        return False
    if cap.identifiers is None:
        if identifier is not None:
            return False
    elif identifier is None or not cap.identifiers.contains(identifier):
        return False
    if cap.not_after is not None and (time.time() if now is None else now) > cap.not_after:
        return False
    if cap.data_class is not None and (data_class is None or _DATA_RANK[data_class] > _DATA_RANK[cap.data_class]):
        return False
    if cap.max_uses is not None and (uses is None or not _is_int(uses) or not 0 <= uses < cap.max_uses):
        return False
    operation = {"amount": amount}
    for name, value in cap.constraints:
        given = operation.get(name)
        if given is None or not CONSTRAINTS[name].permits(given, value):
            return False
    return True


# -- RFC 9396 authorization details ------------------------------------------------------------------
def to_rar(cap: Capability) -> dict[str, Any]:
    """The RFC 9396 authorization details object for `cap`.

    `locations` is `[resource]`; `identifier` (RFC 9396) when the capability names exactly one
    identifier, otherwise `identifiers` (our extension: a list of strings and `{"from", "to"}`
    integer ranges); caveats are type-specific fields: `not_after`, `data_class`, `max_uses`, and
    each registered constraint (`amount`).
    """
    detail: dict[str, Any] = {"type": cap.type, "locations": [cap.resource], "actions": sorted(cap.actions)}
    if cap.identifiers is not None:
        single = cap.identifiers.single
        if single is not None:
            detail["identifier"] = single
        else:
            detail["identifiers"] = cap.identifiers.to_json()
    detail.update(cap.caveats_json())
    return detail


def from_rar(detail: Mapping[str, Any]) -> Capability:
    """The capability an RFC 9396 authorization details object describes.

    `type`, `locations` (exactly one URI) and `actions` (non-empty) are required; at most one of
    `identifier` / `identifiers`; `datatypes`, `privileges` and any unknown field are refused.
    Every refusal is `CapabilityError("invalid_authorization_details")`.
    """
    try:
        return _from_rar(detail)
    except CapabilityError as exc:
        raise CapabilityError("invalid_authorization_details", f"{exc.reason}: {exc}") from exc


def _from_rar(detail: Mapping[str, Any]) -> Capability:
    if not isinstance(detail, Mapping):
        raise CapabilityError("invalid_type", "an authorization detail is a JSON object")
    unsupported = _RAR_UNSUPPORTED & set(detail)
    if unsupported:
        raise CapabilityError("unknown_field", f"{', '.join(sorted(unsupported))} are not supported")
    unknown = set(detail) - _RAR_SCOPE_FIELDS - set(_CAVEAT_FIELDS) - set(CONSTRAINTS)
    if unknown:
        raise CapabilityError("unknown_field", f"unknown fields {sorted(map(str, unknown))[:5]}")
    for name in ("type", "locations", "actions"):
        if name not in detail:
            raise CapabilityError("unknown_field", f"{name} is required")
    locations = detail["locations"]
    if not isinstance(locations, list) or len(locations) != 1:
        raise CapabilityError("invalid_resource", "locations holds exactly one URI")
    if not isinstance(detail["actions"], list):
        raise CapabilityError("invalid_actions", "actions is a list")
    actions = _actions(detail["actions"])
    if len(actions) != len(detail["actions"]):
        raise CapabilityError("invalid_actions", "actions lists an action twice")
    if "identifier" in detail and "identifiers" in detail:
        raise CapabilityError("invalid_identifiers", "give identifier or identifiers, not both")
    identifiers: Identifiers | None = None
    if "identifier" in detail:
        identifiers = Identifiers.of([_ident_text(detail["identifier"])])
    elif "identifiers" in detail:
        if not isinstance(detail["identifiers"], list):
            raise CapabilityError("invalid_identifiers", "identifiers is a list")
        identifiers = Identifiers.of(detail["identifiers"])
    return Capability(
        type=detail["type"],
        resource=locations[0],
        actions=actions,
        identifiers=identifiers,
        **_caveats_from_json(detail),
    )


def _caveats_from_json(obj: Mapping[str, Any]) -> dict[str, Any]:
    kwargs: dict[str, Any] = {name: obj[name] for name in _CAVEAT_FIELDS if name in obj}
    constraints = {name: obj[name] for name in CONSTRAINTS if name in obj}
    if constraints:
        kwargs["constraints"] = constraints
    return kwargs


def parse_authorization_details(value: object) -> list[Capability]:
    """An `authorization_details` array: non-empty, at most `MAX_CAPABILITIES` objects."""
    if not isinstance(value, list) or not value:
        raise CapabilityError("invalid_authorization_details", "authorization_details is a non-empty array")
    if len(value) > MAX_CAPABILITIES:
        raise CapabilityError("invalid_authorization_details", f"at most {MAX_CAPABILITIES} details")
    return [from_rar(detail) for detail in value]


# -- UCAN 0.10 `cap` -------------------------------------------------------------------------------------
def to_ucan(caps: Sequence[Capability]) -> dict[str, dict[str, list[dict[str, Any]]]]:
    """The UCAN 0.10 `cap` field: `{resource: {"<type>/<action>": [caveat object, ...]}}`.

    The RAR type is the ability namespace and each action one ability (`records/read`); the caveat
    object holds `identifiers` (always the list form) and the caveats. A capability without caveats
    or identifiers has the caveat object `{}` ("no caveats"); several capabilities on one resource
    and ability give several caveat objects, which UCAN reads as alternatives.
    """
    _bounded(caps, "caps")
    out: dict[str, dict[str, list[dict[str, Any]]]] = {}
    for cap in caps:
        caveat = _ucan_caveat(cap)
        abilities = out.setdefault(cap.resource, {})
        for action in sorted(cap.actions):
            entries = abilities.setdefault(f"{cap.type}/{action}", [])
            if caveat not in entries:
                entries.append(caveat)
    return out


def _ucan_caveat(cap: Capability) -> dict[str, Any]:
    caveat: dict[str, Any] = {}
    if cap.identifiers is not None:
        caveat["identifiers"] = cap.identifiers.to_json()
    caveat.update(cap.caveats_json())
    return caveat


def from_ucan(cap_field: Mapping[str, Any]) -> list[Capability]:
    """The capabilities of a UCAN 0.10 `cap` field, in `canonical` form.

    Abilities are case-insensitive (UCAN 0.10 section 2.3) and must be `<type>/<action>`; the top
    ability `*`, `ucan:` proof selectors and any caveat field we do not know are refused, not
    ignored: an agentid chain carries only agentid capabilities, and a caveat nobody enforces
    would widen the grant. An empty caveat array (UCAN: "no capability") yields nothing.
    Every refusal is `CapabilityError("invalid_ucan_capability")`.
    """
    try:
        return _from_ucan(cap_field)
    except CapabilityError as exc:
        raise CapabilityError("invalid_ucan_capability", f"{exc.reason}: {exc}") from exc


def _from_ucan(cap_field: Mapping[str, Any]) -> list[Capability]:
    if not isinstance(cap_field, Mapping):
        raise CapabilityError("invalid_type", "cap is a JSON object")
    caps: list[Capability] = []
    entries = 0
    for resource, abilities in cap_field.items():
        if not isinstance(resource, str):
            raise CapabilityError("invalid_resource", "a resource is a URI string")
        if resource.lower().startswith("ucan:"):
            raise CapabilityError("invalid_resource", "ucan: proof selectors are not supported")
        if not isinstance(abilities, Mapping) or not abilities:
            raise CapabilityError("invalid_actions", "each resource maps to one or more abilities")
        seen: set[str] = set()
        for ability, caveats in abilities.items():
            if not isinstance(ability, str):
                raise CapabilityError("invalid_actions", "an ability is a string")
            ability = ability.lower()
            if ability in seen:
                raise CapabilityError("invalid_actions", "an ability is listed twice (abilities ignore case)")
            seen.add(ability)
            namespace, slash, action = ability.partition("/")
            if not slash or "/" in action:
                raise CapabilityError("invalid_actions", "an ability is '<type>/<action>'; '*' is not supported")
            if not isinstance(caveats, list):
                raise CapabilityError("invalid_caveat", "caveats are an array of objects")
            # Every ability counts, even one with no caveat object, so the loop is bounded.
            entries += max(1, len(caveats))
            if entries > MAX_UCAN_ENTRIES:
                raise CapabilityError("too_large", f"at most {MAX_UCAN_ENTRIES} capability entries")
            caps.extend(_from_ucan_caveat(namespace, resource, action, caveat) for caveat in caveats)
    merged = canonical(caps)
    if len(merged) > MAX_CAPABILITIES:
        raise CapabilityError("too_large", f"at most {MAX_CAPABILITIES} capabilities")
    return merged


def _from_ucan_caveat(type_: str, resource: str, action: str, caveat: object) -> Capability:
    if not isinstance(caveat, Mapping):
        raise CapabilityError("invalid_caveat", "a caveat is a JSON object")
    unknown = set(caveat) - {"identifiers"} - set(_CAVEAT_FIELDS) - set(CONSTRAINTS)
    if unknown:
        raise CapabilityError("unknown_field", f"unknown caveat fields {sorted(map(str, unknown))[:5]}")
    identifiers = Identifiers.of(caveat["identifiers"]) if "identifiers" in caveat else None
    return Capability(
        type=type_,
        resource=resource,
        actions=frozenset({action}),
        identifiers=identifiers,
        **_caveats_from_json(caveat),
    )


def canonical(caps: Iterable[Capability]) -> list[Capability]:
    """Merge capabilities that differ only in their actions, and sort.

    Exact: each action of a merged capability is allowed under the same scope and caveats as
    before. This is how one UCAN's per-ability entries become capabilities again; it is not used
    to combine separate grants (`covered` never does).
    """
    groups: dict[tuple[Any, ...], list[Capability]] = {}
    for cap in caps:
        key = (cap.type, cap.resource, cap.identifiers, cap.not_after, cap.data_class, cap.max_uses, cap.constraints)
        groups.setdefault(key, []).append(cap)
    out = [
        group[0] if len(group) == 1 else replace(group[0], actions=frozenset().union(*(c.actions for c in group)))
        for group in groups.values()
    ]
    return out if len(out) < 2 else sorted(out, key=_sort_key)


def _sort_key(cap: Capability) -> tuple[Any, ...]:
    # Deterministic across processes (no set or hash order), cheap, and total on canonical fields.
    ids = json.dumps(cap.identifiers.to_json()) if cap.identifiers else ""
    return (cap.type, cap.resource, sorted(cap.actions), ids, json.dumps(cap.caveats_json(), sort_keys=True))
