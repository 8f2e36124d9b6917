"""Issuance's SQL. Every function takes the connection of the caller's unit of work."""

from __future__ import annotations

from datetime import datetime

import asyncpg

S = "issuance"


async def active_key(conn: asyncpg.Connection, tenant: str) -> asyncpg.Record | None:
    return await conn.fetchrow(f"SELECT * FROM {S}.issuer_keys WHERE tenant = $1 AND status = 'active'", tenant)


async def key_by_id(conn: asyncpg.Connection, key_id: str) -> asyncpg.Record:
    return await conn.fetchrow(f"SELECT * FROM {S}.issuer_keys WHERE id = $1", key_id)


async def live_keys(conn: asyncpg.Connection | asyncpg.Pool, tenant: str, now: datetime) -> list[asyncpg.Record]:
    """Keys whose credentials may still be valid: the active one and retired ones still needed."""
    return await conn.fetch(
        f"SELECT * FROM {S}.issuer_keys WHERE tenant = $1 AND (status = 'active' OR issued_until > $2)"
        " ORDER BY created_at", tenant, now)


async def insert_key(conn: asyncpg.Connection, *, id: str, tenant: str, did: str, vm_id: str,
                     public_jwk: dict, sealed_key: bytes) -> bool:
    """False when another replica created the tenant's active key first."""
    row = await conn.fetchrow(
        f"INSERT INTO {S}.issuer_keys(id, tenant, did, vm_id, public_jwk, sealed_key, status)"
        " VALUES ($1, $2, $3, $4, $5, $6, 'active') ON CONFLICT DO NOTHING RETURNING id",
        id, tenant, did, vm_id, public_jwk, sealed_key)
    return row is not None


async def retire_key(conn: asyncpg.Connection, tenant: str, at: datetime) -> None:
    await conn.execute(f"UPDATE {S}.issuer_keys SET status = 'retired', retired_at = $2"
                       " WHERE tenant = $1 AND status = 'active'", tenant, at)


async def open_list(conn: asyncpg.Connection, issuer_key_id: str) -> asyncpg.Record | None:
    """A list of this key with room (at most half full, so random allocation stays cheap), locked."""
    return await conn.fetchrow(
        f"SELECT * FROM {S}.status_lists WHERE issuer_key_id = $1 AND used * 2 < entries"
        " ORDER BY id LIMIT 1 FOR UPDATE", issuer_key_id)


async def insert_list(conn: asyncpg.Connection, *, id: str, tenant: str, issuer_key_id: str, entries: int,
                      bits: bytes, vc_jwt: str) -> None:
    await conn.execute(
        f"INSERT INTO {S}.status_lists(id, tenant, issuer_key_id, entries, bits, vc_jwt) VALUES ($1, $2, $3, $4, $5, $6)",
        id, tenant, issuer_key_id, entries, bits, vc_jwt)


async def index_taken(conn: asyncpg.Connection, list_id: str, index: int) -> bool:
    return bool(await conn.fetchval(
        f"SELECT 1 FROM {S}.credentials WHERE status_list_id = $1 AND status_index = $2", list_id, index))


async def list_for_update(conn: asyncpg.Connection, list_id: str) -> asyncpg.Record | None:
    return await conn.fetchrow(f"SELECT * FROM {S}.status_lists WHERE id = $1 FOR UPDATE", list_id)


async def get_list(conn: asyncpg.Connection | asyncpg.Pool, tenant: str, list_id: str | None) -> asyncpg.Record | None:
    """A list by id, or (None) the newest list of the tenant's active key."""
    if list_id is None:
        return await conn.fetchrow(
            f"SELECT l.* FROM {S}.status_lists l JOIN {S}.issuer_keys k ON k.id = l.issuer_key_id"
            " WHERE l.tenant = $1 AND k.status = 'active' ORDER BY l.id DESC LIMIT 1", tenant)
    return await conn.fetchrow(f"SELECT * FROM {S}.status_lists WHERE tenant = $1 AND id = $2", tenant, list_id)


async def update_list(conn: asyncpg.Connection, list_id: str, *, bits: bytes, vc_jwt: str, used_delta: int) -> None:
    await conn.execute(
        f"UPDATE {S}.status_lists SET bits = $2, vc_jwt = $3, used = used + $4, version = version + 1,"
        " updated_at = now() WHERE id = $1", list_id, bits, vc_jwt, used_delta)


async def count_use(conn: asyncpg.Connection, list_id: str) -> None:
    await conn.execute(f"UPDATE {S}.status_lists SET used = used + 1 WHERE id = $1", list_id)


async def insert_credential(conn: asyncpg.Connection, *, id: str, tenant: str, agent_id: str, issuer_key_id: str,
                            status_list_id: str, status_index: int, vc_jwt: str, subject: dict,
                            valid_from: datetime, valid_until: datetime, attested: bool) -> None:
    await conn.execute(
        f"INSERT INTO {S}.credentials(id, tenant, agent_id, issuer_key_id, status_list_id, status_index, vc_jwt,"
        " subject, valid_from, valid_until, attested) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)",
        id, tenant, agent_id, issuer_key_id, status_list_id, status_index, vc_jwt, subject, valid_from,
        valid_until, attested)
    await conn.execute(
        f"UPDATE {S}.issuer_keys SET issued_until = GREATEST(coalesce(issued_until, $2), $2) WHERE id = $1",
        issuer_key_id, valid_until)


async def current_credential(conn: asyncpg.Connection | asyncpg.Pool, tenant: str, agent_id: str) -> asyncpg.Record | None:
    return await conn.fetchrow(
        f"SELECT c.*, k.did FROM {S}.credentials c JOIN {S}.issuer_keys k ON k.id = c.issuer_key_id"
        " WHERE c.tenant = $1 AND c.agent_id = $2 ORDER BY c.created_at DESC LIMIT 1", tenant, agent_id)


async def unrevoked_credentials(conn: asyncpg.Connection, tenant: str, agent_id: str) -> list[asyncpg.Record]:
    return await conn.fetch(
        f"SELECT * FROM {S}.credentials WHERE tenant = $1 AND agent_id = $2 AND revoked_at IS NULL"
        " ORDER BY created_at FOR UPDATE", tenant, agent_id)


async def mark_revoked(conn: asyncpg.Connection, credential_id: str, at: datetime, reason: str) -> None:
    await conn.execute(f"UPDATE {S}.credentials SET revoked_at = $2, revoke_reason = $3 WHERE id = $1",
                       credential_id, at, reason)
