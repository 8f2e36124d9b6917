"""Rate limits: a token bucket per key (an agent, an orchestrator), refusing with `rate_limited`.

Each replica keeps its own buckets, so with N replicas behind a queue group the effective limit is
up to N times the configured one; limits here stop floods and runaway agents, while quotas that must
be exact (live agents) are enforced in the database.
"""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass

from shared.errors import RateLimited


@dataclass
class _Bucket:
    tokens: float
    at: float


class RateLimiter:
    def __init__(self, *, max_keys: int = 100_000, clock: Callable[[], float] = time.monotonic) -> None:
        self._buckets: OrderedDict[str, _Bucket] = OrderedDict()
        self._max = max_keys
        self._clock = clock

    def take(self, key: str, *, rate_per_s: float, burst: int, what: str = "requests") -> None:
        """Spend one token from `key`'s bucket (refilled at `rate_per_s`, holding at most `burst`).
        Raises RateLimited, saying when to retry."""
        now = self._clock()
        bucket = self._buckets.get(key)
        if bucket is None:
            bucket = _Bucket(tokens=float(burst), at=now)
            self._buckets[key] = bucket
            if len(self._buckets) > self._max:
                self._buckets.popitem(last=False)  # the least recently used: resets to a full bucket
        else:
            self._buckets.move_to_end(key)
            bucket.tokens = min(float(burst), bucket.tokens + (now - bucket.at) * rate_per_s)
            bucket.at = now
        if bucket.tokens < 1.0:
            retry = (1.0 - bucket.tokens) / rate_per_s
            raise RateLimited(f"too many {what}: at most {rate_per_s:g}/s (burst {burst})",
                              {"retry_after_s": round(retry, 3)})
        bucket.tokens -= 1.0
