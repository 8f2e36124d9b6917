"""Verifying agent credentials and presentations, offline but for status lists and did:web.

    verified = await verify_credential(vc_jwt, trusted_issuers={issuer_did})
    vp = await agent.present(audience="https://tool.example", nonce=nonce)
    result = await verify_presentation(vp, audience="https://tool.example", nonce=nonce,
                                       trusted_issuers={issuer_did})

Failures raise `CredentialError` with a stable `reason` (see shared/vc.py). Status lists are cached
for `ttl_s` (the list's own `ttl`, at most): a revocation is seen once the list is fetched again, so
the cache time is the longest a verifier may keep trusting a revoked credential.
"""

from __future__ import annotations

import re
import time
from collections.abc import Iterable, Mapping
from typing import Any
from urllib.parse import urlsplit

import httpx

from contracts import issuance as iss
from contracts import subjects as sub
from shared.bus import Bus
from shared.did import DidError
from shared.jose import parse_json_object
from shared.vc import (
    CredentialError, DidResolver, StatusFetcher, VerifiedCredential, VerifiedPresentation,
)
from shared.vc import verify_credential as _verify_credential
from shared.vc import verify_presentation as _verify_presentation

MAX_DOCUMENT_BYTES = 1024 * 1024
_LIST_PATH = re.compile(r"/tenants/([a-z0-9][a-z0-9_-]{0,62})/status-lists/([A-Za-z0-9_-]{1,64})")
_DID_PATH = re.compile(r"/tenants/([a-z0-9][a-z0-9_-]{0,62})/did\.json")

__all__ = ["BusFetcher", "CredentialError", "HttpFetcher", "StatusListCache", "VerifiedCredential",
           "VerifiedPresentation", "verify_credential", "verify_presentation"]


class HttpFetcher:
    """Fetches status lists and did:web documents over HTTPS: no redirects, bounded size and time.
    Plain HTTP only for hosts named in `insecure_hosts` (for a gateway on loopback)."""

    def __init__(self, *, insecure_hosts: Iterable[str] = (), timeout: float = 5.0) -> None:
        self._insecure = set(insecure_hosts)
        self._client = httpx.AsyncClient(timeout=timeout, follow_redirects=False)

    def _check(self, url: str) -> None:
        parts = urlsplit(url)
        if parts.scheme == "https" or (parts.scheme == "http" and parts.hostname in self._insecure):
            return
        raise DidError(f"refusing to fetch {parts.scheme}:// URL")

    async def _get(self, url: str, accept: str) -> bytes:
        self._check(url)
        async with self._client.stream("GET", url, headers={"Accept": accept}) as resp:
            if resp.status_code != 200:
                raise DidError(f"GET {url}: HTTP {resp.status_code}")
            body = b""
            async for chunk in resp.aiter_bytes():
                body += chunk
                if len(body) > MAX_DOCUMENT_BYTES:
                    raise DidError("response too large")
        return body

    async def status_list(self, url: str) -> str:
        return (await self._get(url, "application/vc+jwt")).decode("ascii").strip()

    async def did_document(self, url: str) -> Mapping[str, Any]:
        return parse_json_object(await self._get(url, "application/did+json"))

    async def aclose(self) -> None:
        await self._client.aclose()


class BusFetcher:
    """Resolves agentid status-list and did:web URLs through the bus instead of HTTP (inside a
    deployment, or before its gateway runs)."""

    def __init__(self, bus: Bus) -> None:
        self._bus = bus

    async def status_list(self, url: str) -> str:
        m = _LIST_PATH.fullmatch(urlsplit(url).path)
        if not m:
            raise DidError("not an agentid status list URL")
        record = await self._bus.request(sub.GET_STATUS_LIST, m.group(1), iss.GetStatusList(list_id=m.group(2)))
        return record.vc_jwt

    async def did_document(self, url: str) -> Mapping[str, Any]:
        m = _DID_PATH.fullmatch(urlsplit(url).path)
        if not m:
            raise DidError("not an agentid did:web URL")
        return (await self._bus.request(sub.GET_ISSUER, m.group(1), iss.GetIssuer())).did_document


class StatusListCache:
    """Caches fetched status lists for `ttl_s`; `invalidate()` forces the next fetch."""

    def __init__(self, fetch: StatusFetcher, ttl_s: float = 300.0) -> None:
        self._fetch = fetch
        self._ttl = ttl_s
        self._lists: dict[str, tuple[float, str]] = {}

    async def __call__(self, url: str) -> str:
        hit = self._lists.get(url)
        if hit is not None and hit[0] > time.monotonic():
            return hit[1]
        list_jwt = await self._fetch(url)
        self._lists[url] = (time.monotonic() + self._ttl, list_jwt)
        return list_jwt

    def invalidate(self) -> None:
        self._lists.clear()


Fetcher = HttpFetcher | BusFetcher


async def verify_credential(vc_jwt: str, *, trusted_issuers: Iterable[str], fetcher: Fetcher | None = None,
                            status: StatusFetcher | None = None, check_status: bool = True,
                            now: float | None = None) -> VerifiedCredential:
    """Verify an agent credential: signature by a trusted issuer (did:key, or did:web through
    `fetcher`), validity window, and revocation status (fails closed)."""
    fetcher = fetcher or HttpFetcher()
    return await _verify_credential(
        vc_jwt, resolver=DidResolver(fetcher.did_document), trusted_issuers=trusted_issuers,
        status_fetcher=status or fetcher.status_list, check_status=check_status, now=now)


async def verify_presentation(vp_jwt: str, *, audience: str, nonce: str, trusted_issuers: Iterable[str],
                              fetcher: Fetcher | None = None, status: StatusFetcher | None = None,
                              now: float | None = None) -> VerifiedPresentation:
    """Verify a presentation: holder signature, audience, nonce, holder binding, and every credential."""
    fetcher = fetcher or HttpFetcher()
    return await _verify_presentation(
        vp_jwt, audience=audience, nonce=nonce, resolver=DidResolver(fetcher.did_document),
        trusted_issuers=trusted_issuers, status_fetcher=status or fetcher.status_list, now=now)
