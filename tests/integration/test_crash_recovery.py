"""A worker process that dies at the worst moments loses nothing and duplicates nothing.

The registration worker runs as a real separate process (`agentid worker registration`) against
its own database and subject prefix; named failpoints make it die like `kill -9` right after a
commit (before its outbox is relayed) or right before acknowledging an event.
"""

from __future__ import annotations

import asyncio
import os
import secrets
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import asyncpg
import msgspec
import pytest

from agentid.deployment import Deployment
from agentid.keys import AgentKey
from agentid.orchestrator import Orchestrator
from contracts import registration as reg
from contracts import subjects as sub
from shared.bus import Bus
from shared.bus.client import stream_name
from shared.config import Settings
from shared.errors import NotFound, Unavailable
from shared.keyring import Keyring
from shared.keys import PrivateKey
from tests.helpers import DEFAULT_AUTHORITY, SPAWN_FIELDS, eventually, scratch_database

pytestmark = pytest.mark.integration


class Isolated:
    """A private database, subject prefix and keyring for workers run as subprocesses."""

    def __init__(self, settings: Settings, keyring: Keyring, bus: Bus, db: asyncpg.Pool) -> None:
        self.settings, self.keyring, self.bus, self.db = settings, keyring, bus, db
        self.procs: list[asyncio.subprocess.Process] = []

    def env(self, failpoints: str = "") -> dict[str, str]:
        s = self.settings
        return {**os.environ, "AGENTID_NATS_URL": s.nats_url or "", "AGENTID_DATABASE_URL": s.database_url or "",
                "AGENTID_NATS_PREFIX": s.nats_prefix, "AGENTID_DATA_DIR": str(s.data_dir),
                "AGENTID_ACK_WAIT_S": "1", "AGENTID_OUTBOX_POLL_S": "0.2", "AGENTID_FAILPOINTS": failpoints,
                "OTEL_SDK_DISABLED": "true"}

    async def start_worker(self, failpoints: str = "") -> asyncio.subprocess.Process:
        log = open(self.settings.data_dir / f"worker-{len(self.procs)}.log", "wb")
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "agentid.cli", "worker", "registration", env=self.env(failpoints),
            stdout=log, stderr=log)
        self.procs.append(proc)

        async def answering() -> bool:
            try:
                await self.bus.request(sub.GET_AGENT, "probe", reg.GetAgent(agent_id="agt_none"), timeout=0.5)
            except NotFound:
                return True
            except Unavailable:
                return False
            return False

        await eventually(answering, timeout=30)
        return proc

    async def stop_all(self) -> None:
        for proc in self.procs:
            if proc.returncode is None:
                proc.terminate()
                await proc.wait()


@pytest.fixture
async def isolated(servers: tuple[str, str], tmp_path: Path) -> AsyncIterator[Isolated]:
    nats_url, admin_url = servers
    async with scratch_database(admin_url, "agentid_crash_") as database_url:
        settings = Settings(nats_url=nats_url, database_url=database_url,
                            data_dir=tmp_path, nats_prefix=f"agentid_c{secrets.token_hex(4)}")
        keyring = Keyring.generate()
        keyring.save(settings.keyring_path)
        bus = await Bus.connect(nats_url, name="crash-operator", signer=keyring.signer("operator", "admin"),
                                registry=keyring.registry(), root=settings.nats_prefix)
        db = await asyncpg.create_pool(settings.database_url, min_size=1, max_size=2)
        iso = Isolated(settings, keyring, bus, db)
        try:
            yield iso
        finally:
            await iso.stop_all()
            await db.close()
            js = bus.nc.jetstream()
            for stream in (stream_name(settings.nats_prefix), f"KV_{settings.nats_prefix}_replay"):
                try:
                    await js.delete_stream(stream)
                except Exception:
                    pass
            await bus.drain()


async def _orchestrator(iso: Isolated, tenant: str) -> Orchestrator:
    await iso.bus.request(sub.CREATE_TENANT, tenant, reg.CreateTenant())
    key = PrivateKey.generate()
    record = await iso.bus.request(sub.ADD_ORCHESTRATOR, tenant, reg.AddOrchestrator(
        name="orch", public_jwk=key.public.jwk(), authority=DEFAULT_AUTHORITY))
    deployment = Deployment.from_json({"nats_url": iso.settings.nats_url, "nats_prefix": iso.settings.nats_prefix,
                                       "keyring": iso.keyring.public()})
    return await Orchestrator.connect(tenant=tenant, orchestrator_id=record.orchestrator_id,
                                      spiffe_id=record.spiffe_id, key=key, deployment=deployment)


async def _registered_events(iso: Isolated, tenant: str) -> int:
    js = iso.bus.nc.jetstream()
    subject = sub.AGENT_REGISTERED.subject(tenant, iso.settings.nats_prefix)
    info = await js.stream_info(stream_name(iso.settings.nats_prefix), subjects_filter=subject)
    return sum((info.state.subjects or {}).values())


async def _consumer_settled(iso: Isolated) -> bool:
    info = await iso.bus.nc.jetstream().consumer_info(stream_name(iso.settings.nats_prefix), "registration-spawn")
    return info.num_pending == 0 and info.num_ack_pending == 0


@pytest.mark.parametrize("failpoint", ["after_commit", "before_ack"])
async def test_worker_killed_mid_spawn_loses_and_duplicates_nothing(isolated: Isolated, failpoint: str) -> None:
    tenant = "crash"
    setup = await isolated.start_worker()
    orch = await _orchestrator(isolated, tenant)
    setup.terminate()
    assert await setup.wait() == 0  # SIGTERM: a clean drain

    doomed = await isolated.start_worker(failpoints=failpoint)
    request = orch.spawn_request(AgentKey.generate(), **SPAWN_FIELDS)
    await orch.bus.publish_event(sub.SPAWN_REQUESTED, tenant, request, msg_id=request.spawn_id)
    assert await asyncio.wait_for(doomed.wait(), 30) == 137  # died like kill -9, after its commit

    agents = "SELECT count(*) FROM registration.agents WHERE tenant = $1"
    assert await isolated.db.fetchval(agents, tenant) == 1
    if failpoint == "after_commit":
        # Committed but never relayed: the event waits in the outbox, not on the stream.
        assert await isolated.db.fetchval("SELECT count(*) FROM registration.outbox") == 1
        assert await _registered_events(isolated, tenant) == 0

    await isolated.start_worker()  # restart: relay what was left, take the redelivery

    async def relayed() -> bool:
        empty = await isolated.db.fetchval("SELECT count(*) FROM registration.outbox") == 0
        return empty and await _registered_events(isolated, tenant) >= 1 and await _consumer_settled(isolated)

    await eventually(relayed, timeout=30)
    assert await isolated.db.fetchval(agents, tenant) == 1
    assert await _registered_events(isolated, tenant) == 1
    js = isolated.bus.nc.jetstream()
    msg = await js.get_last_msg(stream_name(isolated.settings.nats_prefix),
                                sub.AGENT_REGISTERED.subject(tenant, isolated.settings.nats_prefix))
    assert msgspec.json.decode(msg.data, type=reg.AgentRegistered).spawn_id == request.spawn_id
    await orch.close()
