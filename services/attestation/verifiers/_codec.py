"""Strict decoders for hostile input: CBOR, JSON, base64, hex and text armour.

Every function here turns any decoding failure into `AppraisalError(malformed)`, so a verifier
never lets a third-party decoder's own exception escape.
"""

from __future__ import annotations

import base64
import binascii
import io
import json
import re
from collections.abc import Mapping
from typing import Any

import cbor2

from .base import AppraisalError, Reason

# Generous for every supported kind (a Nitro document is ~8 KiB, a Sigstore bundle ~20 KiB);
# bounds the work any single appraisal can be made to do.
MAX_EVIDENCE_BYTES = 256 * 1024
_CBOR_MAX_DEPTH = 16

_HEX_TEXT = re.compile(rb"^(?:[0-9a-fA-F]{2})+$")
_B64_TEXT = re.compile(rb"^[A-Za-z0-9+/]*={0,2}$")
_B64U_TEXT = re.compile(rb"^[A-Za-z0-9_-]*$")


def malformed(message: str) -> AppraisalError:
    return AppraisalError(Reason.MALFORMED, message)


def check_size(data: Any, what: str) -> bytes:
    if not isinstance(data, bytes | bytearray | memoryview):
        raise malformed(f"{what} must be bytes")
    data = bytes(data)
    if not data:
        raise malformed(f"{what} is empty")
    if len(data) > MAX_EVIDENCE_BYTES:
        raise malformed(f"{what} is larger than {MAX_EVIDENCE_BYTES} bytes")
    return data


def cbor_decode(data: bytes, what: str) -> Any:
    """Exactly one CBOR item: definite lengths, no duplicate map keys, bounded depth."""
    stream = io.BytesIO(data)
    try:
        # read_size=1 so that the stream position after decoding is exact (trailing bytes check).
        decoder = cbor2.CBORDecoder(
            stream,
            read_size=1,
            allow_duplicate_keys=False,
            allow_indefinite=False,
            max_depth=_CBOR_MAX_DEPTH,
        )
        value = decoder.decode()
    # cbor2 raises its own errors and, through its semantic tag decoders (dates, decimals,
    # regexes...), arbitrary ones; all mean "not the CBOR we accept".
    except Exception as exc:  # noqa: BLE001
        raise malformed(f"{what} is not valid CBOR") from exc
    if stream.tell() != len(data):
        raise malformed(f"{what} has trailing bytes after the CBOR item")
    return value


def _strict_pairs(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    obj: dict[str, Any] = {}
    for key, value in pairs:
        if key in obj:
            raise ValueError(f"duplicate member {key!r}")
        obj[key] = value
    return obj


def _no_constant(name: str) -> Any:
    raise ValueError(f"JSON constant {name} is not allowed")


def json_object(data: bytes, what: str) -> dict[str, Any]:
    """A JSON object: UTF-8, no duplicate members, no NaN/Infinity."""
    try:
        value = json.loads(data.decode("utf-8"), object_pairs_hook=_strict_pairs, parse_constant=_no_constant)
    except (UnicodeDecodeError, ValueError, RecursionError) as exc:
        raise malformed(f"{what} is not valid JSON") from exc
    if not isinstance(value, dict):
        raise malformed(f"{what} is not a JSON object")
    return value


def b64decode(text: Any, what: str) -> bytes:
    """Standard base64 with padding, canonical (one text per value)."""
    if not isinstance(text, str):
        raise malformed(f"{what} must be a base64 string")
    raw_text = text.encode("ascii", "replace")
    if len(raw_text) % 4 or not _B64_TEXT.match(raw_text):
        raise malformed(f"{what} is not base64")
    try:
        raw = base64.b64decode(raw_text, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise malformed(f"{what} is not base64") from exc
    if base64.b64encode(raw) != raw_text:
        raise malformed(f"{what} is not canonical base64")
    return raw


def hexdecode(text: Any, what: str, *, size: int | None = None) -> bytes:
    if not isinstance(text, str) or not _HEX_TEXT.match(text.encode("ascii", "replace")):
        raise malformed(f"{what} is not hex")
    raw = bytes.fromhex(text)
    if size is not None and len(raw) != size:
        raise malformed(f"{what} must be {size} bytes")
    return raw


def unarmour(data: bytes, *, binary_first_bytes: frozenset[int], what: str) -> bytes:
    """Accept raw binary evidence, or the same bytes as hex or base64 text (files, CLIs).

    Binary is recognised by its first byte (e.g. 0x84 / 0xD2 for COSE_Sign1). Text is tried as
    hex first (PSA samples), then as standard or URL-safe base64 (Nitro samples).
    """
    if data[0] in binary_first_bytes:
        return data
    text = b"".join(data.split())  # tolerate line breaks and a trailing newline
    if not text:
        raise malformed(f"{what} is empty")
    if _HEX_TEXT.match(text):
        return bytes.fromhex(text.decode("ascii"))
    try:
        if _B64_TEXT.match(text) and len(text) % 4 == 0:
            return base64.b64decode(text, validate=True)
        bare = text.rstrip(b"=")
        if _B64U_TEXT.match(bare) and len(bare) % 4 != 1:
            return base64.urlsafe_b64decode(bare + b"=" * (-len(bare) % 4))
    except (binascii.Error, ValueError) as exc:
        raise malformed(f"{what} is not valid base64") from exc
    raise malformed(f"{what} is neither binary, hex nor base64")


def is_map(value: Any) -> bool:
    # cbor2 hands out immutable mappings inside tags, so test for the ABC, not dict.
    return isinstance(value, Mapping)


def is_array(value: Any) -> bool:
    return isinstance(value, list | tuple)


def is_uint(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0


def is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)
