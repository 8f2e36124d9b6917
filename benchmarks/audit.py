"""Audit log measurements: append rate (the log alone, and end to end through NATS) and proof latency
at large sizes. `python -m benchmarks.audit [--size 1000000]`, against embedded servers.

The proof measurement bulk-loads a log of `size` leaves (its nodes computed in memory and copied in),
then times inclusion and consistency proofs as the worker makes them: one query for all nodes.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import statistics
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

import asyncpg
import msgspec

from contracts import registration as reg
from contracts import subjects as sub
from services.audit import store
from services.audit.describe import Facts
from services.audit.leaf import Observed
from services.audit.log import AuditLog
from services.audit.signing import LogKeys
from shared import merkle
from shared.bus.signing import sign
from shared.config import Settings
from shared.db import migrate


def _observed(log: str, i: int) -> Observed:
    return Observed(subject=f"agentid.v1.{log}.evt.tenant.created", tenant=log, event="tenant.created",
                    msg_id=f"{i:026d}", time_ms=1_700_000_000_000 + i,
                    actor={"id": "spiffe://agentid.system/service/registration", "kind": "service",
                           "name": "registration", "key_id": "k" * 43},
                    verified=True, reasons=(), trace_id=os.urandom(16).hex(), event_digest="sha256:" + "ab" * 32,
                    dedup_key=os.urandom(32), facts=Facts(subject={"type": "tenant", "id": log},
                                                          details={"trust_domain": f"{log}.example"}))


async def append_rate(pool: asyncpg.Pool, kek: bytes, *, entries: int, batch: int, logs: int) -> float:
    """Entries per second through `AuditLog.append` (one transaction per batch and log)."""
    audit = AuditLog(pool, LogKeys(kek, "https://bench.example"), checkpoint_every=1024)
    names = [f"bench{os.urandom(4).hex()}" for _ in range(logs)]
    per_log = entries // logs

    async def fill(name: str) -> None:
        for start in range(0, per_log, batch):
            await audit.append(name, [_observed(name, i) for i in range(start, min(start + batch, per_log))])

    began = time.perf_counter()
    await asyncio.gather(*(fill(n) for n in names))
    return per_log * logs / (time.perf_counter() - began)


async def proof_latency(pool: asyncpg.Pool, *, size: int, samples: int = 500) -> dict[str, float]:
    """Milliseconds per inclusion and consistency proof (p50, p99) in a log of `size` leaves."""
    log = f"bulk{os.urandom(4).hex()}"
    tree = merkle.MemoryTree()
    chunk = 1 << 16
    for start in range(0, size, chunk):
        tree.extend_hashes([merkle.leaf_hash(b"leaf %d" % i) for i in range(start, min(start + chunk, size))])
    records = ((log, level, idx, tree.get(level, idx)) for level in range(64)
               for idx in range(size >> level) if (idx + 1) << level <= size)
    async with pool.acquire() as conn:
        await conn.copy_records_to_table("nodes", schema_name="audit", records=records,
                                         columns=["log", "level", "idx", "hash"])
    reader = store.node_reader(pool, log)
    rng = random.Random(size)
    inclusion, consistency = [], []
    for _ in range(samples):
        index = rng.randrange(size)
        began = time.perf_counter()
        await merkle.inclusion_proof_async(index, size, reader)
        inclusion.append((time.perf_counter() - began) * 1000)
        first = rng.randrange(1, size)
        began = time.perf_counter()
        await merkle.consistency_proof_async(first, size, reader)
        consistency.append((time.perf_counter() - began) * 1000)
    await pool.execute("DELETE FROM audit.nodes WHERE log = $1", log)

    def pct(values: list[float], q: float) -> float:
        return statistics.quantiles(values, n=100)[int(q) - 1]

    return {"inclusion_p50_ms": statistics.median(inclusion), "inclusion_p99_ms": pct(inclusion, 99),
            "consistency_p50_ms": statistics.median(consistency), "consistency_p99_ms": pct(consistency, 99)}


async def end_to_end_rate(settings: Settings, *, events: int) -> float:
    """Signed events per second from JetStream into the log, with only the audit worker running."""
    from services.stack import Stack
    from shared.bus import Bus

    async with Stack(settings, workers=["audit"], durable=False, write_files=False) as stack:
        bus = await Bus.connect(stack.nats_url, name="bench", signer=None, registry=stack.keyring.registry(),
                                root=settings.nats_prefix)
        signer = stack.keyring.signer("service", "registration")
        pool = await asyncpg.create_pool(stack.database_url, min_size=1, max_size=2)
        try:
            subject = sub.TENANT_CREATED.subject("bench", settings.nats_prefix)
            began = time.perf_counter()
            acks = []
            for i in range(events):
                payload = msgspec.json.encode(reg.TenantCreated(tenant="bench", trust_domain=f"d{i}.example",
                                                                at=datetime.now(UTC)))
                acks.append(bus.js.publish(subject, payload, headers=sign(signer, subject, payload)))
                if len(acks) >= 500:
                    await asyncio.gather(*acks)
                    acks = []
            await asyncio.gather(*acks)
            while await pool.fetchval("SELECT count(*) FROM audit.entries") < events:
                await asyncio.sleep(0.05)
            return events / (time.perf_counter() - began)
        finally:
            await pool.close()
            await bus.drain()


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--size", type=int, action="append", help="proof latency at this log size (repeatable)")
    parser.add_argument("--entries", type=int, default=20_000)
    parser.add_argument("--events", type=int, default=10_000)
    args = parser.parse_args()
    from shared.embedded import EmbeddedPostgres
    from shared.keyring import Keyring

    with tempfile.TemporaryDirectory(prefix="agentid-bench-") as tmp:
        pg = EmbeddedPostgres(Path(tmp) / "pg", durable=False)
        await pg.start()
        try:
            pool = await asyncpg.create_pool(pg.url, min_size=2, max_size=10)
            await migrate(pool, "audit", Path(store.__file__).parent / "migrations")
            kek = Keyring.generate().kek or b""
            for logs, batch in ((1, 256), (8, 256), (1, 1)):
                rate = await append_rate(pool, kek, entries=args.entries if batch > 1 else 2000, batch=batch, logs=logs)
                print(f"append, {logs} log(s), batches of {batch}: {rate:,.0f} entries/s")
            for size in args.size or [100_000, 1_000_000]:
                print(f"proofs at {size:,} leaves: {await proof_latency(pool, size=size)}")
            await pool.close()
        finally:
            await pg.stop()
        settings = Settings(data_dir=Path(tmp) / "stack", nats_prefix="bench", replay_backend="memory")
        print(f"end to end (publish -> logged), {args.events:,} events: "
              f"{await end_to_end_rate(settings, events=args.events):,.0f} events/s")


if __name__ == "__main__":
    asyncio.run(main())
