"""Delegation's SQL. Functions take the caller's connection (a unit of work's, or the pool to read).

Locking: every transaction that records a link takes the tenant's graph lock shared, and every
revocation takes it exclusively. So a cascade sees every link committed before it, and a grant
that commits after it sees its revocation: no link is ever recorded below a revoked one.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass
from datetime import datetime
from typing import Any, TypeAlias

import asyncpg

S = "delegation"
Conn: TypeAlias = "asyncpg.Connection | asyncpg.Pool"


@dataclass(frozen=True)
class NewLink:
    """A link about to be recorded (the columns a grant decides)."""

    cid: str
    parent: str | None
    depth: int
    root_did: str
    issuer_did: str
    audience_did: str
    issuer_agent_id: str | None
    audience_agent_id: str
    capabilities: list[dict[str, Any]]
    not_before: int | None
    expires: int | None


def _lock_key(tenant: str) -> int:
    return int.from_bytes(hashlib.sha256(f"agentid.delegation.graph.{tenant}".encode()).digest()[:8], "big",
                          signed=True)


async def lock_graph(conn: asyncpg.Connection, tenant: str, *, exclusive: bool) -> None:
    fn = "pg_advisory_xact_lock" if exclusive else "pg_advisory_xact_lock_shared"
    await conn.execute(f"SELECT {fn}($1)", _lock_key(tenant))


async def lock_root(conn: asyncpg.Connection, tenant: str, agent_id: str) -> None:
    await conn.execute("SELECT pg_advisory_xact_lock($1)", _lock_key(f"root.{tenant}.{agent_id}"))


# -- authority keys ----------------------------------------------------------------------------------
async def active_key(conn: Conn, tenant: str) -> asyncpg.Record | None:
    return await conn.fetchrow(f"SELECT * FROM {S}.authority_keys WHERE tenant = $1 AND status = 'active'", tenant)


async def key_by_did(conn: Conn, tenant: str, did: str) -> asyncpg.Record | None:
    return await conn.fetchrow(f"SELECT * FROM {S}.authority_keys WHERE tenant = $1 AND did = $2", tenant, did)


async def trusted_keys(conn: Conn, tenant: str, now: datetime) -> list[asyncpg.Record]:
    """The active key, and retired keys whose roots may still be valid."""
    return await conn.fetch(
        f"SELECT * FROM {S}.authority_keys WHERE tenant = $1 AND (status = 'active' OR issued_until > $2)"
        " ORDER BY created_at", tenant, now)


async def key_dids(conn: Conn, tenant: str) -> set[str]:
    return {r["did"] for r in await conn.fetch(f"SELECT did FROM {S}.authority_keys WHERE tenant = $1", tenant)}


async def insert_key(conn: asyncpg.Connection, *, id: str, tenant: str, did: str, public_jwk: dict,
                     sealed_key: bytes) -> bool:
    """False when another replica created the tenant's active key first."""
    row = await conn.fetchrow(
        f"INSERT INTO {S}.authority_keys(id, tenant, did, public_jwk, sealed_key, status)"
        " VALUES ($1, $2, $3, $4, $5, 'active') ON CONFLICT DO NOTHING RETURNING id",
        id, tenant, did, public_jwk, sealed_key)
    return row is not None


async def retire_key(conn: asyncpg.Connection, tenant: str, at: datetime) -> None:
    await conn.execute(f"UPDATE {S}.authority_keys SET status = 'retired', retired_at = $2"
                       " WHERE tenant = $1 AND status = 'active'", tenant, at)


async def extend_key_use(conn: asyncpg.Connection, key_id: str, until: datetime) -> None:
    await conn.execute(
        f"UPDATE {S}.authority_keys SET issued_until = GREATEST(coalesce(issued_until, $2), $2) WHERE id = $1",
        key_id, until)


# -- configuration -----------------------------------------------------------------------------------
async def current_config(conn: Conn, tenant: str) -> asyncpg.Record | None:
    return await conn.fetchrow(
        f"SELECT * FROM {S}.configs WHERE tenant = $1 ORDER BY version DESC LIMIT 1", tenant)


async def insert_config(conn: asyncpg.Connection, tenant: str, config: dict[str, Any]) -> int:
    await conn.execute("SELECT pg_advisory_xact_lock($1)", _lock_key(f"config.{tenant}"))
    version = await conn.fetchval(
        f"SELECT coalesce(max(version), 0) + 1 FROM {S}.configs WHERE tenant = $1", tenant)
    await conn.execute(f"INSERT INTO {S}.configs(tenant, version, config) VALUES ($1, $2, $3)",
                       tenant, version, config)
    return int(version)


