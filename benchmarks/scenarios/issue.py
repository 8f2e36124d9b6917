"""`token.issue` over NATS request-reply from many agents, and the audit log's append rate under it.

Each request is a real agent's: signed with its own key, checked by the token worker (directory,
signature, replay guard), decided by Cedar policy, minted, and durable (the token row and its
event commit before the reply). The agent-side token cache is bypassed: every request goes out.

- `issue_c1`, `issue_c64`: closed loop, 1 and 64 in flight; floor = raw NATS echo at the same
  concurrency, to responders placed like the token workers.
- `issue_open_1000`: open loop, 1,000 requests/s offered, latency from each scheduled send;
  floor = the raw echo under the same open loop.
- `audit_append`: entries the audit worker appended per second while `issue_c64` ran; its floor is
  the rate it has to keep up with (the grants of that run), so a ratio of 1 means it kept pace.
  Each run also says where the events not yet logged were when the load stopped (still in a
  worker's outbox, or in the stream) and how long the log took to hold them all.

After every run the bench waits for the outboxes and the audit log to drain (reported as
`catch_up_s`), so each run starts from the same quiet state.
"""

from __future__ import annotations

import time
from typing import Any

from benchmarks import cpu
from benchmarks.floor import nats_echo, postgres
from benchmarks.load import closed_loop, open_loop
from benchmarks.profile import Profiler
from benchmarks.scenarios import Bench, Result
from benchmarks.stats import Run
from benchmarks.world import AUDIENCE, DETAIL, World
from contracts import subjects as sub
from contracts import tokens as tok

OPEN_RATE = 1000.0


class Issuer:
    """The issue load: request `i` comes from agent `i mod agents`. Remembers every token it was
    handed, so a run can check that each one's record is in the database."""

    def __init__(self, world: World) -> None:
        self.world = world
        self.request = tok.IssueToken(authorization_details=[DETAIL], audience=AUDIENCE)
        self.granted: list[str] = []

    async def __call__(self, i: int) -> None:
        agents = self.world.agents
        # Straight to the bus: `Agent.token` would answer repeats from its cache.
        issued = await agents[i % len(agents)].bus.request(sub.TOKEN_ISSUE, self.world.tenant, self.request)
        self.granted.append(issued.jti)

    async def all_recorded(self) -> bool:
        """Every token handed out in this run has its committed row (asked after the reply)."""
        found = await self.world.db.fetchval("SELECT count(*) FROM token.tokens WHERE jti = ANY($1::text[])",
                                             self.granted)
        return int(found) == len(self.granted)


async def _measured(bench: Bench, issuer: Issuer, run_load: Any) -> tuple[Run, dict[str, Any]]:
    """One run of the issue load, with what it cost each process, whether every grant was recorded,
    and what the audit log did meanwhile."""
    world = bench.world
    assert world is not None and bench.deployment is not None
    groups = bench.deployment.pids()
    issuer.granted.clear()
    logged0 = await world.audit_size()
    cpu0 = cpu.snapshot(groups, with_children=frozenset({"postgres"}))
    began = time.perf_counter()
    run: Run = await run_load()
    load_s = time.perf_counter() - began
    cpu1 = cpu.snapshot(groups, with_children=frozenset({"postgres"}))
    logged1 = await world.audit_size()
    unrelayed, unlogged = await world.backlog()
    catch_up = await world.settle(bench.plan.catch_up_timeout_s)
    ok = run.count - run.errors
    spent = cpu.delta(cpu0, cpu1)
    run.extra.update({
        "records_durable": await issuer.all_recorded(),
        "cpu_ms_per_op": {k: round(v * 1000 / ok, 3) for k, v in spent.items()} if spent and ok else None,
        "catch_up_s": catch_up,
    })
    audit = {"rate_per_s": (logged1 - logged0) / load_s if load_s > 0 else None, "p50_ms": None, "p99_ms": None,
             "appended_during_load": logged1 - logged0, "catch_up_s": catch_up,
             # Events of the tenant not in its log when the load stopped: still in an outbox (not
             # yet relayed to JetStream), or in the stream and not yet appended.
             "behind_at_end_of_load": {"in_outboxes": unrelayed, "in_stream": unlogged}}
    return run, audit


