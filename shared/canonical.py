"""Canonical JSON: the exact bytes that get hashed or signed.

RFC 8785 (JCS) for the values we produce: objects with string keys sorted by code point,
no whitespace, strings as JSON with non-ASCII kept as UTF-8, integers only. Floats are refused
rather than risk a number that serialises differently elsewhere.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any


def _check(value: Any) -> None:
    if isinstance(value, float):
        raise TypeError("canonical JSON holds no floats")
    if isinstance(value, dict):
        for k, v in value.items():
            if not isinstance(k, str):
                raise TypeError("object keys are strings")
            _check(v)
    elif isinstance(value, list | tuple):
        for v in value:
            _check(v)


def canonical_json(value: Any) -> bytes:
    _check(value)
    # sort_keys orders by code point of the Python str, which matches JCS for the BMP; our keys are ASCII.
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode("utf-8")


def sha256_digest(value: Any) -> str:
    return "sha256:" + hashlib.sha256(canonical_json(value)).hexdigest()
