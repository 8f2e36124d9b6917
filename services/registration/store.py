"""Registration's SQL. Every function takes the connection of the caller's unit of work."""

from __future__ import annotations

from datetime import datetime
import asyncpg
import msgspec

from cryptography import x509
from cryptography.hazmat.primitives import serialization

from contracts.registration import (
    AgentIdentity, Authority, Controller, Model, OrchestratorRecord, TenantRecord, Tool, X509Svid,
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
    svid = None
    if "svid_der" in row.keys() and row["svid_der"] is not None:
        svid = svid_struct(row["spiffe_id"], row["svid_der"])
    return AgentIdentity(
        agent_id=row["id"], tenant=row["tenant"], trust_domain=trust_domain, spiffe_id=row["spiffe_id"],
        did=row["did"], public_jwk=row["public_jwk"], key_id=row["key_id"],
        orchestrator_id=row["orchestrator_id"], parent_agent_id=row["parent_agent_id"],
        spawn_id=row["spawn_id"], purpose=row["purpose"], model=msgspec.convert(row["model"], Model),
        tools=msgspec.convert(row["tools"], list[Tool]), tier=row["tier"], data_class=row["data_class"],
        controller=msgspec.convert(row["controller"], Controller), status=row["status"],
        created_at=row["created_at"], expires_at=row["expires_at"], ended_at=row["ended_at"],
        end_reason=row["end_reason"], svid=svid,
    )


def svid_struct(spiffe_id: str, cert_der: bytes) -> X509Svid:
    """The SVID as sent: the tenant CA signs leaves directly, so the chain is the leaf alone
    (the CA is the trust anchor, in the bundle)."""
    cert = x509.load_der_x509_certificate(cert_der)
    leaf = cert.public_bytes(serialization.Encoding.PEM).decode("ascii")
    return X509Svid(spiffe_id=spiffe_id, cert_pem=leaf, chain_pem=[leaf], serial=f"{cert.serial_number:x}",
                    not_before=cert.not_valid_before_utc, not_after=cert.not_valid_after_utc)


# The agent with its tenant's trust domain and its latest SVID.
_AGENT_SELECT = (f"SELECT a.*, t.trust_domain, sv.cert_der AS svid_der"
                 f" FROM {S}.agents a JOIN {S}.tenants t ON t.tenant = a.tenant"
                 f" LEFT JOIN LATERAL (SELECT cert_der FROM {S}.svids s WHERE s.agent_id = a.id"
                 "   ORDER BY s.issued_at DESC LIMIT 1) sv ON true")


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



# -- authorities and SVIDs -----------------------------------------------------------------------
async def insert_authority(conn: asyncpg.Connection, *, id: str, tenant: str, kind: str, public_jwk: dict,
                           key_id: str, cert_der: bytes | None, sealed_key: bytes, not_after: datetime) -> None:
    await conn.execute(
        f"INSERT INTO {S}.authorities(id, tenant, kind, public_jwk, key_id, cert_der, sealed_key, status,"
        " not_after) VALUES ($1, $2, $3, $4, $5, $6, $7, 'active', $8)",
        id, tenant, kind, public_jwk, key_id, cert_der, sealed_key, not_after)


async def active_authority(conn: asyncpg.Connection, tenant: str, kind: str) -> asyncpg.Record | None:
    return await conn.fetchrow(
        f"SELECT * FROM {S}.authorities WHERE tenant = $1 AND kind = $2 AND status = 'active'", tenant, kind)


async def retire_authorities(conn: asyncpg.Connection, tenant: str, at: datetime) -> None:
    await conn.execute(
        f"UPDATE {S}.authorities SET status = 'retired', retired_at = $2 WHERE tenant = $1 AND status = 'active'",
        tenant, at)


async def bundle_authorities(conn: asyncpg.Connection | asyncpg.Pool, tenant: str, now: datetime,
                             jwt_overlap_s: int) -> list[asyncpg.Record]:
    """Authorities a verifier still needs: the active ones, a retired CA until the last SVID it
    signed expires, a retired JWT key until the longest JWT-SVID it could have signed expires."""
    return await conn.fetch(
        f"SELECT * FROM {S}.authorities WHERE tenant = $1 AND not_after > $2 AND ("
        " status = 'active'"
        " OR (kind = 'x509' AND issued_until > $2)"
        " OR (kind = 'jwt' AND retired_at + make_interval(secs => $3) > $2))"
        " ORDER BY created_at", tenant, now, jwt_overlap_s)


async def bump_bundle_sequence(conn: asyncpg.Connection, tenant: str) -> int:
    return await conn.fetchval(
        f"UPDATE {S}.tenants SET bundle_sequence = bundle_sequence + 1 WHERE tenant = $1 RETURNING bundle_sequence",
        tenant)


async def bundle_sequence(conn: asyncpg.Connection | asyncpg.Pool, tenant: str) -> int:
    return await conn.fetchval(f"SELECT bundle_sequence FROM {S}.tenants WHERE tenant = $1", tenant)


async def insert_svid(conn: asyncpg.Connection, *, serial: str, tenant: str, agent_id: str, authority_id: str,
                      cert_der: bytes, not_before: datetime, not_after: datetime) -> None:
    await conn.execute(
        f"INSERT INTO {S}.svids(serial, tenant, agent_id, authority_id, cert_der, not_before, not_after)"
        " VALUES ($1, $2, $3, $4, $5, $6, $7)", serial, tenant, agent_id, authority_id, cert_der, not_before,
        not_after)
    await conn.execute(
        f"UPDATE {S}.authorities SET issued_until = GREATEST(coalesce(issued_until, $2), $2) WHERE id = $1",
        authority_id, not_after)


# -- lifecycle ---------------------------------------------------------------------------------
async def list_agents(conn: asyncpg.Connection | asyncpg.Pool, tenant: str, *, status: str | None,
                      orchestrator_id: str | None, after: str | None, limit: int) -> list[AgentIdentity]:
    rows = await conn.fetch(
        f"{_AGENT_SELECT} WHERE a.tenant = $1 AND ($2::text IS NULL OR a.status = $2)"
        " AND ($3::text IS NULL OR a.orchestrator_id = $3) AND ($4::text IS NULL OR a.id > $4)"
        " ORDER BY a.id LIMIT $5", tenant, status, orchestrator_id, after, limit)
    return [_agent(r, r["trust_domain"]) for r in rows]


async def end_subtree(conn: asyncpg.Connection, tenant: str, agent_id: str, *, status: str, reason: str,
                      child_reason: str, at: datetime) -> list[asyncpg.Record]:
    """End an agent and every active descendant in one statement; returns the rows it ended."""
    return await conn.fetch(
        f"WITH RECURSIVE tree(id) AS ("
        f"  SELECT id FROM {S}.agents WHERE tenant = $1 AND id = $2"
        f"  UNION SELECT a.id FROM {S}.agents a JOIN tree t ON a.parent_agent_id = t.id)"
        f" UPDATE {S}.agents a SET status = $3, ended_at = $4,"
        "   end_reason = CASE WHEN a.id = $2 THEN $5 ELSE $6 END"
        " FROM tree WHERE a.id = tree.id AND a.status = 'active'"
        " RETURNING a.id, a.spiffe_id, a.did, a.end_reason",
        tenant, agent_id, status, at, reason, child_reason)


async def revoke_orchestrator(conn: asyncpg.Connection, tenant: str, orchestrator_id: str, *, reason: str,
                              at: datetime) -> list[asyncpg.Record] | None:
    """Refuse the orchestrator's key and revoke every active agent it spawned (sub-agents share
    their parent's orchestrator, so this is the whole tree). None when no such orchestrator."""
    found = await conn.fetchval(f"UPDATE {S}.orchestrators SET status = 'revoked' WHERE tenant = $1 AND id = $2"
                                " RETURNING id", tenant, orchestrator_id)
    if found is None:
        return None
    return await conn.fetch(
        f"UPDATE {S}.agents SET status = 'revoked', ended_at = $3, end_reason = $4"
        " WHERE tenant = $1 AND orchestrator_id = $2 AND status = 'active' RETURNING id, spiffe_id, did",
        tenant, orchestrator_id, at, reason)


async def expire_due(conn: asyncpg.Connection, now: datetime, limit: int = 500) -> list[asyncpg.Record]:
    return await conn.fetch(
        f"UPDATE {S}.agents SET status = 'expired', ended_at = expires_at, end_reason = 'lifetime ended'"
        f" WHERE id IN (SELECT id FROM {S}.agents WHERE status = 'active' AND expires_at <= $1"
        "   ORDER BY expires_at LIMIT $2 FOR UPDATE SKIP LOCKED)"
        " RETURNING id, tenant, spiffe_id, did, ended_at", now, limit)
