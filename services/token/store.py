"""The token worker's SQL."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import asyncpg

S = "token"
Conn = asyncpg.Connection | asyncpg.Pool


async def agent_facts(conn: Conn, schema: str, agent_id: str, now: datetime) -> asyncpg.Record | None:
    """The agent's directory entry with its current credential and live postures, in one query."""
    return await conn.fetchrow(
        f'SELECT s.sender, s.key_id, s.public_jwk, s.tenant, s.orchestrator_id, s.attributes, c.credential_id,'
        f' s.active AND (s.expires_at IS NULL OR s.expires_at > $2) AS active,'
        f' (SELECT array_agg(p.kind) FROM {S}.postures p WHERE p.agent_id = s.subject_id AND p.expires_at > $2) AS postures'
        f' FROM "{schema}".senders s LEFT JOIN {S}.agent_credentials c ON c.agent_id = s.subject_id'
        " WHERE s.subject_id = $1 AND s.kind = 'agent' LIMIT 1", agent_id, now)


async def agent_active(conn: Conn, agent_id: str) -> bool:
    return bool(await conn.fetchval(
        f"SELECT active AND (expires_at IS NULL OR expires_at > now()) FROM {S}.senders"
        " WHERE subject_id = $1 AND kind = 'agent' LIMIT 1", agent_id))


async def set_credential(conn: asyncpg.Connection, tenant: str, agent_id: str, credential_id: str) -> None:
    await conn.execute(
        f"INSERT INTO {S}.agent_credentials(agent_id, tenant, credential_id) VALUES ($1, $2, $3)"
        " ON CONFLICT (agent_id) DO UPDATE SET credential_id = EXCLUDED.credential_id, issued_at = now()",
        agent_id, tenant, credential_id)


async def set_posture(conn: asyncpg.Connection, tenant: str, agent_id: str, kind: str, result_id: str,
                      verified_at: datetime, expires_at: datetime) -> None:
    """Keep the latest appraisal per posture (an older event arriving late never wins)."""
    await conn.execute(
        f"INSERT INTO {S}.postures(agent_id, tenant, kind, result_id, verified_at, expires_at)"
        " VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT (agent_id, kind) DO UPDATE SET"
        " result_id = EXCLUDED.result_id, verified_at = EXCLUDED.verified_at, expires_at = EXCLUDED.expires_at"
        " WHERE postures.verified_at < EXCLUDED.verified_at", agent_id, tenant, kind, result_id, verified_at, expires_at)


async def end_posture(conn: asyncpg.Connection, agent_id: str, kind: str, at: datetime) -> None:
    await conn.execute(f"DELETE FROM {S}.postures WHERE agent_id = $1 AND kind = $2 AND verified_at < $3",
                       agent_id, kind, at)


async def token(conn: Conn, tenant: str, jti: str, *, for_update: bool = False) -> asyncpg.Record | None:
    lock = " FOR UPDATE" if for_update else ""
    return await conn.fetchrow(f"SELECT * FROM {S}.tokens WHERE tenant = $1 AND jti = $2{lock}", tenant, jti)


async def revoke_links(conn: asyncpg.Connection, cids: list[str]) -> None:
    await conn.executemany(f"INSERT INTO {S}.revoked_links(cid) VALUES ($1) ON CONFLICT DO NOTHING", [(c,) for c in cids])


async def any_link_revoked(conn: Conn, cids: list[str]) -> bool:
    return bool(await conn.fetchval(f"SELECT 1 FROM {S}.revoked_links WHERE cid = ANY($1::text[]) LIMIT 1", cids))


async def revoke_token(conn: asyncpg.Connection, jti: str, reason: str) -> None:
    await conn.execute(f"UPDATE {S}.tokens SET revoked_at = now(), revoke_reason = $2 WHERE jti = $1", jti, reason)


async def current_policy(conn: Conn, tenant: str) -> asyncpg.Record | None:
    return await conn.fetchrow(f"SELECT * FROM {S}.policies WHERE tenant = $1 ORDER BY version DESC LIMIT 1", tenant)


async def insert_policy(conn: asyncpg.Connection, tenant: str, policies: str, schema: str | None, sha256: str,
                        ids: list[str]) -> int:
    await conn.execute("SELECT pg_advisory_xact_lock(hashtext('token.policies.' || $1))", tenant)
    version = await conn.fetchval(f"SELECT coalesce(max(version), 0) + 1 FROM {S}.policies WHERE tenant = $1", tenant)
    await conn.execute(f"INSERT INTO {S}.policies(tenant, version, policies, schema, sha256, policy_ids)"
                       " VALUES ($1, $2, $3, $4, $5, $6)", tenant, version, policies, schema, sha256, ids)
    return int(version)


async def current_config(conn: Conn, tenant: str) -> asyncpg.Record | None:
    return await conn.fetchrow(f"SELECT * FROM {S}.token_configs WHERE tenant = $1 ORDER BY version DESC LIMIT 1",
                               tenant)


async def insert_config(conn: asyncpg.Connection, tenant: str, config: dict[str, Any]) -> int:
    await conn.execute("SELECT pg_advisory_xact_lock(hashtext('token.configs.' || $1))", tenant)
    version = await conn.fetchval(f"SELECT coalesce(max(version), 0) + 1 FROM {S}.token_configs WHERE tenant = $1",
                                  tenant)
    await conn.execute(f"INSERT INTO {S}.token_configs(tenant, version, config) VALUES ($1, $2, $3)",
                       tenant, version, config)
    return int(version)
