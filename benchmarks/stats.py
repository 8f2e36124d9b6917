"""Figures from samples: one run's rate and percentiles, and the median and range over runs.

A run is a fixed number of operations; its rate is operations per second of wall time (or of CPU
time, for the single-core figures), and its percentiles come from every operation's latency, not
from a histogram's buckets. Over several runs the report gives the median of each figure and its
range (lowest, highest): the range is what tells a real change from noise.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

FIGURES = ("rate_per_s", "p50_ms", "p99_ms")


def percentile(values: Sequence[float], q: float) -> float:
    """The q-th percentile (0..100) by linear interpolation between closest ranks."""
    if not values:
        raise ValueError("no samples")
    ordered = sorted(values)
    pos = (len(ordered) - 1) * q / 100
    low, high = math.floor(pos), math.ceil(pos)
    if math.isinf(ordered[high]):
        return math.inf
    return ordered[low] + (ordered[high] - ordered[low]) * (pos - low)


@dataclass
class Run:
    """One run: `count` operations done (`errors` of them failed) in `seconds`."""

    count: int
    seconds: float
    latencies_s: list[float] = field(default_factory=list, repr=False)
    errors: int = 0
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def rate_per_s(self) -> float | None:
        done = self.count - self.errors
        return done / self.seconds if self.seconds > 0 else None

    def pct_ms(self, q: float) -> float | None:
        """The q-th percentile latency over every operation, failures counting as infinitely slow:
        None when the percentile falls on a failure (it is not known, only that it exceeds every
        answer's), so a run that timed out its slowest requests never reports a flattering p99."""
        if not self.latencies_s:
            return None
        value = percentile(self.latencies_s + [math.inf] * self.errors, q)
        return None if math.isinf(value) or math.isnan(value) else value * 1000

    def figures(self) -> dict[str, Any]:
        out: dict[str, Any] = {"rate_per_s": _round(self.rate_per_s), "p50_ms": _round(self.pct_ms(50)),
                               "p99_ms": _round(self.pct_ms(99)), "count": self.count, "errors": self.errors,
                               "seconds": _round(self.seconds)}
        if self.errors and self.latencies_s:
            out["slowest_answer_ms"] = _round(max(self.latencies_s) * 1000)  # failures were slower still
        out.update({k: _round(v) if isinstance(v, float) else v for k, v in self.extra.items()})
        return out


def _round(value: float | None, digits: int = 4) -> float | None:
    if value is None:
        return None
    return float(f"{value:.{digits}g}") if value else 0.0


def summarise(runs: Sequence[Mapping[str, Any]], keys: Sequence[str] = FIGURES) -> dict[str, Any]:
    """Median and range (lowest, highest) of each figure over runs. A latency a run could not
    know (its failures were slower) counts as larger than any: the median may still be known,
    the top of the range is then null. A figure no run has stays null."""
    out: dict[str, Any] = {}
    for key in keys:
        values = [r.get(key) for r in runs]
        if not values or all(v is None for v in values) or (key == "rate_per_s" and None in values):
            out[key], out[f"{key}_range"] = None, None
            continue
        known = [math.inf if v is None else float(v) for v in values]
        median = statistics.median(known)
        out[key] = None if math.isinf(median) else _round(median)
        out[f"{key}_range"] = [_round(min(known)), None if math.isinf(max(known)) else _round(max(known))]
    return out


def ratio(value: float | None, floor: float | None) -> float | None:
    """value / floor, or None when either is missing: a ratio is never invented."""
    if value is None or not floor:
        return None
    return _round(value / floor, 3)
