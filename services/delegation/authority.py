"""The tenant delegation authority: the Ed25519 key whose did:key roots every chain of the tenant.

Created on first use, sealed at rest under the deployment's key-encryption key (the associated
data names tenant and key id, so a sealed key copied into another row does not open).

Rotation: the active key is retired and a new one created. New roots are signed by the new key.
Roots the old key signed stay valid until they expire: the old DID stays among the trusted roots
while `issued_until` (the latest exp it signed) is in the future, and the old key still signs
revocation records for its chains. To cut them off at once, revoke the roots (or the agents).
"""

from __future__ import annotations

from datetime import UTC, datetime

import asyncpg

from services.delegation import store
from shared.errors import NotFound
from shared.ids import new_id
from shared.keys import PrivateKey
from shared.sealing import seal_key, unseal_key


def _context(tenant: str, key_id: str) -> str:
    return f"agentid/delegation/authority-key/{tenant}/{key_id}"


class Authorities:
    def __init__(self, kek: bytes) -> None:
        self._kek = kek
        self._keys: dict[str, PrivateKey] = {}

    async def active(self, conn: asyncpg.Connection, tenant: str) -> tuple[asyncpg.Record, PrivateKey]:
        """The tenant's authority key, created on first use."""
        row = await store.active_key(conn, tenant)
        if row is None:
            await self.create(conn, tenant)
            row = await store.active_key(conn, tenant)
        return row, self.private(row)

    async def create(self, conn: asyncpg.Connection, tenant: str) -> None:
        key = PrivateKey.generate("EdDSA")
        key_id = "dk_" + new_id()
        await store.insert_key(conn, id=key_id, tenant=tenant, did=key.public.did, public_jwk=key.public.jwk(),
                               sealed_key=seal_key(self._kek, key, _context(tenant, key_id)))

    def private(self, row: asyncpg.Record) -> PrivateKey:
        key = self._keys.get(row["id"])
        if key is None:
            key = unseal_key(self._kek, bytes(row["sealed_key"]), _context(row["tenant"], row["id"]))
            self._keys[row["id"]] = key
        return key

    async def by_did(self, conn: asyncpg.Connection | asyncpg.Pool, tenant: str, did: str) -> PrivateKey | None:
        """The private key of one of the tenant's authorities (active or retired), if `did` is one."""
        row = await store.key_by_did(conn, tenant, did)
        return None if row is None else self.private(row)

    async def trusted_roots(self, conn: asyncpg.Connection | asyncpg.Pool, tenant: str) -> list[str]:
        """Every root DID a chain of this tenant may start from, active authority first.

        The hook for roots from elsewhere (e.g. a user's grant through token exchange): add their
        DIDs here, and a chain rooted in them verifies like one rooted in the tenant authority.
        """
        rows = await store.trusted_keys(conn, tenant, datetime.now(UTC))
        rows.sort(key=lambda r: r["status"] != "active")
        return [r["did"] for r in rows]

    async def current_did(self, conn: asyncpg.Connection | asyncpg.Pool, tenant: str) -> str:
        row = await store.active_key(conn, tenant)
        if row is None:
            raise NotFound("this tenant has no delegation authority yet")
        return row["did"]