# -- agents ------------------------------------------------------------------------------------------
async def insert_agent(conn: Conn, *, agent_id: str, tenant: str, did: str, tier: str, purpose: str,
                       expires_at: datetime) -> None:
    await conn.execute(
        f"INSERT INTO {S}.agents(agent_id, tenant, did, tier, purpose, expires_at) VALUES ($1, $2, $3, $4, $5, $6)"
        " ON CONFLICT (agent_id) DO NOTHING", agent_id, tenant, did, tier, purpose, expires_at)


async def agent(conn: Conn, tenant: str, agent_id: str) -> asyncpg.Record | None:
    return await conn.fetchrow(f"SELECT * FROM {S}.agents WHERE tenant = $1 AND agent_id = $2", tenant, agent_id)


async def agents(conn: Conn, tenant: str, agent_ids: Iterable[str]) -> dict[str, asyncpg.Record]:
    rows = await conn.fetch(f"SELECT * FROM {S}.agents WHERE tenant = $1 AND agent_id = ANY($2::text[])",
                            tenant, list(set(agent_ids)))
    return {r["agent_id"]: r for r in rows}


async def agent_by_did(conn: Conn, tenant: str, did: str) -> asyncpg.Record | None:
    """The agent holding this DID's key: the live one if any (a key may be reused after an exit)."""
    return await conn.fetchrow(
        f"SELECT * FROM {S}.agents WHERE tenant = $1 AND did = $2"
        " ORDER BY (ended_at IS NULL) DESC, expires_at DESC LIMIT 1", tenant, did)


async def end_agent(conn: asyncpg.Connection, tenant: str, agent_id: str, at: datetime, reason: str) -> None:
    await conn.execute(
        f"UPDATE {S}.agents SET ended_at = coalesce(ended_at, $3), end_reason = coalesce(end_reason, $4)"
        " WHERE tenant = $1 AND agent_id = $2", tenant, agent_id, at, reason)


async def agent_labels(conn: Conn, tenant: str, dids: Sequence[str]) -> dict[str, asyncpg.Record]:
    rows = await conn.fetch(
        f"SELECT DISTINCT ON (did) * FROM {S}.agents WHERE tenant = $1 AND did = ANY($2::text[])"
        " ORDER BY did, (ended_at IS NULL) DESC, expires_at DESC", tenant, list(dids))
    return {r["did"]: r for r in rows}


# -- links -------------------------------------------------------------------------------------------
async def insert_link(conn: asyncpg.Connection, tenant: str, new: NewLink, *, jwt: str, granted_by: str) -> bool:
    """False when the link is already recorded (a grant is idempotent by CID)."""
    row = await conn.fetchrow(
        f"INSERT INTO {S}.links(tenant, cid, parent, depth, root_did, issuer_did, audience_did, issuer_agent_id,"
        " audience_agent_id, capabilities, not_before, expires, jwt, granted_by)"
        " VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14)"
        " ON CONFLICT (tenant, cid) DO NOTHING RETURNING cid",
        tenant, *asdict(new).values(), jwt, granted_by)
    return row is not None


async def link(conn: Conn, tenant: str, cid: str) -> asyncpg.Record | None:
    return await conn.fetchrow(f"SELECT * FROM {S}.links WHERE tenant = $1 AND cid = $2", tenant, cid)


async def links(conn: Conn, tenant: str, cids: Sequence[str]) -> dict[str, asyncpg.Record]:
    rows = await conn.fetch(f"SELECT * FROM {S}.links WHERE tenant = $1 AND cid = ANY($2::text[])",
                            tenant, list(cids))
    return {r["cid"]: r for r in rows}


async def ancestry(conn: Conn, tenant: str, cid: str) -> list[asyncpg.Record]:
    """The recorded chain ending with `cid`, root first (empty when `cid` is not recorded)."""
    return list(await conn.fetch(
        f"WITH RECURSIVE up AS ("
        f" SELECT * FROM {S}.links WHERE tenant = $1 AND cid = $2"
        f" UNION ALL SELECT l.* FROM {S}.links l JOIN up ON l.tenant = up.tenant AND l.cid = up.parent)"
        " SELECT * FROM up ORDER BY depth", tenant, cid))


async def root_of(conn: Conn, tenant: str, agent_id: str) -> asyncpg.Record | None:
    return await conn.fetchrow(
        f"SELECT l.* FROM {S}.roots r JOIN {S}.links l ON l.tenant = r.tenant AND l.cid = r.cid"
        " WHERE r.tenant = $1 AND r.agent_id = $2", tenant, agent_id)


async def insert_root(conn: asyncpg.Connection, tenant: str, agent_id: str, cid: str) -> bool:
    row = await conn.fetchrow(
        f"INSERT INTO {S}.roots(tenant, agent_id, cid) VALUES ($1, $2, $3) ON CONFLICT DO NOTHING RETURNING cid",
        tenant, agent_id, cid)
    return row is not None


