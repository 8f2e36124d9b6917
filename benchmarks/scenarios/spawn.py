"""`spawn`: an in-process SDK call sequence from "new agent" to "DPoP-bound token in hand".

One operation: the agent runtime makes its key (`AgentKey.generate`), the orchestrator spawns it
(`Orchestrator.spawn`: registration checks the proof of possession, stores the agent, signs its
X.509-SVID, emits `agent.registered`), and the new agent asks its first token (`Agent.token`:
the token worker meets an agent it may not have heard of yet, and asks registration). One at a
time (latency is the figure). The SDK objects use the bench's open NATS connection; opening a
connection per agent would add a TCP and NATS handshake to every spawn.

Floor, built from primitives measured beside each run: two raw NATS echo round trips at 1 in
flight (spawn, token) plus the cryptography the flow cannot skip: 1 Ed25519 key generation,
8 Ed25519 signatures (proof of possession, spawn request, agent.registered, spawn reply, token
request, JWT, token.issued, token reply), 5 Ed25519 verifications (spawn request, proof, token
request, the two replies) and 1 ES256 signature (the SVID).
"""

from __future__ import annotations

import time
from typing import Any

from agentid.keys import AgentKey
from benchmarks.floor import crypto, nats_echo
from benchmarks.load import closed_loop
from benchmarks.scenarios import Bench, Result
from benchmarks.stats import percentile
from benchmarks.world import AUDIENCE, DETAIL, SPAWN_FIELDS

SIGNS, VERIFIES = 8, 5


def floor_ms(echo_p50_ms: float, rates: dict[str, float]) -> float:
    crypto_s = (1 / rates["ed25519_keygen"] + SIGNS / rates["ed25519_sign"] + VERIFIES / rates["ed25519_verify"]
                + 1 / rates["es256_sign"])
    return 2 * echo_p50_ms + crypto_s * 1000


async def run(bench: Bench, names: list[str]) -> dict[str, Result]:
    world, plan = bench.world, bench.plan
    assert world is not None

    parts: dict[str, list[float]] = {"spawn": [], "first_token": []}

    async def call(_: int) -> None:
        key = AgentKey.generate()
        began = time.perf_counter()
        identity = await world.orchestrator.spawn(key, **SPAWN_FIELDS)
        spawned = time.perf_counter()
        await world.agent(identity, key).token([DETAIL], AUDIENCE)
        parts["spawn"].append(spawned - began)
        parts["first_token"].append(time.perf_counter() - spawned)

    bench.say(f"spawn: warming up, then {plan.runs} runs of {plan.spawn} spawns, one at a time")
    await closed_loop(call, count=max(5, plan.spawn // 5), concurrency=1)
    await world.settle(plan.catch_up_timeout_s)
    runs, floors = [], []
    for i in range(plan.runs):
        echo = await nats_echo(world.nc, bench.echo_subject, count=plan.echo_c1, concurrency=1)
        rates = {k: r.rate_per_s or 0.0 for k, r in crypto(plan.crypto // 3).items()}
        echo_p50 = echo.pct_ms(50) or 0.0
        ms = floor_ms(echo_p50, rates)
        floors.append({"rate_per_s": 1000 / ms, "p50_ms": ms, "p99_ms": None, "echo_p50_ms": echo_p50,
                       "crypto_ms": ms - 2 * echo_p50})
        for samples in parts.values():
            samples.clear()
        r = await closed_loop(call, count=plan.spawn, concurrency=1)
        r.extra["catch_up_s"] = await world.settle(plan.catch_up_timeout_s)
        # Which half of the operation the time went to: the spawn request, or the first token.
        r.extra.update({f"{k}_p50_ms": percentile(v, 50) * 1000 for k, v in parts.items() if v})
        runs.append(r.figures())
        bench.say(f"  spawn run {i + 1}/{plan.runs}: p50 {runs[-1]['p50_ms']} ms, p99 {runs[-1]['p99_ms']} ms "
                  f"(floor {ms:.2f} ms)")
    extra: dict[str, Any] = {"concurrency": 1, "connection": "the SDK objects share one open NATS connection"}
    return {"spawn": Result(runs, "2 raw NATS echo round trips (c1) + 1 Ed25519 keygen, 8 Ed25519 signatures, "
                                  "5 Ed25519 verifications, 1 ES256 signature", floors, extra)}
