"""Token signing keys for resource servers: where a JWKS comes from, and the loaded, cached keys.

A `JwksSource` fetches the JWKS document: `HttpJwks` (the gateway's `jwks_uri`), `BusJwks` (the
token worker over NATS), `StaticJwks` and `CallableJwks` (tests, embedding). `KeyStore` turns the
document into key objects once per fetch, so a verification is a dict lookup, and decides when to
fetch again:
  - every `refresh_s` (keys are rotated with overlap, so a periodic refresh picks up new ones);
  - when a token names an unknown `kid`: one refetch, at most once per `min_refetch_s`, so random
    `kid`s cannot turn verifiers into a flood of JWKS requests;
  - concurrent callers share one fetch in flight.
A failed refresh keeps the known keys for up to `max_stale_s`, then refuses (the JWKS may have
dropped a compromised key we cannot hear about). Keys are never chosen by the token's own `iss`,
`jku` or `x5u`: the source is configured.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any, Protocol

import httpx

from shared import jose
from shared.keys import InvalidKey, PublicKey
from shared.oauth_errors import TemporarilyUnavailableError

log = logging.getLogger(__name__)

MAX_JWKS_BYTES = 64 * 1024
MAX_KEYS = 32
MAX_KID_CHARS = 128
_ALGS_FOR = {"EdDSA": frozenset({"EdDSA", "Ed25519"}), "ES256": frozenset({"ES256"})}


class JwksSource(Protocol):
    async def fetch(self) -> Mapping[str, Any]:
        """The current JWKS document (`{"keys": [...]}`); raise on any failure."""
        ...


class StaticJwks:
    def __init__(self, jwks: Mapping[str, Any]) -> None:
        self.jwks = jwks

    async def fetch(self) -> Mapping[str, Any]:
        return self.jwks


class CallableJwks:
    """Any `async () -> dict`: how an embedder plugs in its own transport."""

    def __init__(self, fetch: Callable[[], Awaitable[Mapping[str, Any]]]) -> None:
        self._fetch = fetch

    async def fetch(self) -> Mapping[str, Any]:
        return await self._fetch()


class HttpJwks:
    """The JWKS at `url`, over HTTPS. Redirects are not followed and bodies are bounded."""

    def __init__(self, url: str, *, client: httpx.AsyncClient | None = None, timeout: float = 5.0,
                 max_bytes: int = MAX_JWKS_BYTES) -> None:
        self.url = url
        self._client = client
        self._own_client = client is None
        self._timeout = timeout
        self._max_bytes = max_bytes

    async def fetch(self) -> Mapping[str, Any]:
        if self._client is None:
            self._client = httpx.AsyncClient(timeout=self._timeout, follow_redirects=False)
        async with self._client.stream("GET", self.url, headers={"Accept": "application/json"}) as resp:
            if resp.status_code != 200:
                raise ValueError(f"JWKS answered {resp.status_code}")
            body = bytearray()
            async for chunk in resp.aiter_bytes():
                body += chunk
                if len(body) > self._max_bytes:
                    raise ValueError("JWKS document too large")
        return jose.parse_json_object(bytes(body))

    async def aclose(self) -> None:
        if self._own_client and self._client is not None:
            await self._client.aclose()
            self._client = None


class BusJwks:
    """The token worker's JWKS for `tenant`, over the signed bus (route `token.jwks`)."""

    def __init__(self, bus: Any, tenant: str) -> None:
        self._bus = bus
        self._tenant = tenant

    async def fetch(self) -> Mapping[str, Any]:
        # Imported here: the route belongs to the token worker's contracts.
        from contracts import subjects as sub
        from contracts import tokens

        reply = await self._bus.request(sub.TOKEN_JWKS, self._tenant, tokens.GetJwks())
        return {"keys": list(reply.keys)}


@dataclass(frozen=True, slots=True)
class VerificationKey:
    kid: str
    key: PublicKey
    algs: frozenset[str]  # the JWS `alg` values this key may verify