async def unrevoked_links_of_agent(conn: asyncpg.Connection, tenant: str, agent_id: str) -> list[asyncpg.Record]:
    return list(await conn.fetch(
        f"SELECT * FROM {S}.links WHERE tenant = $1 AND revoked_at IS NULL"
        " AND (issuer_agent_id = $2 OR audience_agent_id = $2) ORDER BY depth, granted_at", tenant, agent_id))


async def unrevoked_descendants(conn: asyncpg.Connection, tenant: str, cids: Sequence[str]) -> list[asyncpg.Record]:
    """The unrevoked links at or below `cids`, each with `cause`: the named link it descends from
    (the nearest one when several are named). Ordered root-most first."""
    return list(await conn.fetch(
        f"WITH RECURSIVE down AS ("
        f" SELECT cid, cid AS cause, depth FROM {S}.links WHERE tenant = $1 AND cid = ANY($2::text[])"
        f" UNION ALL SELECT l.cid, down.cause, l.depth FROM {S}.links l"
        "  JOIN down ON l.tenant = $1 AND l.parent = down.cid"
        "  WHERE NOT (l.cid = ANY($2::text[])))"
        f" SELECT DISTINCT ON (d.cid) d.cid, d.cause, d.depth FROM down d JOIN {S}.links l"
        "  ON l.tenant = $1 AND l.cid = d.cid WHERE l.revoked_at IS NULL"
        " ORDER BY d.cid", tenant, list(cids)))


async def mark_revoked(conn: asyncpg.Connection, tenant: str, cids: Sequence[str], at: datetime) -> None:
    await conn.execute(f"UPDATE {S}.links SET revoked_at = $3 WHERE tenant = $1 AND cid = ANY($2::text[])"
                       " AND revoked_at IS NULL", tenant, list(cids), at)


async def graph_links(conn: Conn, tenant: str, *, agent_id: str | None, include_revoked: bool,
                      limit: int) -> list[asyncpg.Record]:
    """Links of the tenant, or those on chains through `agent_id`: every link touching the agent,
    their ancestors up to the root and their descendants. Oldest first, at most `limit` + 1."""
    revoked = "" if include_revoked else " AND l.revoked_at IS NULL"
    if agent_id is None:
        return list(await conn.fetch(
            f"SELECT * FROM {S}.links l WHERE l.tenant = $1{revoked} ORDER BY l.granted_at, l.cid LIMIT $2",
            tenant, limit + 1))
    return list(await conn.fetch(
        f"WITH RECURSIVE seeds AS ("
        f" SELECT cid, parent FROM {S}.links WHERE tenant = $1 AND (issuer_agent_id = $2 OR audience_agent_id = $2)),"
        f" up AS (SELECT cid, parent FROM seeds UNION"
        f"  SELECT l.cid, l.parent FROM {S}.links l JOIN up ON l.tenant = $1 AND l.cid = up.parent),"
        f" down AS (SELECT cid FROM seeds UNION"
        f"  SELECT l.cid FROM {S}.links l JOIN down ON l.tenant = $1 AND l.parent = down.cid)"
        f" SELECT l.* FROM {S}.links l WHERE l.tenant = $1{revoked}"
        "  AND l.cid IN (SELECT cid FROM up UNION SELECT cid FROM down)"
        " ORDER BY l.granted_at, l.cid LIMIT $3", tenant, agent_id, limit + 1))


# -- revocations -------------------------------------------------------------------------------------
async def revoked_among(conn: Conn, tenant: str, cids: Sequence[str]) -> set[str]:
    rows = await conn.fetch(f"SELECT cid FROM {S}.revocations WHERE tenant = $1 AND cid = ANY($2::text[])",
                            tenant, list(cids))
    return {r["cid"] for r in rows}


async def insert_revocations(conn: asyncpg.Connection, tenant: str,
                             rows: Sequence[tuple[str, str, dict[str, str] | None, str, str]]) -> None:
    """(cid, cause, record, by, reason) each; in order, so `seq` follows the cascade."""
    await conn.executemany(
        f"INSERT INTO {S}.revocations(tenant, cid, cause, record, by, reason) VALUES ($1, $2, $3, $4, $5, $6)",
        [(tenant, *row) for row in rows])


async def revocations_after(conn: Conn, tenant: str, after: int, limit: int) -> list[asyncpg.Record]:
    return list(await conn.fetch(
        f"SELECT * FROM {S}.revocations WHERE tenant = $1 AND seq > $2 ORDER BY seq LIMIT $3",
        tenant, after, limit))
