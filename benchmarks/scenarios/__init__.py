"""The scenarios of `agentid bench`, their report names, and what each needs.

Each group module has `async def run(bench, names) -> dict[name, Result]` and measures the names it
is asked for (a group shares its set-up: the issue scenarios share their agents and echo responders).
A group may also have `async def prepare(bench, names)`, which the runner starts while the rest of
the set-up goes on (the audit logs' bulk load); its result is `bench.prepared[group]`.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from benchmarks.deployment import Deployment
    from benchmarks.plan import Plan
    from benchmarks.world import World

DEPTHS = range(1, 9)

# report name -> group module (benchmarks.scenarios.<group>)
GROUPS: dict[str, str] = {
    "issue_c1": "issue", "issue_c64": "issue", "issue_open_1000": "issue", "audit_append": "issue",
    "verify_cold": "verify", "verify_cached": "verify",
    "spawn": "spawn",
    "exchange": "exchange",
    **{f"delegation_d{d}": "delegation" for d in DEPTHS},
    **{f"delegation_d{d}_warm": "delegation" for d in DEPTHS},
    "audit_proof_100k": "audit", "audit_proof_1m": "audit",
}
NAMES: tuple[str, ...] = tuple(GROUPS)
# Groups that run against a deployment (servers and workers); the others are in-process.
NEEDS_STACK = frozenset({"issue", "spawn", "exchange", "audit"})

# What each target of issue 10 asks, by figure: ("min", x) means figure >= x, ("max", x) figure <= x.
TARGETS: dict[str, dict[str, tuple[str, float]]] = {
    "issue_c64": {"rate_per_s": ("min", 5000), "p99_ms": ("max", 25)},
    "issue_c1": {"p50_ms": ("max", 1), "p99_ms": ("max", 3)},
    "issue_open_1000": {"p99_ms": ("max", 5)},
    "verify_cold": {"rate_per_s": ("min", 5000)},
    "verify_cached": {"rate_per_s": ("min", 8000)},
    "spawn": {"p50_ms": ("max", 3), "p99_ms": ("max", 10)},
    "delegation_d5": {"p50_ms": ("max", 1)},
    "audit_append": {"ratio_to_floor": ("min", 1.0)},
    "audit_proof_1m": {"p50_ms": ("max", 1)},
}


@dataclass
class Result:
    """A scenario's runs and its floor's runs (figures per run: rate_per_s, p50_ms, p99_ms, ...)."""

    runs: list[dict[str, Any]]
    floor: str                                   # what the floor is, in words
    floor_runs: list[dict[str, Any]] | None = None
    extra: dict[str, Any] = field(default_factory=dict)


@dataclass
class Bench:
    """What every group gets: the plan (counts), the deployment and tenant (for stack groups), and
    a way to say what it is doing."""

    plan: Plan
    say: Callable[[str], None]
    workdir: Path
    deployment: Deployment | None = None
    world: World | None = None
    profile_dir: Path | None = None
    prepared: dict[str, Any] = field(default_factory=dict)  # group -> what its `prepare` made
    echo_subject: str = ""       # raw NATS echo responders, placed like the token workers
    echo_placement: str = ""
    notes: dict[str, Any] = field(default_factory=dict)


def groups_for(names: Sequence[str]) -> dict[str, list[str]]:
    """The groups to run for these report names, each with its names, in report order."""
    out: dict[str, list[str]] = {}
    for name in NAMES:
        if name in names:
            out.setdefault(GROUPS[name], []).append(name)
    return out


def resolve(selection: Sequence[str] | None) -> list[str]:
    """Report names for `--only`: exact names, or group names (`delegation`: all of its names)."""
    if not selection:
        return list(NAMES)
    chosen: list[str] = []
    for item in selection:
        found = [n for n in NAMES if item in (n, GROUPS[n])]
        if not found:
            raise ValueError(f"unknown scenario {item!r}; known: {', '.join(NAMES)}")
        chosen += [n for n in found if n not in chosen]
    return [n for n in NAMES if n in chosen]


def target_met(name: str, figures: Mapping[str, Any]) -> bool | None:
    """Whether the medians meet issue 10's target for this scenario (None: no target, or no figure)."""
    target = TARGETS.get(name)
    if not target:
        return None
    for key, (kind, bound) in target.items():
        value = figures.get(key)
        if value is None:
            return None
        if (kind == "min" and value < bound) or (kind == "max" and value > bound):
            return False
    return True
