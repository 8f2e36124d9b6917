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
        return done / self.seconds if self.seconds > 0 and done > 0 else None

    def pct_ms(self, q: float) -> float | None:
        return percentile(self.latencies_s, q) * 1000 if self.latencies_s else None

    def figures(self) -> dict[str, Any]:
        out: dict[str, Any] = {"rate_per_s": _round(self.rate_per_s), "p50_ms": _round(self.pct_ms(50)),
                               "p99_ms": _round(self.pct_ms(99)), "count": self.count, "errors": self.errors,
                               "seconds": _round(self.seconds)}
        out.update({k: _round(v) if isinstance(v, float) else v for k, v in self.extra.items()})
        return out


def _round(value: float | None, digits: int = 4) -> float | None:
    if value is None:
        return None
    return float(f"{value:.{digits}g}") if value else 0.0


def summarise(runs: Sequence[Mapping[str, Any]], keys: Sequence[str] = FIGURES) -> dict[str, Any]:
    """Median and range of each figure over runs (a figure missing from any run stays null)."""
    out: dict[str, Any] = {}
    for key in keys:
        values = [r.get(key) for r in runs]
        if not values or any(v is None for v in values):
            out[key] = None
            out[f"{key}_range"] = None
            continue
        out[key] = _round(statistics.median(values))
        out[f"{key}_range"] = [_round(min(values)), _round(max(values))]
    return out


def ratio(value: float | None, floor: float | None) -> float | None:
    """value / floor, or None when either is missing: a ratio is never invented."""
    if value is None or not floor:
        return None
    return _round(value / floor, 3)
