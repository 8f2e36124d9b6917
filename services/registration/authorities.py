"""A tenant's signing authorities: its X.509 CA and its JWT-SVID key, sealed at rest.

Rotation retires the active pair and creates a new one; a retired CA stays in the bundle until the
last SVID it signed expires, a retired JWT key until the longest JWT-SVID it could have signed
expires, so verifiers never meet a credential whose authority has already left the bundle.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import asyncpg
from cryptography import x509
from cryptography.hazmat.primitives import serialization

from contracts.registration import AgentIdentity, TrustBundle, X509Svid
from services.registration import store
from shared import spiffe
from shared.errors import NotFound
from shared.ids import new_id
from shared.keys import PrivateKey, PublicKey
from shared.sealing import seal_key, unseal_key


def _context(tenant: str, authority_id: str, kind: str) -> str:
    return f"agentid/registration/authority/{tenant}/{authority_id}/{kind}"


class Authorities:
    def __init__(self, kek: bytes, *, ca_lifetime_s: int) -> None:
        self._kek = kek
        self._ca_lifetime = timedelta(seconds=ca_lifetime_s)
        self._keys: dict[str, PrivateKey] = {}  # unsealed once per authority and process

    async def create(self, conn: asyncpg.Connection, tenant: str, trust_domain: str, now: datetime) -> None:
        """A new active CA and JWT-SVID key for the tenant (after retiring any active ones)."""
        not_after = now + self._ca_lifetime
        ca_key = PrivateKey.generate("ES256")
        ca_id = "auth_" + new_id()
        ca = spiffe.make_ca(ca_key, trust_domain, not_before=now - timedelta(minutes=1), not_after=not_after)
        await store.insert_authority(
            conn, id=ca_id, tenant=tenant, kind="x509", public_jwk=ca_key.public.jwk(),
            key_id=ca_key.public.thumbprint, cert_der=ca.public_bytes(serialization.Encoding.DER),
            sealed_key=seal_key(self._kek, ca_key, _context(tenant, ca_id, "x509")), not_after=not_after)
        jwt_key = PrivateKey.generate("ES256")
        jwt_id = "auth_" + new_id()
        await store.insert_authority(
            conn, id=jwt_id, tenant=tenant, kind="jwt", public_jwk=jwt_key.public.jwk(),
            key_id=jwt_key.public.thumbprint, cert_der=None,
            sealed_key=seal_key(self._kek, jwt_key, _context(tenant, jwt_id, "jwt")), not_after=not_after)

    async def _active(self, conn: asyncpg.Connection, tenant: str, kind: str) -> tuple[asyncpg.Record, PrivateKey]:
        row = await store.active_authority(conn, tenant, kind)
        if row is None:
            raise NotFound("the tenant has no active signing authority")
        key = self._keys.get(row["id"])
        if key is None:
            key = unseal_key(self._kek, bytes(row["sealed_key"]), _context(tenant, row["id"], kind))
            self._keys[row["id"]] = key
        return row, key

    async def issue_svid(self, conn: asyncpg.Connection, agent: AgentIdentity, lifetime_s: int,
                         now: datetime) -> X509Svid:
        row, ca_key = await self._active(conn, agent.tenant, "x509")
        ca = x509.load_der_x509_certificate(bytes(row["cert_der"]))
        not_after = min(now + timedelta(seconds=lifetime_s), agent.expires_at)
        cert = spiffe.issue_svid(ca_key, ca, PublicKey.from_jwk(agent.public_jwk), agent.spiffe_id,
                                 common_name=agent.agent_id, not_before=now - timedelta(seconds=30),
                                 not_after=not_after)
        der = cert.public_bytes(serialization.Encoding.DER)
        await store.insert_svid(conn, serial=f"{cert.serial_number:x}", tenant=agent.tenant,
                                agent_id=agent.agent_id, authority_id=row["id"], cert_der=der,
                                not_before=cert.not_valid_before_utc, not_after=cert.not_valid_after_utc)
        return store.svid_struct(agent.spiffe_id, der)

    async def mint_jwt_svid(self, conn: asyncpg.Connection, agent: AgentIdentity, audience: list[str],
                            lifetime_s: int, now: datetime) -> tuple[str, datetime]:
        row, key = await self._active(conn, agent.tenant, "jwt")
        remaining = int((agent.expires_at - now).total_seconds())
        lifetime = max(1, min(lifetime_s, spiffe.JWT_SVID_MAX_LIFETIME_S, remaining))
        token = spiffe.mint_jwt_svid(key, row["key_id"], agent.spiffe_id, audience, lifetime_s=lifetime,
                                     now=now.timestamp())
        return token, now + timedelta(seconds=lifetime)

    async def bundle(self, conn: asyncpg.Connection | asyncpg.Pool, tenant: str, trust_domain: str) -> TrustBundle:
        now = datetime.now(UTC)
        rows = await store.bundle_authorities(conn, tenant, now, spiffe.JWT_SVID_MAX_LIFETIME_S + 60)
        cas = [x509.load_der_x509_certificate(bytes(r["cert_der"])) for r in rows if r["kind"] == "x509"]
        jwt_keys = [(r["key_id"], PublicKey.from_jwk(r["public_jwk"])) for r in rows if r["kind"] == "jwt"]
        sequence = await store.bundle_sequence(conn, tenant)
        return TrustBundle(trust_domain=trust_domain, sequence=sequence,
                           jwks=spiffe.bundle_jwks(cas, jwt_keys, sequence=sequence))
