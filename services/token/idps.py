"""Trusted identity providers: whose user tokens a tenant accepts, and what those users may grant.

A user token is checked against its provider's published keys (fetched with httpx over HTTPS,
cached, refetched once on an unknown `kid`, at most every `refetch_interval_s`), its issuer, its
audience and its time. Then it is dropped: nothing of it is stored or logged but the user's
subject and issuer (and, where the audit wants one, a SHA-256 digest).
"""

from __future__ import annotations

import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

import asyncpg
import httpx
import jwt
import msgspec

from contracts.tokens import IdentityProvider
from shared import capabilities, jose
from shared.errors import InvalidGrant, InvalidRequest, Unavailable

MAX_DOCUMENT_BYTES = 512 * 1024
ALGS = {"RS256": ("RS256",), "PS256": ("PS256",), "ES256": ("ES256",), "EdDSA": ("EdDSA", "Ed25519")}


@dataclass
class _Keys:
    keys: dict[str, Any] = field(default_factory=dict)
    fetched_at: float = 0.0


class IdpTrust:
    def __init__(self, pool: asyncpg.Pool, *, insecure_hosts: Iterable[str] = (), refetch_interval_s: float = 30.0) -> None:
        self._pool = pool
        self._insecure = set(insecure_hosts)
        self._interval = refetch_interval_s
        self._client = httpx.AsyncClient(timeout=5.0, follow_redirects=False)
        self._idps: dict[str, dict[str, IdentityProvider]] = {}
        self._keys: dict[str, _Keys] = {}

    def forget(self, tenant: str) -> None:
        self._idps.pop(tenant, None)

    async def close(self) -> None:
        await self._client.aclose()

    async def providers(self, tenant: str) -> dict[str, IdentityProvider]:
        if tenant not in self._idps:
            rows = await self._pool.fetch("SELECT issuer, config FROM token.idps WHERE tenant = $1", tenant)
            self._idps[tenant] = {r["issuer"]: msgspec.convert(r["config"], IdentityProvider) for r in rows}
        return self._idps[tenant]

    def check_urls(self, idp: IdentityProvider) -> None:
        if not (idp.discovery_url or idp.jwks_uri):
            raise InvalidRequest("an identity provider needs a discovery URL or a JWKS URL")
        for url in (idp.issuer, idp.discovery_url, idp.jwks_uri):
            if url is not None:
                self._safe(url)

    def _safe(self, url: str) -> None:
        parts = urlsplit(url)
        if parts.scheme == "https" or (parts.scheme == "http" and parts.hostname in self._insecure):
            return
        raise InvalidRequest(f"identity provider URLs must be https: {url}")

    async def verify(self, tenant: str, token: str, *, now: float | None = None) -> tuple[dict[str, Any], IdentityProvider]:
        """The user token's claims and its provider. Raises InvalidGrant (or Unavailable when the
        provider's keys cannot be fetched)."""
        try:
            header, claims, _ = jose.split(token)
        except jose.JoseError as exc:
            raise InvalidGrant("subject token is malformed") from exc
        idp = (await self.providers(tenant)).get(claims.get("iss"))  # type: ignore[arg-type]
        if idp is None:
            raise InvalidGrant("subject token issuer is not trusted by this tenant")
        key = await self._key(idp, header.get("kid"))
        algorithms = [a for name in idp.algorithms for a in ALGS[name]]
        try:
            jose.verify(token, key, algorithms=algorithms, typ=None, issuer=idp.issuer, require=("exp", "sub", "aud"),
                        leeway=30, now=(lambda: now) if now is not None else time.time)
        except jose.JoseError as exc:
            raise InvalidGrant(f"subject token rejected: {exc.reason}") from exc
        audiences = claims["aud"] if isinstance(claims["aud"], list) else [claims["aud"]]
        if not set(audiences) & set(idp.audiences):
            raise InvalidGrant("subject token is for another audience")
        return claims, idp

    async def _key(self, idp: IdentityProvider, kid: Any) -> Any:
        if not isinstance(kid, str) or not kid:
            raise InvalidGrant("subject token names no key")
        cached = self._keys.setdefault(idp.issuer, _Keys())
        if kid not in cached.keys and time.monotonic() - cached.fetched_at >= self._interval:
            cached.keys = await self._fetch(idp)
            cached.fetched_at = time.monotonic()
        key = cached.keys.get(kid)
        if key is None:
            raise InvalidGrant("subject token signed by a key its issuer does not publish")
        return key

    async def _fetch(self, idp: IdentityProvider) -> dict[str, Any]:
        jwks_uri = idp.jwks_uri
        if idp.discovery_url is not None:
            discovery = await self._get_json(idp.discovery_url)
            if discovery.get("issuer") != idp.issuer:  # mix-up defence
                raise InvalidGrant("discovery document names another issuer")
            jwks_uri = discovery.get("jwks_uri")
        if not isinstance(jwks_uri, str):
            raise Unavailable("identity provider publishes no JWKS")
        keys: dict[str, Any] = {}
        for entry in (await self._get_json(jwks_uri)).get("keys", []):
            if not isinstance(entry, dict) or not isinstance(entry.get("kid"), str) or entry.get("use", "sig") != "sig":
                continue
            try:
                keys[entry["kid"]] = jwt.PyJWK(entry).key
            except (jwt.PyJWKError, jwt.InvalidKeyError, ValueError, TypeError):
                continue  # a key we cannot use is skipped, not trusted
        return keys

    async def _get_json(self, url: str) -> dict[str, Any]:
        self._safe(url)
        try:
            async with self._client.stream("GET", url, headers={"Accept": "application/json"}) as resp:
                if resp.status_code != 200:
                    raise Unavailable(f"identity provider answered HTTP {resp.status_code}")
                body = b""
                async for chunk in resp.aiter_bytes():
                    body += chunk
                    if len(body) > MAX_DOCUMENT_BYTES:
                        raise Unavailable("identity provider document too large")
        except httpx.HTTPError as exc:
            raise Unavailable("identity provider unreachable") from exc
        try:
            return jose.parse_json_object(body)
        except jose.JoseError as exc:
            raise Unavailable("identity provider document is not JSON") from exc


def user_grant(claims: dict[str, Any], idp: IdentityProvider) -> list[capabilities.Capability]:
    """What the user's scopes and groups let agents do for them (the tenant's mapping)."""
    scope = claims.get("scope", claims.get("scp", []))
    scopes = scope.split() if isinstance(scope, str) else [s for s in scope if isinstance(s, str)]
    groups_claim = claims.get(idp.groups_claim, [])
    groups = [g for g in groups_claim if isinstance(g, str)] if isinstance(groups_claim, list) else []
    details = [d for s in scopes for d in idp.scope_grants.get(s, [])]
    details += [d for g in groups for d in idp.group_grants.get(g, [])]
    return capabilities.parse_authorization_details(details) if details else []
