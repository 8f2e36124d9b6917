"""Resource servers: the clients of the HTTP introspection (RFC 7662) and revocation (RFC 7009)
endpoints, registered by an operator per tenant, each for the audiences it serves.

A resource server authenticates with HTTP Basic `client_id`/`client_secret` (the gateway decodes
them and relays them here). The secret is 256 random bits shown once at registration; only its
scrypt hash and salt are stored, and `Scrypt.verify` compares in constant time. An unknown
`client_id` costs the same scrypt run as a wrong secret, so timing does not tell them apart.

A resource server sees only tokens issued for one of its audiences: any other token introspects as
`{"active": false}` (RFC 7662 section 4: a server may answer each protected resource differently,
and should not tell it more than it needs) and is left alone by its revocation requests.
"""

from __future__ import annotations

import asyncio
import os
import secrets
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import msgspec
from cryptography.exceptions import InvalidKey
from cryptography.hazmat.primitives.kdf.scrypt import Scrypt

from contracts import gateway as gw
from contracts import subjects as sub
from contracts import tokens as tok
from services.token.grants import require_gateway
from shared.errors import InvalidClient, NotFound
from shared.ids import new_id
from shared.worker import Context

if TYPE_CHECKING:
    from services.token.worker import TokenWorker

# Secrets are 256-bit random, so the hash only has to make a stolen table useless, not slow down
# guessing a password: modest scrypt costs keep introspection cheap (about 16 MiB, tens of ms).
SCRYPT_N, SCRYPT_R, SCRYPT_P, HASH_BYTES = 2**14, 8, 1, 32
_DUMMY_SALT = b"\x00" * 16


def _kdf(salt: bytes) -> Scrypt:
    return Scrypt(salt=salt, length=HASH_BYTES, n=SCRYPT_N, r=SCRYPT_R, p=SCRYPT_P)


def hash_secret(secret: str, salt: bytes) -> bytes:
    return _kdf(salt).derive(secret.encode("utf-8"))


def secret_matches(secret: str, salt: bytes, digest: bytes) -> bool:
    try:
        _kdf(salt).verify(secret.encode("utf-8"), digest)
    except InvalidKey:
        return False
    return True


class ResourceServers:
    def __init__(self, worker: TokenWorker) -> None:
        self.w = worker
        self._dummy_hash: bytes | None = None

    # -- operator routes -----------------------------------------------------------------------
    async def add(self, req: gw.AddResourceServer, ctx: Context) -> gw.ResourceServerCredentials:
        client_id, secret, salt = "rs_" + new_id(), secrets.token_urlsafe(32), os.urandom(16)
        digest = await asyncio.to_thread(hash_secret, secret, salt)
        async with self.w.unit_of_work(ctx) as uow:
            created = await uow.conn.fetchval(
                "INSERT INTO token.resource_servers(client_id, tenant, name, audiences, salt, secret_hash)"
                " VALUES ($1, $2, $3, $4, $5, $6) RETURNING created_at",
                client_id, ctx.tenant, req.name, list(req.audiences), salt, digest)
            await uow.emit(sub.RESOURCE_SERVER_CHANGED, ctx.tenant, gw.ResourceServerChanged(
                client_id=client_id, name=req.name, audiences=list(req.audiences), change="added", at=created))
        return gw.ResourceServerCredentials(client_id=client_id, client_secret=secret, name=req.name,
                                            audiences=list(req.audiences), created_at=created)

    async def list(self, req: gw.ListResourceServers, ctx: Context) -> gw.ResourceServerList:
        rows = await self.w.pool.fetch(
            "SELECT client_id, name, audiences, created_at FROM token.resource_servers WHERE tenant = $1"
            " ORDER BY created_at", ctx.tenant)
        return gw.ResourceServerList(resource_servers=[
            gw.ResourceServerRecord(client_id=r["client_id"], name=r["name"],
                                    audiences=msgspec.convert(r["audiences"], list[str]), created_at=r["created_at"])
            for r in rows])

    async def remove(self, req: gw.RemoveResourceServer, ctx: Context) -> gw.ResourceServerList:
        async with self.w.unit_of_work(ctx) as uow:
            removed = await uow.conn.fetchrow(
                "DELETE FROM token.resource_servers WHERE tenant = $1 AND client_id = $2 RETURNING name, audiences",
                ctx.tenant, req.client_id)
            if removed is None:
                raise NotFound("no such resource server")
            await uow.emit(sub.RESOURCE_SERVER_CHANGED, ctx.tenant, gw.ResourceServerChanged(
                client_id=req.client_id, name=removed["name"], audiences=msgspec.convert(removed["audiences"], list[str]),
                change="removed", at=datetime.now(UTC)))
        return await self.list(gw.ListResourceServers(), ctx)

    # -- gateway routes ------------------------------------------------------------------------
    async def authenticate(self, tenant: str, client_id: str, secret: str) -> dict[str, Any]:
        row = await self.w.pool.fetchrow(
            "SELECT client_id, name, audiences, salt, secret_hash FROM token.resource_servers"
            " WHERE tenant = $1 AND client_id = $2", tenant, client_id)
        if row is None:
            if self._dummy_hash is None:
                self._dummy_hash = await asyncio.to_thread(hash_secret, secrets.token_urlsafe(32), _DUMMY_SALT)
            await asyncio.to_thread(secret_matches, secret, _DUMMY_SALT, self._dummy_hash)
            raise InvalidClient("client authentication failed", {"reason": "unknown_client"})
        if not await asyncio.to_thread(secret_matches, secret, bytes(row["salt"]), bytes(row["secret_hash"])):
            raise InvalidClient("client authentication failed", {"reason": "bad_secret"})
        return {"client_id": row["client_id"], "name": row["name"],
                "audiences": msgspec.convert(row["audiences"], list[str])}

    async def introspect(self, req: gw.ResourceServerCall, ctx: Context) -> tok.Introspection:
        require_gateway(ctx)
        server = await self.authenticate(ctx.tenant, req.client_id, req.client_secret)
        result = await self.w.introspect(tok.Introspect(token=req.token), ctx)
        if not result.active or (result.claims or {}).get("aud") not in server["audiences"]:
            return tok.Introspection(active=False)
        return result

    async def revoke(self, req: gw.ResourceServerCall, ctx: Context) -> gw.Revocation:
        require_gateway(ctx)
        server = await self.authenticate(ctx.tenant, req.client_id, req.client_secret)
        found = await self.w._own_token(req.token, ctx.tenant)
        if found is None or found[0].get("aud") not in server["audiences"]:
            return gw.Revocation(revoked=False)  # RFC 7009 section 2.2: nothing to do is not an error
        await self.w.revoke(tok.RevokeToken(jti=found[0]["jti"], reason=f"revoked by resource server "
                                            f"{server['client_id']} ({server['name']})"[:1024]), ctx)
        return gw.Revocation(revoked=True)

