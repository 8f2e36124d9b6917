"""The tenant the scenarios run in: token rules, a Cedar policy, an orchestrator and many agents.

Every agent signs its own requests with its own key, as in production; their `Bus` objects share
one NATS connection, so a hundred agents cost the load generator one socket, not a hundred.
"""

from __future__ import annotations

import asyncio
import secrets
from dataclasses import dataclass, field
from typing import Any

import asyncpg
import nats
from nats.aio.client import Client as NATS

from agentid.agent import Agent
from agentid.deployment import Deployment as SdkDeployment
from agentid.keys import AgentKey
from agentid.orchestrator import Orchestrator
from benchmarks.deployment import Deployment
from contracts import registration as reg
from contracts import subjects as sub
from contracts import tokens as tok
from shared.bus import Bus, Signer
from shared.bus.client import stream_name
from shared.errors import Unavailable
from shared.keys import PrivateKey

AUDIENCE = "https://ledger.example"
LEDGER_TYPE = {
    "type": "object", "required": ["type", "locations", "actions"],
    "properties": {
        "type": {"const": "ledger"},
        "locations": {"type": "array", "items": {"type": "string", "pattern": "^https://ledger\\.example/"}},
        "actions": {"type": "array", "items": {"enum": ["read", "write", "pay"]}},
    },
}
# The bench measures how fast grants can go, so its tenant's rate limits are set far above what it
# offers (left at their defaults, they would cap one orchestrator's agents at 2,000 grants/s).
TOKEN_CONFIG = tok.TokenConfig(detail_types={"ledger": LEDGER_TYPE}, audiences=[AUDIENCE],
                               agent_tokens_per_s=100_000, orchestrator_tokens_per_s=1_000_000)
POLICY = """
@id("standard-agents-read-the-ledger")
permit(principal is Agent, action == Action::"read", resource)
when { resource.type == "ledger" && principal.tier == "standard" };
"""
DETAIL = {"type": "ledger", "locations": ["https://ledger.example/accounts/42"], "actions": ["read"]}
AUTHORITY = reg.Authority(tiers=["standard"], purposes=["benchmarking"], data_classes=["internal"],
                          max_lifetime_s=3600, max_live_agents=1_000_000, spawns_per_minute=1_000_000)
SPAWN_FIELDS: dict[str, Any] = {
    "purpose": "benchmarking", "tier": "standard", "data_class": "internal",
    "model": {"name": "bench-llm", "version": "1.0", "digest": "sha256:" + "00" * 32},
    "tools": [{"name": "ledger-reader", "version": "1.0"}], "controller": {"type": "service", "id": "bench"}}


@dataclass
class World:
    deployment: Deployment
    operator: Bus
    nc: NATS
    db: asyncpg.Pool
    tenant: str
    orchestrator: Orchestrator
    agents: list[Agent] = field(default_factory=list)

    @property
    def sdk(self) -> SdkDeployment:
        d = self.deployment
        return SdkDeployment.from_json({"nats_url": d.nats_url, "nats_prefix": d.root, "keyring": d.keyring.public()})

    @classmethod
    async def create(cls, deployment: Deployment) -> World:
        ring = deployment.keyring
        operator = await Bus.connect(deployment.nats_url, name="bench-operator", signer=ring.signer("operator", "admin"),
                                     registry=ring.registry(), root=deployment.root)
        nc = await nats.connect(deployment.nats_url, name="bench-agents", max_reconnect_attempts=-1)
        db = await asyncpg.create_pool(deployment.database_url, min_size=1, max_size=4)
        tenant = f"bench{secrets.token_hex(3)}"
        await operator.request(sub.CREATE_TENANT, tenant, reg.CreateTenant())
        await operator.request(sub.TOKEN_CONFIG_SET, tenant, tok.SetTokenConfig(config=TOKEN_CONFIG))
        await operator.request(sub.POLICY_SET, tenant, tok.SetPolicy(policies=POLICY))
        key = PrivateKey.generate()
        record = await operator.request(sub.ADD_ORCHESTRATOR, tenant, reg.AddOrchestrator(
            name="bench-orchestrator", public_jwk=key.public.jwk(), authority=AUTHORITY))
        world = cls(deployment, operator, nc, db, tenant, None)  # type: ignore[arg-type]
        world.orchestrator = Orchestrator(
            Bus(nc, signer=Signer(record.spiffe_id, key), registry=world.sdk.services(), root=deployment.root),
            tenant=tenant, orchestrator_id=record.orchestrator_id, spiffe_id=record.spiffe_id)
        return world

    def agent(self, identity: reg.AgentIdentity, key: AgentKey) -> Agent:
        """The SDK's agent session, on the shared connection (no renewal task)."""
        bus = Bus(self.nc, signer=Signer(identity.spiffe_id, key.private), registry=self.sdk.services(),
                  root=self.deployment.root)
        return Agent(bus, key, identity)

    async def spawn(self, n: int, *, concurrency: int = 4, attempts: int = 4) -> list[Agent]:
        """Spawn `n` more agents (a few at a time) and keep them in `agents`. Set-up, not a
        measurement: a spawn that times out on a busy machine is sent again (the same spawn id,
        so registration answers with the same agent rather than making a second one)."""
        slots = asyncio.Semaphore(concurrency)

        async def one() -> Agent:
            key = AgentKey.generate()
            request = self.orchestrator.spawn_request(key, **SPAWN_FIELDS)
            async with slots:
                for attempt in range(attempts):
                    try:
                        return self.agent(await self.orchestrator.submit(request), key)
                    except Unavailable:
                        if attempt == attempts - 1:
                            raise
            raise AssertionError("unreachable")

        spawned = list(await asyncio.gather(*(one() for _ in range(n))))
        self.agents += spawned
        return spawned

    async def close(self) -> None:
        await self.db.close()
        await self.nc.drain()
        await self.operator.drain()

    async def _outbox_tables(self) -> list[str]:
        rows = await self.db.fetch("SELECT table_schema FROM information_schema.tables WHERE table_name = 'outbox'")
        return [f'"{r["table_schema"]}".outbox' for r in rows]

    async def backlog(self) -> tuple[int, int]:
        """(events still in some worker's outbox, events in the stream not yet in the audit log)."""
        tables = await self._outbox_tables()
        pending = await self.db.fetchval("SELECT " + " + ".join(f"(SELECT count(*) FROM {t})" for t in tables)) if tables else 0
        info = await self.nc.jetstream().stream_info(stream_name(self.deployment.root),
                                                     subjects_filter=f"{self.deployment.root}.{self.tenant}.evt.>")
        streamed = sum((info.state.subjects or {}).values())
        logged = await self.db.fetchval("SELECT size FROM audit.logs WHERE log = $1", self.tenant) or 0
        return int(pending), max(0, streamed - int(logged))

    async def audit_size(self) -> int:
        return int(await self.db.fetchval("SELECT size FROM audit.logs WHERE log = $1", self.tenant) or 0)

    async def settle(self, timeout: float) -> float | None:
        """Wait until every event of the tenant is out of the outboxes and in the audit log, so one
        scenario's tail never runs into the next. Seconds waited, or None if it did not settle."""
        loop = asyncio.get_running_loop()
        began = loop.time()
        while True:
            pending, unlogged = await self.backlog()
            if pending == 0 and unlogged == 0:
                return loop.time() - began
            if loop.time() - began > timeout:
                return None
            await asyncio.sleep(0.05)
