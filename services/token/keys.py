"""Token signing keys per tenant: created on first use, sealed at rest, rotated with overlap.

A retired key stays in the JWKS for the longest token lifetime plus skew after its retirement, so
no token it signed ever meets a verifier that has dropped its key.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg

from shared.ids import new_id
from shared.keys import PrivateKey, PublicKey
from shared.sealing import seal_key, unseal_key

MAX_TOKEN_LIFETIME_S = 300
OVERLAP = timedelta(seconds=MAX_TOKEN_LIFETIME_S + 120)
S = "token"


def _context(tenant: str, key_id: str) -> str:
    return f"agentid/token/signing-key/{tenant}/{key_id}"


class SigningKeys:
    def __init__(self, kek: bytes) -> None:
        self._kek = kek
        self._active: dict[str, tuple[str, PrivateKey]] = {}  # tenant -> (kid, key), loaded once

    async def active(self, pool: asyncpg.Pool, tenant: str) -> tuple[str, PrivateKey]:
        hit = self._active.get(tenant)
        if hit is not None:
            return hit
        async with pool.acquire() as conn:
            row = await conn.fetchrow(f"SELECT * FROM {S}.signing_keys WHERE tenant = $1 AND status = 'active'", tenant)
            if row is None:
                await self.create(conn, tenant)
                row = await conn.fetchrow(f"SELECT * FROM {S}.signing_keys WHERE tenant = $1 AND status = 'active'",
                                          tenant)
        key = unseal_key(self._kek, bytes(row["sealed_key"]), _context(tenant, row["id"]))
        self._active[tenant] = (row["kid"], key)
        return row["kid"], key

    async def create(self, conn: asyncpg.Connection, tenant: str) -> None:
        key = PrivateKey.generate()
        key_id = "tk_" + new_id()
        await conn.execute(
            f"INSERT INTO {S}.signing_keys(id, tenant, kid, public_jwk, sealed_key, status)"
            " VALUES ($1, $2, $3, $4, $5, 'active') ON CONFLICT DO NOTHING",
            key_id, tenant, key.public.thumbprint, key.public.jwk(),
            seal_key(self._kek, key, _context(tenant, key_id)))

    async def rotate(self, conn: asyncpg.Connection, tenant: str) -> str:
        await conn.execute(f"UPDATE {S}.signing_keys SET status = 'retired', retired_at = now()"
                           " WHERE tenant = $1 AND status = 'active'", tenant)
        await self.create(conn, tenant)
        return await conn.fetchval(f"SELECT kid FROM {S}.signing_keys WHERE tenant = $1 AND status = 'active'", tenant)

    def forget(self, tenant: str) -> None:
        """Drop the cached active key (after a rotation, seen here or by another replica)."""
        self._active.pop(tenant, None)

    async def jwks(self, conn: asyncpg.Connection | asyncpg.Pool, tenant: str) -> list[dict[str, Any]]:
        rows = await conn.fetch(
            f"SELECT kid, public_jwk FROM {S}.signing_keys WHERE tenant = $1 AND"
            " (status = 'active' OR retired_at > $2) ORDER BY created_at DESC", tenant, datetime.now(UTC) - OVERLAP)
        out = []
        for r in rows:
            key = PublicKey.from_jwk(r["public_jwk"])
            out.append(key.jwk(kid=r["kid"], use="sig", alg=key.alg))
        return out
