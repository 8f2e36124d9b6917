"""A tenant's credential issuer: its keys (sealed at rest), its DID and DID document.

did:web (when `AGENTID_DID_WEB_HOST` is set): `did:web:<host>:tenants:<tenant>`, one DID whose
document lists every live key, so keys rotate under a stable identifier. did:key otherwise: each
key is its own DID, and the issuer record lists every DID whose credentials may still be valid.
"""

from __future__ import annotations

from datetime import UTC, datetime

import asyncpg

from contracts.issuance import IssuerRecord
from services.issuance import store
from shared.did import did_key_document, did_web, did_web_document, key_vm_id
from shared.errors import NotFound
from shared.ids import new_id
from shared.keys import PrivateKey, PublicKey
from shared.sealing import seal_key, unseal_key


def _context(tenant: str, key_id: str) -> str:
    return f"agentid/issuance/issuer-key/{tenant}/{key_id}"


class Issuers:
    def __init__(self, kek: bytes, *, did_web_host: str | None) -> None:
        self._kek = kek
        self._host = did_web_host
        self._keys: dict[str, PrivateKey] = {}

    def identifiers(self, tenant: str, key: PublicKey) -> tuple[str, str]:
        """(issuer DID, verification method id) for a key of this tenant."""
        if self._host:
            did = did_web(self._host, "tenants", tenant)
            return did, f"{did}#{key.thumbprint}"
        return key.did, key_vm_id(key)

    async def active(self, conn: asyncpg.Connection, tenant: str) -> tuple[asyncpg.Record, PrivateKey]:
        """The tenant's signing key, created on first use."""
        row = await store.active_key(conn, tenant)
        if row is None:
            await self.create(conn, tenant)
            row = await store.active_key(conn, tenant)
        return row, self.private(row)

    async def create(self, conn: asyncpg.Connection, tenant: str) -> None:
        key = PrivateKey.generate()
        key_id = "ik_" + new_id()
        did, vm_id = self.identifiers(tenant, key.public)
        await store.insert_key(conn, id=key_id, tenant=tenant, did=did, vm_id=vm_id, public_jwk=key.public.jwk(),
                               sealed_key=seal_key(self._kek, key, _context(tenant, key_id)))

    def private(self, row: asyncpg.Record) -> PrivateKey:
        key = self._keys.get(row["id"])
        if key is None:
            key = unseal_key(self._kek, bytes(row["sealed_key"]), _context(row["tenant"], row["id"]))
            self._keys[row["id"]] = key
        return key

    async def record(self, conn: asyncpg.Connection | asyncpg.Pool, tenant: str) -> IssuerRecord:
        rows = await store.live_keys(conn, tenant, datetime.now(UTC))
        active = [r for r in rows if r["status"] == "active"]
        if not active:
            raise NotFound("this tenant has no issuer yet")
        current = active[0]
        keys = [(r["vm_id"], PublicKey.from_jwk(r["public_jwk"])) for r in rows]
        if self._host:
            document = did_web_document(current["did"], [(vm.split("#", 1)[1], k) for vm, k in keys])
        else:
            document = did_key_document(PublicKey.from_jwk(current["public_jwk"]))
        return IssuerRecord(
            did=current["did"], dids=sorted({r["did"] for r in rows}), did_document=document,
            jwks={"keys": [k.jwk(kid=vm, use="sig", alg=k.alg) for vm, k in keys]})
