"""Inclusion-proof time in audit logs of 100,000 and 1,000,000 entries.

A log of that size is laid out in the deployment's Postgres the way the audit worker stores it
(`audit.nodes`: every complete subtree, one row per node; `services/audit/store.py`), its nodes
computed here and copied in. Entries and checkpoints are not loaded: a proof reads only nodes.
Each proof is made the way the worker makes one: `merkle.inclusion_proof_async` over
`store.node_reader(pool, log)` (one query for every node the proof needs), for a random leaf.
One at a time; floor = one raw Postgres round trip (`SELECT 1` on a held connection).

(`audit_append`, the append rate under the issue load, is measured with the issue scenarios.)
"""

from __future__ import annotations

import hashlib
import random
import secrets
import statistics
import time
from collections.abc import Awaitable, Callable, Iterator

import asyncpg

from benchmarks.load import closed_loop
from benchmarks.scenarios import Bench, Result
from services.audit import store
from shared import merkle
from shared.db import create_pool

SIZES = {"audit_proof_100k": 100_000, "audit_proof_1m": 1_000_000}


def _levels(size: int) -> list[list[bytes]]:
    """Every complete subtree's hash, level by level, for leaves "bench leaf <i>"."""
    level = [merkle.leaf_hash(b"bench leaf %d" % i) for i in range(size)]
    levels = [level]
    while len(level) > 1:
        level = [hashlib.sha256(b"\x01" + level[i] + level[i + 1]).digest() for i in range(0, len(level) - 1, 2)]
        levels.append(level)
    return levels


async def _load(pool: asyncpg.Pool, log: str, size: int) -> None:
    levels = _levels(size)

    def records() -> Iterator[tuple[str, int, int, bytes]]:
        for lv, hashes in enumerate(levels):
            for idx, value in enumerate(hashes):
                yield log, lv, idx, value

    async with pool.acquire() as conn:
        await conn.copy_records_to_table("nodes", schema_name="audit", records=records(),
                                         columns=["log", "level", "idx", "hash"])


def _prover(pool: asyncpg.Pool, log: str, size: int) -> Callable[[int], Awaitable[None]]:
    """An inclusion proof for a random leaf of the log, made as the worker makes one."""
    reader = store.node_reader(pool, log)
    rng = random.Random(size)

    async def proof(_: int) -> None:
        await merkle.inclusion_proof_async(rng.randrange(size), size, reader)

    return proof


async def prepare(bench: Bench, names: list[str]) -> dict[str, str]:
    """Lay out the logs (the runner starts this while the rest of the set-up goes on): name -> log."""
    dep = bench.deployment
    assert dep is not None
    logs: dict[str, str] = {}
    pool = await create_pool(dep.database_url, max_size=1)
    try:
        for name, size in SIZES.items():
            if name in names:
                began = time.perf_counter()
                logs[name] = f"bench-proofs-{secrets.token_hex(4)}"
                await _load(pool, logs[name], size)
                bench.say(f"audit: a log of {size:,} entries laid out in {time.perf_counter() - began:.1f} s")
        await pool.execute("ANALYZE audit.nodes")
    finally:
        await pool.close()
    return logs


async def run(bench: Bench, names: list[str]) -> dict[str, Result]:
    dep, plan = bench.deployment, bench.plan
    assert dep is not None
    logs = bench.prepared.get("audit") or await prepare(bench, names)
    pool = await create_pool(dep.database_url, max_size=2)
    out: dict[str, Result] = {}
    try:
        for name, log in logs.items():
            size = SIZES[name]
            proof = _prover(pool, log, size)

            async with pool.acquire() as conn:
                async def round_trip(_: int) -> None:
                    await conn.fetchval("SELECT 1")

                await closed_loop(proof, count=plan.audit_proofs, concurrency=1)  # warm the index pages
                runs, floors = [], []
                for _ in range(plan.runs):
                    floors.append((await closed_loop(round_trip, count=plan.audit_proofs, concurrency=1)).figures())
                    runs.append((await closed_loop(proof, count=plan.audit_proofs, concurrency=1)).figures())
            out[name] = Result(runs, "one raw Postgres round trip (SELECT 1 on a held connection)", floors,
                               {"entries": size, "how": "merkle.inclusion_proof_async over store.node_reader(pool)",
                                "concurrency": 1})
            bench.say(f"  {name}: p50 {statistics.median(r['p50_ms'] for r in runs)} ms "
                      f"(round trip {statistics.median(f['p50_ms'] for f in floors)} ms)")
    finally:
        if not dep.own_postgres:  # on someone else's Postgres, leave nothing behind
            for log in logs.values():
                await pool.execute("DELETE FROM audit.nodes WHERE log = $1", log)
        await pool.close()
    return out
