"""CPU seconds used by each process of the deployment during a scenario, read from /proc.

On a small machine the load generator, the workers, nats-server and Postgres share the cores; the
split says which of them a scenario is bound by. Linux only: elsewhere the split is null.
"""

from __future__ import annotations

import os
from collections.abc import Mapping

_TICKS = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100


def _stat(pid: int) -> list[str] | None:
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            text = f.read().decode()
    except OSError:
        return None
    # The command name (field 2) may hold spaces: split after its closing parenthesis.
    return text[text.rindex(")") + 2:].split()


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of one process (0 if it is gone)."""
    fields = _stat(pid)
    if fields is None:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / _TICKS  # utime, stime


def children(pid: int) -> list[int]:
    """Direct children of `pid` (a postmaster's backends)."""
    found = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            fields = _stat(int(entry))
            if fields is not None and int(fields[1]) == pid:
                found.append(int(entry))
    return found


def snapshot(groups: Mapping[str, list[int]], *, with_children: frozenset[str] = frozenset()) -> dict[str, float] | None:
    """CPU seconds per group of processes; groups named in `with_children` include their children
    (Postgres runs one process per connection). None where /proc is unavailable."""
    if not os.path.isdir("/proc"):
        return None
    out = {}
    for name, pids in groups.items():
        every = list(pids)
        if name in with_children:
            for pid in pids:
                every += children(pid)
        out[name] = sum(cpu_seconds(p) for p in every)
    return out


def delta(before: Mapping[str, float] | None, after: Mapping[str, float] | None) -> dict[str, float] | None:
    if before is None or after is None:
        return None
    return {k: round(after[k] - before.get(k, 0.0), 3) for k in after}