async def _closed(bench: Bench, call: Issuer, conc: int, name: str) -> tuple[Result, Result]:
    """`name` at `conc` in flight, and the audit log's appends during it."""
    world, dep, plan = bench.world, bench.deployment, bench.plan
    assert world is not None and dep is not None
    count = plan.issue_c1 if conc == 1 else plan.issue_c64
    echo_count = plan.echo_c1 if conc == 1 else plan.echo_c64
    runs: list[dict[str, Any]] = []
    floors: list[dict[str, Any]] = []
    audit_runs: list[dict[str, Any]] = []
    for i in range(plan.runs):
        floors.append((await nats_echo(world.nc, bench.echo_subject, count=echo_count, concurrency=conc)).figures())
        if conc == 1:
            # A durable grant cannot beat one request hop plus one fsync'd commit.
            commit = (await postgres(dep.database_url, count=max(50, echo_count // 4)))["pg_commit"]
            floors[-1]["pg_commit_p50_ms"] = commit.pct_ms(50)
            floors[-1]["durable_p50_ms"] = (floors[-1]["p50_ms"] or 0) + (commit.pct_ms(50) or 0)
        r, appended = await _measured(bench, call, lambda: closed_loop(call, count=count, concurrency=conc))
        runs.append(r.figures())
        audit_runs.append({**appended, "issue_rate_per_s": runs[-1]["rate_per_s"]})
        bench.say(f"  {name} run {i + 1}/{plan.runs}: {runs[-1]['rate_per_s']}/s, p50 {runs[-1]['p50_ms']} ms, "
                  f"p99 {runs[-1]['p99_ms']} ms (echo floor {floors[-1]['rate_per_s']}/s, "
                  f"p50 {floors[-1]['p50_ms']} ms)")
    extra: dict[str, Any] = {"concurrency": conc, "layout": dep.layout, "token_workers": dep.token_workers,
                             "records_durable": all(r["records_durable"] for r in runs)}
    profiler = Profiler.maybe(bench.profile_dir, dep, name)
    if profiler is not None:
        bench.say(f"  {name}: one more run under py-spy (not counted)")
        async with profiler.recording():
            await closed_loop(call, count=count, concurrency=conc)
        await world.settle(plan.catch_up_timeout_s)
        extra["profile"] = profiler.summary()
    issue = Result(runs, f"raw nats-py request-reply echo, {conc} in flight, {bench.echo_placement}", floors, extra)
    audit = Result(audit_runs, f"the grant rate of the same {name} run: the rate the audit log must keep up with",
                   [{"rate_per_s": r["rate_per_s"], "p50_ms": None, "p99_ms": None} for r in runs],
                   {"how": f"entries appended to the tenant's log per second while {name} ran; "
                           "catch_up_s: how long after the load the log held every event"})
    return issue, audit


async def _open(bench: Bench, call: Issuer) -> Result:
    world, dep, plan = bench.world, bench.deployment, bench.plan
    assert world is not None and dep is not None
    payload = b"x" * 768

    async def echo_call(_: int) -> None:
        await world.nc.request(bench.echo_subject, payload, timeout=5.0)

    runs, floors = [], []
    for i in range(plan.runs):
        floors.append((await open_loop(echo_call, count=plan.issue_open, rate_per_s=OPEN_RATE)).figures())
        r, _ = await _measured(bench, call, lambda: open_loop(call, count=plan.issue_open, rate_per_s=OPEN_RATE))
        runs.append(r.figures())
        bench.say(f"  issue_open_1000 run {i + 1}/{plan.runs}: p50 {runs[-1]['p50_ms']} ms, p99 {runs[-1]['p99_ms']} ms,"
                  f" {runs[-1]['errors']} errors (echo floor p99 {floors[-1]['p99_ms']} ms)")
    return Result(runs, f"raw nats-py echo under the same open loop (1,000/s offered), {bench.echo_placement}",
                  floors, {"offered_rate_per_s": OPEN_RATE, "layout": dep.layout, "token_workers": dep.token_workers,
                           "records_durable": all(r["records_durable"] for r in runs),
                           "errors_are": "requests not answered within 5 s (timeouts), counted, never timed"})


async def run(bench: Bench, names: list[str]) -> dict[str, Result]:
    world, plan = bench.world, bench.plan
    assert world is not None
    call = Issuer(world)
    warm = max(plan.warmup, len(world.agents))
    bench.say(f"issue: warming up ({warm} grants, every agent at least once)")
    await closed_loop(call, count=warm, concurrency=64)
    await world.settle(plan.catch_up_timeout_s)
    results: dict[str, Result] = {}
    if "issue_c1" in names:
        results["issue_c1"], _ = await _closed(bench, call, 1, "issue_c1")
    if "issue_c64" in names or "audit_append" in names:
        results["issue_c64"], results["audit_append"] = await _closed(bench, call, 64, "issue_c64")
    if "issue_open_1000" in names:
        results["issue_open_1000"] = await _open(bench, call)
    return {k: v for k, v in results.items() if k in names}