def parse_jwks(doc: Mapping[str, Any]) -> dict[str, VerificationKey]:
    """The usable signature keys of a JWKS, by `kid`.

    Keys we cannot use are skipped, not fatal (a JWKS may carry RSA keys or encryption keys for
    others): wrong `use`, `key_ops` without `verify`, unsupported type, an `alg` that does not fit
    the key, private members. A `kid` listed twice is dropped altogether: which key it names would
    be ambiguous. A document that is not a JWKS, or has more than `MAX_KEYS` keys, raises ValueError.
    """
    keys = doc.get("keys") if isinstance(doc, Mapping) else None
    if not isinstance(keys, list):
        raise ValueError("not a JWKS document")  # noqa: TRY004 - a bad document from the network is a bad value
    if len(keys) > MAX_KEYS:
        raise ValueError("too many keys in the JWKS")
    out: dict[str, VerificationKey] = {}
    duplicated: set[str] = set()
    for jwk in keys:
        if not isinstance(jwk, dict):
            continue
        kid = jwk.get("kid")
        if not isinstance(kid, str) or not 1 <= len(kid) <= MAX_KID_CHARS:
            continue
        if jwk.get("use", "sig") != "sig":
            continue
        ops = jwk.get("key_ops")
        if ops is not None and (not isinstance(ops, list) or "verify" not in ops):
            continue
        try:
            key = PublicKey.from_jwk(jwk)
        except InvalidKey:
            continue
        algs = _ALGS_FOR[key.alg]
        if "alg" in jwk and jwk["alg"] not in algs:
            continue
        if kid in out or kid in duplicated:
            duplicated.add(kid)
            out.pop(kid, None)
            continue
        out[kid] = VerificationKey(kid, key, algs)
    return out


class KeyStore:
    """The loaded keys of one `JwksSource` (see the module docstring for when it fetches)."""

    def __init__(self, source: JwksSource, *, refresh_s: float = 300.0, min_refetch_s: float = 30.0,
                 max_stale_s: float = 3600.0, clock: Callable[[], float] = time.monotonic) -> None:
        self.source = source
        self._refresh_s = refresh_s
        self._min_refetch_s = min_refetch_s
        self._max_stale_s = max_stale_s
        self._clock = clock
        self._keys: dict[str, VerificationKey] | None = None
        self._fetched_at = 0.0     # last successful fetch
        self._attempted_at = -1e18  # last attempt, successful or not
        self._last_miss_fetch = -1e18
        self._inflight: asyncio.Future[None] | None = None
        self._listeners: list[Callable[[], None]] = []
        self.fetches = 0  # successful and failed, for tests and metrics

    def on_change(self, listener: Callable[[], None]) -> None:
        """Call `listener` whenever the set of keys changes (verifiers drop cached tokens)."""
        self._listeners.append(listener)

    async def get(self, kid: str) -> VerificationKey | None:
        """The key named `kid`, or None when the JWKS does not have it (after at most one refetch)."""
        now = self._clock()
        if self._keys is None or now - self._attempted_at >= self._refresh_s:
            await self._fetch(required=self._keys is None)
        keys = self._usable(now)
        found = keys.get(kid)
        if found is not None:
            return found
        if self._inflight is not None:
            await asyncio.shield(self._inflight)
            return self._usable(now).get(kid)
        if now - self._last_miss_fetch < self._min_refetch_s:
            return None
        self._last_miss_fetch = now
        await self._fetch(required=False)
        return self._usable(self._clock()).get(kid)

    async def refresh(self) -> None:
        """Fetch now (for start-up, or an operator's push); raises when the source fails."""
        await self._fetch(required=True)

    def _usable(self, now: float) -> dict[str, VerificationKey]:
        if self._keys is None or now - self._fetched_at > self._max_stale_s:
            raise TemporarilyUnavailableError("jwks_unavailable", "the token signing keys are unavailable")
        return self._keys

    async def _fetch(self, *, required: bool) -> None:
        if self._inflight is None:
            self._inflight = asyncio.ensure_future(self._do_fetch())
            self._inflight.add_done_callback(self._clear_inflight)
        try:
            await asyncio.shield(self._inflight)
        except Exception as exc:
            log.warning("JWKS fetch failed: %s", type(exc).__name__)
            if required:
                raise TemporarilyUnavailableError("jwks_unavailable",
                                                  "the token signing keys are unavailable") from exc

    def _clear_inflight(self, fut: asyncio.Future[None]) -> None:
        self._inflight = None
        if not fut.cancelled():
            fut.exception()  # retrieved here so a failure nobody awaited is not reported as lost

    async def _do_fetch(self) -> None:
        self._attempted_at = self._clock()
        self.fetches += 1
        keys = parse_jwks(await self.source.fetch())
        changed = self._keys is not None and {
            k: v.key for k, v in keys.items()} != {k: v.key for k, v in self._keys.items()}
        self._keys = keys
        self._fetched_at = self._clock()
        if changed:
            for listener in self._listeners:
                listener()
