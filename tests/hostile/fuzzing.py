"""Hypothesis settings and strategies for the hostile suite's fuzzing.

Example counts are modest so the suite stays fast in CI; `HYPOTHESIS_PROFILE=deep` multiplies
them for long local runs (`HYPOTHESIS_PROFILE=deep pytest tests/hostile -k fuzz`). The profile is
read here rather than registered globally, so other suites' own settings stay as they are.
"""

from __future__ import annotations

import json
import os
from collections.abc import Coroutine
from typing import Any

from hypothesis import HealthCheck, settings
from hypothesis import strategies as st

from shared.b64 import b64u_encode

DEEP = os.environ.get("HYPOTHESIS_PROFILE") == "deep"


def fuzz(examples: int) -> settings:
    """`examples` in CI, fifty times as many with the deep profile."""
    return settings(max_examples=examples * (50 if DEEP else 1), deadline=None, derandomize=not DEEP,
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])


def run(coro: Coroutine[Any, Any, Any]) -> Any:
    """Drive a coroutine that never really waits (a local registry, an offline resolver)."""
    try:
        coro.send(None)
    except StopIteration as done:
        return done.value
    coro.close()
    raise AssertionError("the coroutine waited on I/O")


scalars = st.one_of(
    st.none(), st.booleans(), st.integers(), st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(allow_nan=False, allow_infinity=False), st.text(max_size=40),
)
json_values = st.recursive(
    scalars, lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=12), inner, max_size=4),
    max_leaves=8)


def objects_with(keys: list[str]) -> st.SearchStrategy[dict[str, Any]]:
    """JSON objects whose members are mostly the names a parser looks for, with any values."""
    return st.dictionaries(st.sampled_from(keys) | st.text(max_size=8), json_values, max_size=len(keys) + 2)


def _segment(value: Any) -> str:
    return b64u_encode(json.dumps(value, separators=(",", ":")).encode())


HEADER_MEMBERS = ["alg", "typ", "kid", "jwk", "crit", "x5c", "cty", "ucv", "b64"]
ALGS = ["EdDSA", "Ed25519", "ES256", "RS256", "none", "HS256", "PS256"]


def compact_tokens(claims: list[str]) -> st.SearchStrategy[str]:
    """Compact JWS-shaped strings: JSON header and payload (with the claim names a verifier reads),
    any signature; and now and then no JWS at all."""
    header = st.fixed_dictionaries({"alg": st.sampled_from(ALGS) | json_values},
                                   optional={k: json_values for k in HEADER_MEMBERS[1:]})
    token = st.builds(lambda h, p, sig: f"{_segment(h)}.{_segment(p)}.{b64u_encode(sig)}",
                      header, objects_with(claims), st.binary(max_size=80))
    return st.one_of(token, st.text(max_size=60), st.text(alphabet="abcXYZ019-_.", max_size=80))
