"""The sender directory: each worker's own, event-fed copy of the orchestrators and agents.

Registration is the authority on who may send; every other worker keeps a `senders` table in its
own schema, filled from `orchestrator.added`, `agent.registered` and `agent.exited`, and
authenticates runtime senders from it. A sender that calls before its registration event has
arrived is fetched from registration once (`registration.lookup_sender`); a sender is inactive
here the moment its exit event is applied.
"""

from __future__ import annotations

import time
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import asyncpg
import msgspec

from contracts import registration as reg
from contracts import subjects as sub
from shared.bus.registry import SenderKey
from shared.errors import NotFound
from shared.keys import PublicKey

if TYPE_CHECKING:
    from shared.worker import Context, Subscription, Worker


MISS_TTL_S = 2.0


class SenderDirectory:
    def __init__(self, worker: Worker) -> None:
        self._worker = worker
        self._misses: dict[tuple[str, str], float] = {}

    @property
    def _table(self) -> str:
        return f'"{self._worker.schema}".senders'

    def subscription(self) -> Subscription:
        from shared.worker import Subscription

        return Subscription(f"{self._worker.name}-senders", {
            sub.ORCHESTRATOR_ADDED: self.on_orchestrator_added,
            sub.AGENT_REGISTERED: self.on_agent_registered,
            sub.AGENT_EXITED: self.on_agent_exited,
            sub.ORCHESTRATOR_REVOKED: self.on_orchestrator_revoked,
        })

    async def on_orchestrator_added(self, event: reg.OrchestratorAdded, ctx: Context) -> None:
        o = event.orchestrator
        async with self._worker.unit_of_work(ctx) as uow:
            await uow.conn.execute(
                f"INSERT INTO {self._table}(sender, key_id, kind, subject_id, tenant, public_jwk, active)"
                " VALUES ($1, $2, 'orchestrator', $3, $4, $5, $6) ON CONFLICT (sender, key_id) DO NOTHING",
                o.spiffe_id, o.key_id, o.orchestrator_id, o.tenant, o.public_jwk, o.status == "active")

    async def on_agent_registered(self, event: reg.AgentRegistered, ctx: Context) -> None:
        a = event.agent
        attributes = agent_attributes(a)
        async with self._worker.unit_of_work(ctx) as uow:
            await uow.conn.execute(
                f"INSERT INTO {self._table}(sender, key_id, kind, subject_id, tenant, orchestrator_id,"
                " public_jwk, active, expires_at, attributes) VALUES ($1, $2, 'agent', $3, $4, $5, $6, true, $7, $8)"
                " ON CONFLICT (sender, key_id) DO NOTHING",
                a.spiffe_id, a.key_id, a.agent_id, a.tenant, a.orchestrator_id, a.public_jwk, a.expires_at,
                attributes)

    async def on_agent_exited(self, event: reg.AgentExited, ctx: Context) -> None:
        async with self._worker.unit_of_work(ctx) as uow:
            await uow.conn.execute(f"UPDATE {self._table} SET active = false WHERE subject_id = $1", event.agent_id)
            await uow.conn.execute(f'INSERT INTO "{self._worker.schema}".senders_ended(subject_id) VALUES ($1)'
                                   " ON CONFLICT DO NOTHING", event.agent_id)

    async def on_orchestrator_revoked(self, event: reg.OrchestratorRevoked, ctx: Context) -> None:
        async with self._worker.unit_of_work(ctx) as uow:
            await uow.conn.execute(f"UPDATE {self._table} SET active = false WHERE subject_id = $1 OR orchestrator_id = $1",
                                   event.orchestrator_id)
            await uow.conn.execute(f'INSERT INTO "{self._worker.schema}".senders_ended(subject_id) VALUES ($1)'
                                   " ON CONFLICT DO NOTHING", event.orchestrator_id)

    async def lookup(self, sender: str, key_id: str, tenant: str | None = None) -> SenderKey | None:
        row = await self._worker.pool.fetchrow(
            f"SELECT * FROM {self._table} WHERE sender = $1 AND key_id = $2", sender, key_id)
        if row is None and tenant is not None:
            row = await self._fetch(sender, key_id, tenant)
        return None if row is None else to_sender_key(row)

    async def ensure_agent(self, tenant: str, agent_id: str) -> bool:
        """Make sure an agent named by id (an actor, a delegate) is in the directory, fetching it from
        registration if its registration event has not arrived yet. False when it does not exist."""
        if await self.get(self._worker.pool, agent_id) is not None:
            return True
        try:
            agent = await self._worker.bus.request(sub.GET_AGENT, tenant, reg.GetAgent(agent_id=agent_id), timeout=2.0)
        except NotFound:
            return False
        return await self._fetch(agent.spiffe_id, agent.key_id, tenant) is not None

    async def _fetch(self, sender: str, key_id: str, tenant: str) -> asyncpg.Record | None:
        """Ask registration about a sender whose registration event has not reached us yet (a
        sender that calls this worker right after its spawn). Misses are remembered briefly so
        a flood of unknown senders does not become a flood of lookups."""
        now = time.monotonic()
        if self._misses.get((sender, key_id), 0) > now:
            return None
        try:
            rec = await self._worker.bus.request(sub.LOOKUP_SENDER, tenant,
                                                 reg.LookupSender(sender=sender, key_id=key_id), timeout=2.0)
        except NotFound:
            if len(self._misses) > 10_000:
                self._misses.clear()
            self._misses[(sender, key_id)] = now + MISS_TTL_S
            return None
        return await self._worker.pool.fetchrow(
            f"INSERT INTO {self._table}(sender, key_id, kind, subject_id, tenant, orchestrator_id, public_jwk,"
            " active, expires_at, attributes) VALUES ($1, $2, $3, $4, $5, $6, $7,"
            f' $8 AND NOT EXISTS (SELECT 1 FROM "{self._worker.schema}".senders_ended WHERE subject_id = $4), $9, $10)'
            " ON CONFLICT (sender, key_id) DO UPDATE SET sender = EXCLUDED.sender RETURNING *",
            rec.sender, rec.key_id, rec.kind, rec.subject_id, rec.tenant, rec.orchestrator_id, rec.public_jwk,
            rec.active, rec.expires_at, rec.attributes)

    async def get(self, conn: asyncpg.Connection | asyncpg.Pool, subject_id: str) -> asyncpg.Record | None:
        return await conn.fetchrow(f"SELECT * FROM {self._table} WHERE subject_id = $1", subject_id)


def agent_attributes(agent: reg.AgentIdentity) -> dict[str, Any]:
    """What workers may need to know of an agent besides its key (policy reads these)."""
    return {"tier": agent.tier, "data_class": agent.data_class, "purpose": agent.purpose, "did": agent.did,
            "model": msgspec.to_builtins(agent.model), "tools": [t.name for t in agent.tools],
            "parent_agent_id": agent.parent_agent_id}


def to_sender_key(row: asyncpg.Record) -> SenderKey:
    expires = row["expires_at"]
    return SenderKey(
        sender=row["sender"], kind=row["kind"], key=PublicKey.from_jwk(row["public_jwk"]),
        subject_id=row["subject_id"], tenant=row["tenant"], orchestrator_id=row["orchestrator_id"],
        active=bool(row["active"]) and (expires is None or expires > datetime.now(UTC)))


def attributes(row: asyncpg.Record) -> dict[str, Any]:
    return msgspec.convert(row["attributes"], dict[str, Any])
