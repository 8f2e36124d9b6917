"""Registration's SQL. Every function takes the connection of the caller's unit of work."""

from __future__ import annotations

from datetime import datetime
import asyncpg
import msgspec

from contracts.registration import (
    AgentIdentity, Authority, Controller, Model, OrchestratorRecord, TenantRecord, Tool,
)

S = "registration"


def _tenant(row: asyncpg.Record) -> TenantRecord:
    return TenantRecord(tenant=row["tenant"], trust_domain=row["trust_domain"], created_at=row["created_at"])


async def get_tenant(conn: asyncpg.Connection, tenant: str) -> TenantRecord | None:
    row = await conn.fetchrow(f"SELECT * FROM {S}.tenants WHERE tenant = $1", tenant)
    return _tenant(row) if row else None


async def insert_tenant(conn: asyncpg.Connection, tenant: str, trust_domain: str) -> TenantRecord | None:
    """None when the tenant or the trust domain exists already."""
    row = await conn.fetchrow(
        f"INSERT INTO {S}.tenants(tenant, trust_domain) VALUES ($1, $2)"
        " ON CONFLICT DO NOTHING RETURNING *", tenant, trust_domain)
    return _tenant(row) if row else None


def _orchestrator(row: asyncpg.Record) -> OrchestratorRecord:
    return OrchestratorRecord(
        orchestrator_id=row["id"], tenant=row["tenant"], spiffe_id=row["spiffe_id"], name=row["name"],
        public_jwk=row["public_jwk"], key_id=row["key_id"],
        authority=msgspec.convert(row["authority"], Authority), status=row["status"],
        created_at=row["created_at"],
    )


async def insert_orchestrator(conn: asyncpg.Connection, rec: OrchestratorRecord) -> OrchestratorRecord | None:
    row = await conn.fetchrow(
        f"INSERT INTO {S}.orchestrators(id, tenant, name, spiffe_id, public_jwk, key_id, authority,"
        " status, created_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)"
        " ON CONFLICT DO NOTHING RETURNING *",
        rec.orchestrator_id, rec.tenant, rec.name, rec.spiffe_id, rec.public_jwk, rec.key_id,
        msgspec.to_builtins(rec.authority), rec.status, rec.created_at)
    return _orchestrator(row) if row else None


async def get_orchestrator(conn: asyncpg.Connection, orchestrator_id: str, *,
                           for_update: bool = False) -> OrchestratorRecord | None:
    lock = " FOR UPDATE" if for_update else ""
    row = await conn.fetchrow(f"SELECT * FROM {S}.orchestrators WHERE id = $1{lock}", orchestrator_id)
    return _orchestrator(row) if row else None


async def orchestrator_by_spiffe(conn: asyncpg.Connection | asyncpg.Pool, spiffe_id: str,
                                 key_id: str) -> OrchestratorRecord | None:
    row = await conn.fetchrow(
        f"SELECT * FROM {S}.orchestrators WHERE spiffe_id = $1 AND key_id = $2", spiffe_id, key_id)
    return _orchestrator(row) if row else None


def _agent(row: asyncpg.Record, trust_domain: str) -> AgentIdentity:
    return AgentIdentity(
        agent_id=row["id"], tenant=row["tenant"], trust_domain=trust_domain, spiffe_id=row["spiffe_id"],
        did=row["did"], public_jwk=row["public_jwk"], key_id=row["key_id"],
        orchestrator_id=row["orchestrator_id"], parent_agent_id=row["parent_agent_id"],
        spawn_id=row["spawn_id"], purpose=row["purpose"], model=msgspec.convert(row["model"], Model),
        tools=msgspec.convert(row["tools"], list[Tool]), tier=row["tier"], data_class=row["data_class"],
        controller=msgspec.convert(row["controller"], Controller), status=row["status"],
        created_at=row["created_at"], expires_at=row["expires_at"], ended_at=row["ended_at"],
        end_reason=row["end_reason"],
    )


_AGENT_SELECT = (f"SELECT a.*, t.trust_domain FROM {S}.agents a"
                 f" JOIN {S}.tenants t ON t.tenant = a.tenant")


async def get_agent(conn: asyncpg.Connection | asyncpg.Pool, tenant: str, agent_id: str) -> AgentIdentity | None:
    row = await conn.fetchrow(f"{_AGENT_SELECT} WHERE a.tenant = $1 AND a.id = $2", tenant, agent_id)
    return _agent(row, row["trust_domain"]) if row else None


async def agent_by_spawn(conn: asyncpg.Connection, tenant: str, spawn_id: str) -> AgentIdentity | None:
    row = await conn.fetchrow(f"{_AGENT_SELECT} WHERE a.tenant = $1 AND a.spawn_id = $2", tenant, spawn_id)
    return _agent(row, row["trust_domain"]) if row else None


async def agent_by_spiffe(conn: asyncpg.Connection | asyncpg.Pool, spiffe_id: str,
                          key_id: str) -> AgentIdentity | None:
    row = await conn.fetchrow(f"{_AGENT_SELECT} WHERE a.spiffe_id = $1 AND a.key_id = $2", spiffe_id, key_id)
    return _agent(row, row["trust_domain"]) if row else None


async def live_agents_of(conn: asyncpg.Connection, orchestrator_id: str) -> int:
    return await conn.fetchval(
        f"SELECT count(*) FROM {S}.agents WHERE orchestrator_id = $1 AND status = 'active'"
        " AND expires_at > now()", orchestrator_id)


async def live_agent_with_key(conn: asyncpg.Connection, key_id: str) -> str | None:
    return await conn.fetchval(f"SELECT id FROM {S}.agents WHERE key_id = $1 AND status = 'active'", key_id)


async def insert_agent(conn: asyncpg.Connection, a: AgentIdentity) -> None:
    await conn.execute(
        f"INSERT INTO {S}.agents(id, tenant, spawn_id, spiffe_id, did, public_jwk, key_id,"
        " orchestrator_id, parent_agent_id, purpose, model, tools, tier, data_class, controller,"
        " status, created_at, expires_at)"
        " VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17, $18)",
        a.agent_id, a.tenant, a.spawn_id, a.spiffe_id, a.did, a.public_jwk, a.key_id,
        a.orchestrator_id, a.parent_agent_id, a.purpose, msgspec.to_builtins(a.model),
        msgspec.to_builtins(a.tools), a.tier, a.data_class, msgspec.to_builtins(a.controller),
        a.status, a.created_at, a.expires_at)


async def end_agent(conn: asyncpg.Connection, tenant: str, agent_id: str, *, status: str,
                    reason: str, at: datetime) -> asyncpg.Record | None:
    """Move an active agent to a final status; None when it was not active."""
    return await conn.fetchrow(
        f"UPDATE {S}.agents SET status = $3, ended_at = $4, end_reason = $5"
        " WHERE tenant = $1 AND id = $2 AND status = 'active' RETURNING id",
        tenant, agent_id, status, at, reason)

