"""The floors: what the primitives underneath a scenario cost on this machine, in this run.

- crypto: Ed25519 and ES256 (P-256) sign and verify per second, `cryptography`, one core (CPU time);
- jwt: PyJWT encode and decode (with verification) of an access-token-shaped claim set, EdDSA;
- nats echo: raw nats-py request-reply to a responder that only echoes, at a given concurrency,
  with the responder placed like the worker it stands for (in this process, or in N processes
  sharing a queue group, like the token worker's replicas);
- the round trips under a grant: a JetStream KV create (the replay guard's), a Postgres `SELECT 1`
  and a durable one-row commit.

A scenario's figure divided by its floor says how much of the machine's budget our own code takes.
"""

from __future__ import annotations

import asyncio
import os
import sys
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import jwt
import nats
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, ed25519
from nats.aio.client import Client as NATS

from benchmarks.load import closed_loop, cpu_run
from benchmarks.stats import Run

PAYLOAD = os.urandom(768)  # about an issue request's body plus its envelope headers
_DATA = b"x" * 600           # about one signing input (a JWT's header.payload)


def crypto(count: int) -> dict[str, Run]:
    """Sign and verify rates for the two algorithms agentid uses, on one core."""
    ed = ed25519.Ed25519PrivateKey.generate()
    ed_pub, ed_sig = ed.public_key(), ed.sign(_DATA)
    p256 = ec.generate_private_key(ec.SECP256R1())
    ecdsa = ec.ECDSA(hashes.SHA256())
    p256_pub, p256_sig = p256.public_key(), p256.sign(_DATA, ecdsa)
    return {
        "ed25519_sign": cpu_run(lambda _: ed.sign(_DATA), count=count),
        "ed25519_verify": cpu_run(lambda _: ed_pub.verify(ed_sig, _DATA), count=count),
        "es256_sign": cpu_run(lambda _: p256.sign(_DATA, ecdsa), count=count),
        "es256_verify": cpu_run(lambda _: p256_pub.verify(p256_sig, _DATA, ecdsa), count=count),
        "ed25519_keygen": cpu_run(lambda _: ed25519.Ed25519PrivateKey.generate(), count=count),
    }


def pyjwt(count: int) -> dict[str, Run]:
    """PyJWT alone: what minting and checking a token costs without any of our checks."""
    key = ed25519.Ed25519PrivateKey.generate()
    now = int(time.time())
    claims: dict[str, Any] = {
        "iss": "https://agentid.example/tenants/bench", "sub": "spiffe://bench.example/agent/agt_" + "0" * 26,
        "aud": "https://ledger.example", "iat": now, "nbf": now, "exp": now + 300, "jti": "0" * 26,
        "authorization_details": [{"type": "ledger", "locations": ["https://ledger.example/accounts/42"],
                                   "actions": ["read"]}],
        "cnf": {"jkt": "A" * 43}, "tenant": "bench"}
    token = jwt.encode(claims, key, algorithm="EdDSA", headers={"typ": "at+jwt", "kid": "k"})
    public = key.public_key()
    return {
        "pyjwt_encode": cpu_run(lambda _: jwt.encode(claims, key, algorithm="EdDSA",
                                                     headers={"typ": "at+jwt", "kid": "k"}), count=count),
        "pyjwt_decode": cpu_run(lambda _: jwt.decode(token, public, algorithms=["EdDSA"],
                                                     audience="https://ledger.example"), count=count),
    }


def verifications(per_call: int, count: int) -> Run:
    """`count` calls of `per_call` raw Ed25519 verifications each: the floor of a check that has to
    verify that many signatures (rate per CPU second; latencies per call)."""
    key = ed25519.Ed25519PrivateKey.generate()
    public, sig = key.public_key(), key.sign(_DATA)

    def call(_: int) -> None:
        for _ in range(per_call):
            public.verify(sig, _DATA)

    return cpu_run(call, count=count)


# -- NATS echo ---------------------------------------------------------------------------------------
async def _serve_echo(nc: NATS, subject: str) -> Any:
    async def echo(msg: Any) -> None:
        await msg.respond(msg.data)

    sub = await nc.subscribe(subject, queue="echo", cb=echo)
    await nc.flush()
    return sub


@asynccontextmanager
async def echo_responders(url: str, subject: str, *, processes: int) -> AsyncIterator[None]:
    """Echo responders for `subject`: in this process (`processes` = 0) or in that many processes."""
    if processes == 0:
        nc = await nats.connect(url, name="bench-echo")
        try:
            await _serve_echo(nc, subject)
            yield
        finally:
            await nc.close()
        return
    procs = []
    try:
        for i in range(processes):
            procs.append(await asyncio.create_subprocess_exec(
                sys.executable, "-m", "benchmarks.floor", url, subject,
                stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.DEVNULL))
        for proc in procs:
            assert proc.stdout is not None
            line = await asyncio.wait_for(proc.stdout.readline(), 30)
            if line.strip() != b"ready":
                raise RuntimeError("an echo responder did not start")
        yield
    finally:
        for proc in procs:
            if proc.returncode is None:
                proc.terminate()
                await proc.wait()


async def nats_echo(nc: NATS, subject: str, *, count: int, concurrency: int) -> Run:
    """Raw request-reply through nats-server to the echo responders, `concurrency` in flight."""
    async def call(_: int) -> None:
        await nc.request(subject, PAYLOAD, timeout=5.0)

    return await closed_loop(call, count=count, concurrency=concurrency)


async def _responder_main(url: str, subject: str) -> None:
    nc = await nats.connect(url, name="bench-echo")
    await _serve_echo(nc, subject)
    print("ready", flush=True)
    await asyncio.Event().wait()  # until the bench terminates this process


if __name__ == "__main__":
    asyncio.run(_responder_main(sys.argv[1], sys.argv[2]))


# -- the round trips under a grant's latency ---------------------------------------------------------
async def postgres(database_url: str, *, count: int) -> dict[str, Run]:
    """One Postgres round trip (`SELECT 1`) and one durable commit (a one-row INSERT, fsync'd WAL),
    one at a time on a held connection: what every query and every grant's commit cost at least."""
    import asyncpg

    table = f"bench_commit_{os.urandom(4).hex()}"
    conn = await asyncpg.connect(database_url)
    try:
        await conn.execute(f"CREATE TABLE {table} (id bigint)")

        async def select(_: int) -> None:
            await conn.fetchval("SELECT 1")

        async def commit(i: int) -> None:
            await conn.execute(f"INSERT INTO {table} VALUES ($1)", i)  # autocommit: one transaction

        return {"pg_round_trip": await closed_loop(select, count=count, concurrency=1),
                "pg_commit": await closed_loop(commit, count=count, concurrency=1)}
    finally:
        await conn.execute(f"DROP TABLE IF EXISTS {table}")
        await conn.close()


async def nats_kv_create(nc: NATS, *, count: int) -> Run:
    """Creating a new key in a memory-backed JetStream KV bucket, one at a time: the replay
    guard's round trip."""
    from nats.js.api import KeyValueConfig, StorageType

    js = nc.jetstream()
    bucket = f"bench_kv_{os.urandom(4).hex()}"
    kv = await js.create_key_value(KeyValueConfig(bucket=bucket, ttl=120, storage=StorageType.MEMORY))
    prefix = os.urandom(6).hex()
    try:
        async def create(i: int) -> None:
            await kv.create(f"{prefix}{i}", b"")

        return await closed_loop(create, count=count, concurrency=1)
    finally:
        await js.delete_key_value(bucket)
