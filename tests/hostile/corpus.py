"""The refused variants of a request, derived from its contract and one valid example.

Body variants change the valid example in one place each (a field missing, of the wrong JSON type,
past its bound, an unknown member), so that change is the only thing wrong with them; framing
variants break the JSON itself or the size limit. Each variant is judged here, before it is sent,
by the bus's own decoder (`shared.bus.client.decode`): a variant the contract accepts is not hostile
and is dropped, so the corpus never expects a refusal the contract does not promise. Types come from
`msgspec.inspect` rather than the JSON Schema, which loses constraints (datetimes are bare strings
there).

Opaque variants are the exception: a credential-shaped field (a compact JWS, a PEM, evidence bytes,
a JWK) filled with junk that decodes. Those reach the handler, which must answer with a typed error
(or a harmless result), never `internal`.

Envelope variants (`ENVELOPES`) keep a valid body and break the signed envelope around it.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any

import msgspec
import msgspec.inspect as mi

from contracts.types import MAX_PAYLOAD_BYTES
from shared.bus.client import decode
from shared.errors import InvalidRequest

Path = tuple[str | int, ...]
EXTRA = "hostile_extra_member"
MAX_NESTING = 3                      # nested structs are followed this deep
LONG = 4097                          # longer than any bounded repetition in our patterns


@dataclass(frozen=True)
class BodyCase:
    name: str
    payload: bytes
    opaque: bool = False             # reaches the handler: any typed answer but `internal` will do

    @property
    def expect(self) -> str | None:
        return None if self.opaque else "invalid_request"


# Envelope variants and the code each must get. Which apply to a route depends on its senders.
ENVELOPES: dict[str, str] = {
    "unsigned": "invalid_signature",
    "bad_signature": "invalid_signature",
    "body_changed_after_signing": "invalid_signature",
    "signed_for_another_subject": "invalid_signature",
    "oversized_header": "invalid_signature",
    "non_numeric_timestamp": "invalid_signature",
    "stale_timestamp": "stale",
    "future_timestamp": "stale",
    "replayed_message_id": "replay",
    "resigned_with_own_key_id": "unknown_sender",       # another key, under the sender's name
    "resigned_under_legit_key_id": "invalid_signature",  # another key, claiming the sender's key id
    "unknown_sender": "unknown_sender",
    "cross_tenant": "forbidden",                         # the right sender, another tenant's subject
    "wrong_sender_kind": "forbidden",
    "oversized_unsigned_body": "invalid_request",        # the size gate comes before everything
}


def refused(payload: bytes, type_: type) -> bool:
    """Whether the bus's decoder refuses `payload` as `type_` (with `invalid_request`)."""
    try:
        decode(payload, type_)
    except InvalidRequest:
        return True
    return False


def body_cases(type_: type, valid: Mapping[str, Any]) -> tuple[list[BodyCase], int]:
    """The refused body variants of one valid example (as builtins), and how many generated
    variants the contract accepted (not hostile, so dropped)."""
    valid_payload = msgspec.json.encode(valid)
    if refused(valid_payload, type_):
        raise AssertionError(f"the valid example does not decode as {type_.__name__}")
    cases: list[BodyCase] = []
    dropped = 0
    for name, payload in _framing(valid_payload):
        cases.append(BodyCase(name, payload))  # refused by framing or size, whatever the type
    info = mi.type_info(type_)
    for name, body in _mutations(info, dict(valid), (), 0):
        payload = msgspec.json.encode(body)
        if refused(payload, type_):
            cases.append(BodyCase(name, payload))
        else:
            dropped += 1
    for name, body in _opaque(info, dict(valid), (), 0):
        payload = msgspec.json.encode(body)
        assert not refused(payload, type_), f"opaque variant {name} must decode"
        cases.append(BodyCase(name, payload, opaque=True))
    return cases, dropped


