"""An audit worker killed mid-stream loses nothing and logs nothing twice.

The audit worker runs as a real process (`agentid worker audit`) against its own database and
subject prefix, with a witness key. Events signed with the registration service's key are
published to the stream; the worker is killed (SIGKILL while it works, or by a failpoint right
after a commit and before its acknowledgements), more events arrive while it is down, and a new
worker takes over. Afterwards each tenant's log holds exactly the published events, in publish
order, each tied to its message by its digest, and the whole log (roots, signatures, witness
cosignatures, consistency) verifies.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import json
import os
import secrets
import sys
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path

import asyncpg
import msgspec
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519

from agentid.audit_log import (
    FORMAT,
    CheckpointLine,
    EntryLine,
    LogExport,
    LogLine,
    verify_log,
)
from contracts import audit as au
from contracts import headers as H
from contracts import registration as reg
from contracts import subjects as sub
from services.audit.consumer import DURABLE
from services.audit.signing import log_key
from shared import merkle
from shared.bus import Bus
from shared.bus.client import stream_name
from shared.bus.signing import sign, signing_input
from shared.config import Settings
from shared.errors import NotFound, Unavailable
from shared.keyring import Keyring
from shared.signed_note import CosignatureSigner
from tests.helpers import eventually, scratch_database

pytestmark = pytest.mark.integration

TENANTS = ("crasha", "crashb")


class Iso:
    def __init__(self, settings: Settings, keyring: Keyring, bus: Bus, db: asyncpg.Pool, witness: Path) -> None:
        self.settings, self.keyring, self.bus, self.db, self.witness = settings, keyring, bus, db, witness
        self.procs: list[asyncio.subprocess.Process] = []
        self.published: dict[str, list[tuple[str, bytes, dict[str, str]]]] = {t: [] for t in TENANTS}

    async def start(self, failpoints: str = "") -> asyncio.subprocess.Process:
        s = self.settings
        env = {k: v for k, v in os.environ.items() if not k.startswith("AGENTID_")}
        env.update({
            "AGENTID_NATS_URL": s.nats_url or "", "AGENTID_DATABASE_URL": s.database_url or "",
            "AGENTID_NATS_PREFIX": s.nats_prefix, "AGENTID_DATA_DIR": str(s.data_dir), "AGENTID_ACK_WAIT_S": "2",
            "AGENTID_PUBLIC_URL": "https://audit.example", "AGENTID_AUDIT_WITNESS_KEY": str(self.witness),
            "AGENTID_AUDIT_WITNESS_NAME": "witness.example", "AGENTID_AUDIT_CHECKPOINT_EVERY": "64",
            "AGENTID_AUDIT_CHECKPOINT_INTERVAL_S": "0.2", "AGENTID_FAILPOINTS": failpoints,
            "OTEL_SDK_DISABLED": "true"})
        log = open(s.data_dir / f"audit-{len(self.procs)}.log", "wb")
        proc = await asyncio.create_subprocess_exec(sys.executable, "-m", "agentid.cli", "worker", "audit",
                                                    env=env, stdout=log, stderr=log)
        self.procs.append(proc)

        async def answering() -> bool:
            try:
                await self.bus.request(sub.AUDIT_CHECKPOINT, "probe", au.GetCheckpoint(), timeout=0.5)
            except NotFound:
                return True
            except Unavailable:
                return False
            return True

        await eventually(answering, timeout=30)
        return proc

    async def publish(self, count: int) -> None:
        """`count` events per tenant, signed by the registration service, interleaved."""
        signer = self.keyring.signer("service", "registration")
        for _ in range(count):
            for tenant in TENANTS:
                n = len(self.published[tenant])
                subject = sub.TENANT_CREATED.subject(tenant, self.settings.nats_prefix)
                payload = msgspec.json.encode(reg.TenantCreated(tenant=tenant, trust_domain=f"d{n}.example",
                                                                at=datetime.now(UTC)))
                headers = sign(signer, subject, payload)
                await self.bus.js.publish(subject, payload, headers=headers)
                self.published[tenant].append((subject, payload, headers))

    async def logged(self) -> int:
        return int(await self.db.fetchval("SELECT count(*) FROM audit.entries"))

    async def settled(self) -> bool:
        total = sum(len(v) for v in self.published.values())
        if await self.logged() != total:
            return False
        unsigned = await self.db.fetchval("SELECT count(*) FROM audit.logs WHERE size <> checkpoint_size")
        info = await self.bus.js.consumer_info(stream_name(self.settings.nats_prefix), DURABLE)
        return unsigned == 0 and info.num_pending == 0 and info.num_ack_pending == 0


@pytest.fixture
async def iso(servers: tuple[str, str], tmp_path: Path) -> AsyncIterator[Iso]:
    nats_url, admin_url = servers
    async with scratch_database(admin_url, "agentid_audit_") as database_url:
        settings = Settings(nats_url=nats_url, database_url=database_url,
                            data_dir=tmp_path, nats_prefix=f"agentid_a{secrets.token_hex(4)}")
        keyring = Keyring.generate()
        keyring.save(settings.keyring_path)
        witness = tmp_path / "witness.pem"
        witness.write_bytes(ed25519.Ed25519PrivateKey.generate().private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()))
        bus = await Bus.connect(nats_url, name="audit-crash-operator", signer=keyring.signer("operator", "admin"),
                                registry=keyring.registry(), root=settings.nats_prefix)
        db = await asyncpg.create_pool(settings.database_url, min_size=1, max_size=2)
        it = Iso(settings, keyring, bus, db, witness)
        try:
            yield it
        finally:
            for proc in it.procs:
                if proc.returncode is None:
                    proc.kill()
                    await proc.wait()
            await db.close()
            for stream in (stream_name(settings.nats_prefix), f"KV_{settings.nats_prefix}_replay"):
                try:
                    await bus.js.delete_stream(stream)
                except Exception:
                    pass
            await bus.drain()


def _b64(raw: bytes) -> str:
    return base64.b64encode(bytes(raw)).decode()


async def _check_logs(iso: Iso) -> None:
    witness_key = CosignatureSigner("witness.example", serialization.load_pem_private_key(
        iso.witness.read_bytes(), None)).verifier_key_string()  # type: ignore[arg-type]
    for tenant in TENANTS:
        rows = await iso.db.fetch("SELECT seq, leaf FROM audit.entries WHERE log = $1 ORDER BY seq", tenant)
        leaves = [json.loads(bytes(r["leaf"])) for r in rows]
        published = iso.published[tenant]
        # Exactly the published events, once each, each tied to its signed message by its digest.
        # (Not necessarily in publish order: what the dead worker held is redelivered after what came next.)
        assert [r["seq"] for r in rows] == list(range(len(published)))
        by_id = {h[H.MSG_ID]: (subject, payload, h) for subject, payload, h in published}
        assert sorted(leaf["msg_id"] for leaf in leaves) == sorted(by_id)
        for leaf in leaves:
            subject, payload, h = by_id[leaf["msg_id"]]
            signed = signing_input(subject, h[H.SENDER], h[H.KEY_ID], h[H.MSG_ID], int(h[H.TIMESTAMP]), payload)
            assert leaf["event_digest"] == "sha256:" + hashlib.sha256(signed).hexdigest()
            assert leaf["status"] == "verified"
        head = await iso.db.fetchrow("SELECT * FROM audit.logs WHERE log = $1", tenant)
        root = merkle.MemoryTree.from_leaves([bytes(r["leaf"]) for r in rows]).root()
        assert bytes(head["root"]) == root and head["size"] == len(published)
        assert head["origin"] == f"audit.example/agentid/{tenant}"
        checkpoints = await iso.db.fetch("SELECT * FROM audit.checkpoints WHERE log = $1 ORDER BY size", tenant)
        assert checkpoints[-1]["size"] == len(published) and bytes(checkpoints[-1]["root"]) == root
        export = LogExport(LogLine(format=FORMAT, tenant=tenant, origin=head["origin"],
                                   log_public_key=log_key(head["origin"], head["public_key"])))
        export.entries = [EntryLine(seq=r["seq"], leaf=bytes(r["leaf"]).decode(),
                                    leaf_hash=_b64(merkle.leaf_hash(bytes(r["leaf"])))) for r in rows]
        export.checkpoints = [CheckpointLine(size=c["size"], root_hash=_b64(c["root"]), note=c["note"])
                              for c in checkpoints]
        report = verify_log(export, log_key=export.header.log_public_key, witness_keys=[witness_key])
        assert report.ok and report.checkpoints_verified == len(checkpoints), report.problems


@pytest.mark.parametrize("how", ["sigkill", "after_commit"])
async def test_an_audit_worker_killed_mid_stream_loses_and_duplicates_nothing(iso: Iso, how: str) -> None:
    if how == "sigkill":
        doomed = await iso.start()
        await iso.publish(300)

        async def working() -> bool:
            return await iso.logged() >= 100

        await eventually(working, timeout=30)
        doomed.kill()  # SIGKILL: no drain, no flush, acknowledgements in flight are lost
        assert await doomed.wait() == -9
        assert await iso.logged() < 600  # it died mid-stream
    else:
        await iso.start()  # creates the stream
        iso.procs[-1].terminate()
        assert await iso.procs[-1].wait() == 0
        doomed = await iso.start(failpoints="after_commit")
        await iso.publish(150)
        assert await asyncio.wait_for(doomed.wait(), 30) == 137  # died right after its first commit
        assert 0 < await iso.logged() < 300
    await iso.publish(50)  # more events arrive while no worker runs
    await iso.start()
    await eventually(iso.settled, timeout=60)
    await _check_logs(iso)
