"""`agentid bench`: the floors, then every scenario asked for, then the report.

Order: the one-core floors and the in-process scenarios first (verify, delegation), while no
server runs, so they have the core to themselves; then the deployment (servers and workers), the
tenant and its agents, the NATS echo floors, and the scenarios that need them. Each scenario does
a warm-up and `plan.runs` measured runs, each beside a run of its floor.
"""

from __future__ import annotations

import asyncio
import importlib
import os
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from benchmarks import floor
from benchmarks.deployment import Deployment
from benchmarks.plan import FULL, QUICK, Plan
from benchmarks.report import assemble, machine
from benchmarks.scenarios import NEEDS_STACK, Bench, Result, groups_for, resolve
from benchmarks.stats import Run
from benchmarks.world import World
from shared.config import Settings

FLOORS = ("ed25519_sign", "ed25519_verify", "es256_sign", "es256_verify", "ed25519_keygen",
          "pyjwt_encode", "pyjwt_decode", "nats_echo_c1", "nats_echo_c64", "nats_kv_create", "pg_round_trip",
          "pg_commit")


async def run(settings: Settings, *, quick: bool = False, only: Sequence[str] | None = None,
              layout: str = "processes", token_workers: int | None = None, profile_dir: Path | None = None,
              plan: Plan | None = None, say: Callable[[str], None] = print) -> dict[str, Any]:
    """Measure and return the report (see benchmarks.report). Raises ValueError for unknown names."""
    names = resolve(only)
    plan = plan or (QUICK if quick else FULL)
    began = time.perf_counter()
    info = machine()
    floors: dict[str, list[Run]] = {name: [] for name in FLOORS}
    say(f"agentid bench ({plan.name}): {len(names)} scenarios, {plan.runs} runs each; "
        f"{info['cores']} cores, load average {info['load_average_at_start']}")
    for _ in range(plan.runs):
        for name, r in {**floor.crypto(plan.crypto), **floor.pyjwt(plan.crypto)}.items():
            floors[name].append(r)
    results: dict[str, Result] = {}
    groups = groups_for(names)
    stack_groups: dict[str, list[str]] = {}
    with tempfile.TemporaryDirectory(prefix="agentid-bench-") as tmp:
        bench = Bench(plan=plan, say=say, workdir=Path(tmp), profile_dir=profile_dir)
        for group, members in groups.items():
            if group not in NEEDS_STACK:
                results.update(await _timed(bench, group, members))
        stack_groups = {g: m for g, m in groups.items() if g in NEEDS_STACK}
        if stack_groups:
            try:
                await _with_stack(bench, settings, stack_groups, layout, token_workers, floors, results, info)
            except Exception as exc:  # noqa: BLE001 - the in-process figures are still worth a report
                bench.say(f"the deployment failed: {type(exc).__name__}: {exc}")
                bench.notes.setdefault("errors", {})["deployment"] = f"{type(exc).__name__}: {exc}"
    info["load_average_at_end"] = list(os.getloadavg()) if hasattr(os, "getloadavg") else None
    elapsed = time.perf_counter() - began
    say(f"done in {elapsed:.0f} s")
    return assemble(info, floors, results, plan=plan.name, layout=layout if stack_groups else None,
                    elapsed_s=round(elapsed, 1), selected=names, **bench.notes)


async def _prepare(bench: Bench, group: str, members: list[str]) -> Any:
    """A group's set-up work, if it has any; a failure leaves it to the group's run to retry (and
    report)."""
    prepare = getattr(importlib.import_module(f"benchmarks.scenarios.{group}"), "prepare", None)
    if prepare is None:
        return None
    try:
        return await prepare(bench, members)
    except Exception as exc:  # noqa: BLE001 - reported; the group's run tries again
        bench.say(f"{group}: set-up failed: {type(exc).__name__}: {exc}")
        return None


async def _timed(bench: Bench, group: str, members: list[str]) -> dict[str, Result]:
    """Run one group. A group that fails leaves its scenarios null and says why in the report's
    `errors`; the other groups still run."""
    began = time.perf_counter()
    try:
        return await importlib.import_module(f"benchmarks.scenarios.{group}").run(bench, members)
    except Exception as exc:  # noqa: BLE001 - any failure of one group is reported, not fatal
        bench.say(f"{group}: failed: {type(exc).__name__}: {exc}")
        bench.notes.setdefault("errors", {})[group] = f"{type(exc).__name__}: {exc}"
        return {}
    finally:
        bench.notes.setdefault("seconds_by_group", {})[group] = round(time.perf_counter() - began, 1)


async def _with_stack(bench: Bench, settings: Settings, groups: dict[str, list[str]], layout: str,
                      token_workers: int | None, floors: dict[str, list[Run]], results: dict[str, Result],
                      info: dict[str, Any]) -> None:
    plan = bench.plan
    bench.say(f"starting the deployment ({layout} layout)...")
    began = time.perf_counter()
    async with Deployment(settings, bench.workdir / "stack", layout=layout, token_workers=token_workers) as dep:
        bench.deployment = dep
        # Bulk loads (the audit logs) go on while the tenant and its agents are set up.
        preparing = {g: asyncio.create_task(_prepare(bench, g, m)) for g, m in groups.items()}
        world: World | None = None
        try:
            world = await World.create(dep)
            info["postgres"] = await world.db.fetchval("SHOW server_version")
            version = world.nc.connected_server_version
            info["nats_server"] = f"v{version.major}.{version.minor}.{version.patch}"
            info["token_workers"] = dep.token_workers if layout == "processes" else "in process"
            bench.say(f"spawning {plan.agents} agents...")
            await world.spawn(plan.agents)
            bench.world = world
            for group, task in preparing.items():
                bench.prepared[group] = await task
            bench.notes.setdefault("seconds_by_group", {})["set_up"] = round(time.perf_counter() - began, 1)
            await _measure(bench, dep, world, groups, floors, results)
        finally:
            bench.world = None
            for task in preparing.values():
                task.cancel()
            await asyncio.gather(*preparing.values(), return_exceptions=True)
            if world is not None:
                await world.close()


async def _measure(bench: Bench, dep: Deployment, world: World, groups: dict[str, list[str]],
                   floors: dict[str, list[Run]], results: dict[str, Result]) -> None:
    """The deployment's floors (NATS echo beside responders placed like the token workers, a KV
    create, a Postgres round trip and commit), then each group."""
    plan = bench.plan
    responders = dep.token_workers if dep.layout == "processes" else 0
    bench.echo_subject = f"{dep.root}.bench.echo"
    bench.echo_placement = (f"{responders} responder processes in a queue group" if responders
                            else "a responder in the bench process")
    async with floor.echo_responders(dep.nats_url, bench.echo_subject, processes=responders):
        await floor.nats_echo(world.nc, bench.echo_subject, count=plan.echo_c1, concurrency=8)  # warm-up
        for _ in range(plan.runs):
            floors["nats_echo_c1"].append(
                await floor.nats_echo(world.nc, bench.echo_subject, count=plan.echo_c1, concurrency=1))
            floors["nats_echo_c64"].append(
                await floor.nats_echo(world.nc, bench.echo_subject, count=plan.echo_c64, concurrency=64))
            floors["nats_kv_create"].append(await floor.nats_kv_create(world.nc, count=plan.echo_c1 // 2))
            for name, r in (await floor.postgres(dep.database_url, count=plan.echo_c1 // 2)).items():
                floors[name].append(r)
        for group, members in groups.items():
            results.update(await _timed(bench, group, members))