# -- framing -------------------------------------------------------------------------------------
def _framing(valid: bytes) -> Iterator[tuple[str, bytes]]:
    yield "empty_body", b""
    yield "not_json", b"not json"
    yield "invalid_utf8", b'{"\xff\xfe": 1}'
    yield "json_array", b"[]"
    yield "json_null", b"null"
    yield "json_string", b'"hostile"'
    yield "json_number", b"1"
    yield "nan_literal", b'{"x": NaN}'
    yield "truncated_half", valid[: len(valid) // 2]
    yield "truncated_last_byte", valid[:-1]
    yield "trailing_garbage", valid + b"}"
    yield "deep_nesting", b"[" * 60_000
    yield "deep_object_nesting", b'{"a":' * 5_000 + b"1" + b"}" * 5_000
    # Valid JSON, one byte past the limit: only the size is wrong with it.
    yield "over_payload_limit", valid + b" " * (MAX_PAYLOAD_BYTES + 1 - len(valid))


# -- one change at a time ------------------------------------------------------------------------
def _mutations(info: mi.Type, root: dict[str, Any], path: Path, depth: int) -> Iterator[tuple[str, Any]]:
    assert isinstance(info, mi.StructType)
    here = _get(root, path)
    yield _label("unknown_member", path), _set(root, path + (EXTRA,), True)
    for f in info.fields:
        at = path + (f.encode_name,)
        present = isinstance(here, dict) and f.encode_name in here
        if f.required:
            yield _label("missing", at), _delete(root, at)
        for kind, value in _wrong_types(f.type):
            yield _label(f"wrong_type_{kind}", at), _set(root, at, value)
        current = here.get(f.encode_name) if present else None
        for kind, value in _past_bounds(f.type, current):
            yield _label(kind, at), _set(root, at, value)
        if depth < MAX_NESTING and present:
            yield from _nested(f.type, root, at, current, depth)


def _nested(t: mi.Type, root: dict[str, Any], at: Path, current: Any, depth: int) -> Iterator[tuple[str, Any]]:
    for member in _members(t):
        if isinstance(member, mi.StructType) and isinstance(current, dict):
            yield from _mutations(member, root, at, depth + 1)
        elif isinstance(member, mi.ListType) and isinstance(member.item_type, mi.StructType) and current:
            yield from _mutations(member.item_type, root, at + (0,), depth + 1)


def _members(t: mi.Type) -> tuple[mi.Type, ...]:
    return t.types if isinstance(t, mi.UnionType) else (t,)


_KINDS: dict[str, Any] = {"int": 12345, "str": "hostile", "array": [], "object": {}, "bool": True, "null": None,
                          "float": 1.5}


def _accepted(t: mi.Type) -> set[str]:
    out: set[str] = set()
    for m in _members(t):
        if isinstance(m, mi.AnyType):
            return set(_KINDS)
        if isinstance(m, mi.NoneType):
            out.add("null")
        elif isinstance(m, mi.BoolType):
            out.add("bool")
        elif isinstance(m, mi.IntType):
            out.add("int")
        elif isinstance(m, mi.FloatType):
            out |= {"int", "float"}
        elif isinstance(m, mi.LiteralType):
            out |= {"int" if isinstance(v, int) else "str" for v in m.values}
        elif isinstance(m, (mi.ListType, mi.TupleType, mi.VarTupleType, mi.SetType, mi.FrozenSetType)):
            out.add("array")
        elif isinstance(m, (mi.DictType, mi.StructType, mi.TypedDictType, mi.DataclassType)):
            out.add("object")
        else:  # strings, bytes (base64), datetimes, enums of strings
            out.add("str")
    return out


def _wrong_types(t: mi.Type) -> Iterator[tuple[str, Any]]:
    """Two values of JSON types the field does not take: a scalar or container, and null."""
    accepted = _accepted(t)
    for kind in ("int", "str", "object", "array", "bool"):
        if kind not in accepted:
            yield kind, _KINDS[kind]
            break
    if "null" not in accepted:
        yield "null", None
    if "int" in accepted and "float" not in accepted:
        yield "float", 1.5


def _past_bounds(t: mi.Type, current: Any) -> Iterator[tuple[str, Any]]:
    for m in _members(t):
        if isinstance(m, mi.StrType):
            if m.max_length is not None:
                yield "too_long", "a" * (m.max_length + 1)
            if m.min_length:
                yield "too_short", ""
            if m.pattern is not None:
                yield "pattern_too_long", "a" * LONG
                if isinstance(current, str):
                    # `$` alone would also match before a final newline: the anchoring must not.
                    yield "pattern_trailing_newline", current + "\n"
                    yield "pattern_inner_space", current + " x"
        elif isinstance(m, mi.BytesType):
            yield "not_base64", "!!not base64!!"
            if m.max_length is not None:
                yield "too_long", base64.b64encode(b"\0" * (m.max_length + 1)).decode()
            if m.min_length:
                yield "too_short", ""
        elif isinstance(m, mi.IntType):
            if m.ge is not None:
                yield "below_minimum", m.ge - 1
            if m.gt is not None:
                yield "below_minimum", m.gt
            if m.le is not None:
                yield "above_maximum", m.le + 1
            if m.lt is not None:
                yield "above_maximum", m.lt
            yield "beyond_64_bits", 2**64
        elif isinstance(m, (mi.ListType, mi.VarTupleType, mi.SetType, mi.FrozenSetType)):
            item = current[0] if isinstance(current, list) and current else "hostile"
            if m.max_length is not None:
                yield "too_many_items", [item] * (m.max_length + 1)
            if m.min_length:
                yield "too_few_items", []
        elif isinstance(m, mi.DictType):
            value = next(iter(current.values())) if isinstance(current, dict) and current else "v"
            if m.max_length is not None:
                yield "too_many_members", {f"k{i}": value for i in range(m.max_length + 1)}
            if m.min_length:
                yield "too_few_members", {}
            if isinstance(m.key_type, mi.StrType) and (m.key_type.max_length or m.key_type.pattern):
                yield "key_too_long", {"k" * LONG: value}
        elif isinstance(m, mi.LiteralType) or isinstance(m, mi.EnumType):
            yield "not_a_member", "hostile-not-a-member"
        elif isinstance(m, mi.DateTimeType):
            yield "not_a_datetime", "2024-13-45T25:61:61Z"
            if m.tz:
                yield "naive_datetime", "2024-01-01T00:00:00"


# -- opaque fields: junk that decodes, for the handler to refuse -----------------------------------
# Three segments of empty JSON objects; an unsigned `alg: none` token; not a JWS at all.
_JUNK_JWS = ("e30.e30.e30", "eyJhbGciOiJub25lIn0.eyJzdWIiOiJ4In0.", "x")
_JUNK_PEM = "-----BEGIN CERTIFICATE-----\nMIIBhostile\n-----END CERTIFICATE-----\n"
_JUNK_JWK = {"kty": "OKP", "crv": "Ed25519", "x": "AAAA"}


def _opaque_values(t: mi.Type) -> list[tuple[str, Any]]:
    out: list[tuple[str, Any]] = []
    for m in _members(t):
        if isinstance(m, mi.StrType) and m.pattern is None and m.max_length in (16384, 65536):
            # Jws / Pem (contracts.types): a token, a certificate chain
            out += [(f"junk_token_{i}", v) for i, v in enumerate(_JUNK_JWS)]
            if m.max_length == 65536:
                out.append(("junk_pem", _JUNK_PEM))
        elif isinstance(m, mi.BytesType):
            out.append(("junk_bytes", base64.b64encode(b"\x00hostile" * 8).decode()))
        elif (isinstance(m, mi.DictType) and isinstance(m.value_type, mi.StrType)
              and isinstance(m.key_type, mi.StrType) and m.max_length == 12):
            out.append(("junk_jwk", _JUNK_JWK))  # Jwk (contracts.types)
    return out


def _opaque(info: mi.Type, root: dict[str, Any], path: Path, depth: int) -> Iterator[tuple[str, Any]]:
    assert isinstance(info, mi.StructType)
    here = _get(root, path)
    for f in info.fields:
        at = path + (f.encode_name,)
        present = isinstance(here, dict) and f.encode_name in here
        for kind, value in _opaque_values(f.type):
            yield _label(kind, at), _set(root, at, value)
        current = here.get(f.encode_name) if present else None
        for member in _members(f.type):
            if depth >= MAX_NESTING:
                break
            if isinstance(member, mi.ListType) and current and isinstance(member.item_type, mi.StrType):
                for kind, value in _opaque_values(member.item_type)[:1]:
                    yield _label(kind, at + (len(current) - 1,)), _set(root, at + (len(current) - 1,), value)
            elif isinstance(member, mi.StructType) and isinstance(current, dict):
                yield from _opaque(member, root, at, depth + 1)


# -- paths into a JSON document ------------------------------------------------------------------
def _label(kind: str, path: Path) -> str:
    return f"{kind}:{'.'.join(str(p) for p in path) or '$'}"


def _copy(doc: Any) -> Any:
    return json.loads(json.dumps(doc))


def _get(doc: Any, path: Path) -> Any:
    for p in path:
        doc = doc[p]
    return doc


def _set(root: dict[str, Any], path: Path, value: Any) -> dict[str, Any]:
    out = _copy(root)
    _get(out, path[:-1])[path[-1]] = value
    return out


def _delete(root: dict[str, Any], path: Path) -> dict[str, Any]:
    out = _copy(root)
    parent = _get(out, path[:-1])
    parent.pop(path[-1], None)
    return out
