"""Attestation's SQL. Writers take the connection of the caller's unit of work."""

from __future__ import annotations

import hashlib
from datetime import datetime
from typing import Any

import asyncpg

S = "attestation"

Conn = asyncpg.Connection | asyncpg.Pool


# -- reference values ------------------------------------------------------------------------


async def lock_reference(conn: asyncpg.Connection, tenant: str) -> None:
    """Serialise version numbering per tenant (the first version has no row to lock)."""
    await conn.execute("SELECT pg_advisory_xact_lock(hashtextextended($1, 0))", f"{S}.reference:{tenant}")


async def current_reference(conn: Conn, tenant: str) -> asyncpg.Record | None:
    return await conn.fetchrow(
        f"SELECT * FROM {S}.reference_values WHERE tenant = $1 ORDER BY version DESC LIMIT 1", tenant)


async def insert_reference(conn: asyncpg.Connection, *, tenant: str, version: int, document: dict[str, Any],
                           digest: str, set_by: str, set_at: datetime) -> asyncpg.Record:
    return await conn.fetchrow(
        f"INSERT INTO {S}.reference_values(tenant, version, document, digest, set_by, set_at)"
        " VALUES ($1, $2, $3, $4, $5, $6) RETURNING *", tenant, version, document, digest, set_by, set_at)


async def reference_versions(conn: Conn, tenant: str, limit: int) -> list[asyncpg.Record]:
    return await conn.fetch(
        f"SELECT version, digest, set_by, set_at FROM {S}.reference_values WHERE tenant = $1"
        " ORDER BY version DESC LIMIT $2", tenant, limit)


# -- challenges ------------------------------------------------------------------------------


async def open_challenges(conn: asyncpg.Connection, tenant: str, agent_id: str, now: datetime) -> int:
    return int(await conn.fetchval(
        f"SELECT count(*) FROM {S}.challenges WHERE tenant = $1 AND agent_id = $2 AND used_at IS NULL"
        " AND expires_at > $3", tenant, agent_id, now))


async def insert_challenge(conn: asyncpg.Connection, *, id: str, tenant: str, agent_id: str, key_id: str,
                           nonce: bytes, created_at: datetime, expires_at: datetime) -> None:
    await conn.execute(
        f"INSERT INTO {S}.challenges(id, tenant, agent_id, key_id, nonce, created_at, expires_at)"
        " VALUES ($1, $2, $3, $4, $5, $6, $7)", id, tenant, agent_id, key_id, nonce, created_at, expires_at)


async def get_challenge(conn: Conn, tenant: str, challenge_id: str) -> asyncpg.Record | None:
    return await conn.fetchrow(f"SELECT * FROM {S}.challenges WHERE tenant = $1 AND id = $2", tenant, challenge_id)


async def consume_challenge(conn: asyncpg.Connection, *, tenant: str, challenge_id: str, agent_id: str,
                            key_id: str, now: datetime) -> bytes | None:
    """Spend the challenge; None unless it is this agent's, for this key, unused and unexpired.
    One statement, so of two concurrent spends exactly one succeeds."""
    return await conn.fetchval(
        f"UPDATE {S}.challenges SET used_at = $6 WHERE tenant = $1 AND id = $2 AND agent_id = $3"
        " AND key_id = $4 AND used_at IS NULL AND expires_at > $5 RETURNING nonce",
        tenant, challenge_id, agent_id, key_id, now, now)


async def delete_stale_challenges(conn: Conn, before: datetime) -> int:
    status = await conn.execute(f"DELETE FROM {S}.challenges WHERE expires_at < $1", before)
    return int(status.split()[-1])


# -- results and postures --------------------------------------------------------------------


async def insert_result(conn: asyncpg.Connection, *, id: str, tenant: str, agent_id: str, kind: str,
                        posture: str, verified: bool, key_id: str, created_at: datetime, evidence: bytes,
                        reason: str | None = None, message: str | None = None,
                        claims: dict[str, Any] | None = None, artifacts: list[str] | None = None,
                        challenge_id: str | None = None, reference_version: int | None = None,
                        expires_at: datetime | None = None) -> None:
    await conn.execute(
        f"INSERT INTO {S}.results(id, tenant, agent_id, kind, posture, verified, reason, message, claims,"
        " artifacts, challenge_id, key_id, reference_version, evidence, evidence_sha256, created_at, expires_at)"
        " VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17)",
        id, tenant, agent_id, kind, posture, verified, reason, message, claims, artifacts or [], challenge_id,
        key_id, reference_version, evidence, hashlib.sha256(evidence).hexdigest(), created_at, expires_at)


async def hold_posture(conn: asyncpg.Connection, *, tenant: str, agent_id: str, posture: str, result_id: str,
                       kind: str, artifacts: list[str], verified_at: datetime, expires_at: datetime) -> None:
    """The newer result wins (replicas may commit out of order)."""
    await conn.execute(
        f"INSERT INTO {S}.postures AS p (tenant, agent_id, posture, result_id, kind, artifacts, verified_at,"
        " expires_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8) ON CONFLICT (tenant, agent_id, posture) DO UPDATE"
        " SET result_id = EXCLUDED.result_id, kind = EXCLUDED.kind, artifacts = EXCLUDED.artifacts,"
        " verified_at = EXCLUDED.verified_at, expires_at = EXCLUDED.expires_at"
        " WHERE p.verified_at <= EXCLUDED.verified_at",
        tenant, agent_id, posture, result_id, kind, artifacts, verified_at, expires_at)


async def end_posture(conn: asyncpg.Connection, *, tenant: str, agent_id: str, posture: str,
                      before: datetime) -> None:
    await conn.execute(
        f"DELETE FROM {S}.postures WHERE tenant = $1 AND agent_id = $2 AND posture = $3 AND verified_at <= $4",
        tenant, agent_id, posture, before)


async def postures(conn: Conn, tenant: str, agent_id: str, now: datetime) -> list[asyncpg.Record]:
    return await conn.fetch(
        f"SELECT * FROM {S}.postures WHERE tenant = $1 AND agent_id = $2 AND expires_at > $3",
        tenant, agent_id, now)
