"""Size limits on every input, stated in the contracts: every field of every message struct has a
bound (a string its maximum length or an anchored pattern without open-ended repetition, a list or
map its maximum size, an integer its range), at any depth.

The walk uses `msgspec.inspect` rather than the JSON Schema, which shows a datetime as a bare
string. Values typed `Any` (inside a bounded map or list, such as JSON Schema documents and claim
sets) are bounded by their container and by `MAX_PAYLOAD_BYTES`; datetimes, booleans, literals and
enums are bounded by what they are.
"""

from __future__ import annotations

import importlib
import inspect
import pkgutil
import re

import msgspec
import msgspec.inspect as mi

import contracts

_OPEN_ENDED = re.compile(r"(?<!\\)[*+]|(?<!\\)\{\d+,\}")
_CHARACTER_CLASS = re.compile(r"\[(?:\\.|[^\]])*\]")  # `+` inside `[...]` is a character, not repetition


def open_ended(pattern: str) -> bool:
    return bool(_OPEN_ENDED.search(_CHARACTER_CLASS.sub("x", pattern)))


def structs() -> list[type[msgspec.Struct]]:
    found: set[type[msgspec.Struct]] = set()
    for module in pkgutil.iter_modules(contracts.__path__):
        mod = importlib.import_module(f"contracts.{module.name}")
        for obj in vars(mod).values():
            if inspect.isclass(obj) and issubclass(obj, msgspec.Struct) and obj.__module__ == mod.__name__:
                found.add(obj)
    return sorted(found, key=lambda s: (s.__module__, s.__name__))


def unbounded(t: mi.Type, path: str, out: list[str], seen: set[type]) -> None:
    if isinstance(t, mi.UnionType):
        for member in t.types:
            unbounded(member, path, out, seen)
    elif isinstance(t, mi.StrType):
        if t.max_length is None and (t.pattern is None or open_ended(t.pattern)):
            out.append(f"{path}: string without max_length or closed pattern")
    elif isinstance(t, mi.BytesType):
        if t.max_length is None:
            out.append(f"{path}: bytes without max_length")
    elif isinstance(t, (mi.IntType, mi.FloatType)):
        if (t.ge is None and t.gt is None) or (t.le is None and t.lt is None):
            out.append(f"{path}: number without a range")
    elif isinstance(t, (mi.ListType, mi.SetType, mi.FrozenSetType, mi.VarTupleType)):
        if t.max_length is None:
            out.append(f"{path}: list without max_length")
        unbounded(t.item_type, f"{path}[]", out, seen)
    elif isinstance(t, mi.DictType):
        if t.max_length is None:
            out.append(f"{path}: map without max_length")
        unbounded(t.key_type, f"{path}{{key}}", out, seen)
        unbounded(t.value_type, f"{path}{{}}", out, seen)
    elif isinstance(t, mi.StructType):
        if t.cls in seen:
            return
        seen.add(t.cls)
        for f in t.fields:
            unbounded(f.type, f"{t.cls.__name__}.{f.encode_name}", out, seen)
    elif isinstance(t, (mi.AnyType, mi.DateTimeType, mi.BoolType, mi.NoneType, mi.LiteralType, mi.EnumType)):
        return
    else:
        out.append(f"{path}: {type(t).__name__} not judged by this test")


def test_every_field_of_every_contract_has_a_bound() -> None:
    offenders: list[str] = []
    for struct in structs():
        unbounded(mi.type_info(struct), struct.__name__, offenders, set())
    offenders = sorted(set(offenders))
    assert not offenders, f"{len(offenders)} unbounded fields:\n" + "\n".join(offenders)


def test_open_ended_patterns_are_told_from_closed_ones() -> None:
    assert open_ended("^a+$") and open_ended("^[a-z]*$") and open_ended("^a{2,}$")
    assert not open_ended("^(?:[A-Za-z0-9+/]{43}=)$(?!\\n)") and not open_ended("^[a-z]{1,64}$")


def test_the_walk_finds_unbounded_fields() -> None:
    class Loose(msgspec.Struct):
        name: str
        tags: list[str]
        count: int

    found: list[str] = []
    unbounded(mi.type_info(Loose), "Loose", found, set())
    assert len(found) == 4, found  # name, tags, tags[], count
