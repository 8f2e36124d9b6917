"""Calling a resource server with a DPoP-bound token: a proof per request, and an httpx auth class.

    auth = DpopAuth(agent.key, lambda: agent.token(...))     # sync or async token source
    async with httpx.AsyncClient(auth=auth) as http:
        await http.get("https://ledger.example/accounts/42")

Each request gets `Authorization: DPoP <token>` and a fresh `DPoP` proof (new `jti`, `htm`, `htu`
without query or fragment, `ath` of that token). A server nonce (`DPoP-Nonce`, on any response)
is remembered per origin and put in later proofs; a `use_dpop_nonce` refusal is retried once with
the nonce it carries.
"""

from __future__ import annotations

import inspect
import re
from collections.abc import AsyncGenerator, Awaitable, Callable, Generator
from typing import Any

import httpx

from shared.dpop import make_proof
from shared.keys import PrivateKey

__all__ = ["DpopAuth", "dpop_proof"]

# `use_dpop_nonce` exists only in DPoP challenges, so its presence is the signal.
_USE_NONCE = re.compile(r'\berror\s*=\s*"?use_dpop_nonce\b')
_MAX_ORIGINS = 256

TokenSource = Callable[[], str | Awaitable[str]]


def _private(key: Any) -> PrivateKey:
    return key if isinstance(key, PrivateKey) else key.private  # an `AgentKey`


def dpop_proof(key: PrivateKey | Any, method: str, url: str, token: str | None = None, *,
               nonce: str | None = None, alg: str | None = None) -> str:
    """A DPoP proof for one request with `token` (its `ath`), signed with the agent's key."""
    return make_proof(_private(key), method, url, access_token=token, nonce=nonce, alg=alg)


class DpopAuth(httpx.Auth):
    """httpx authentication for DPoP-bound tokens (`key`: a `PrivateKey` or an `AgentKey`)."""

    def __init__(self, key: PrivateKey | Any, token: TokenSource, *, alg: str | None = None) -> None:
        self._key = _private(key)
        self._token = token
        self._alg = alg
        self._nonces: dict[tuple[bytes, bytes, int | None], str] = {}

    def _sign(self, request: httpx.Request, token: str) -> None:
        origin = (request.url.raw_scheme, request.url.raw_host, request.url.port)
        proof = make_proof(self._key, request.method, str(request.url.copy_with(query=None, fragment=None)),
                           access_token=token, nonce=self._nonces.get(origin), alg=self._alg)
        request.headers["Authorization"] = f"DPoP {token}"
        request.headers["DPoP"] = proof

    def _learn(self, request: httpx.Request, response: httpx.Response) -> bool:
        """Remember the server's nonce; True when the response asks for a retry with it."""
        nonce = response.headers.get("dpop-nonce")
        if not nonce:
            return False
        origin = (request.url.raw_scheme, request.url.raw_host, request.url.port)
        if origin not in self._nonces and len(self._nonces) >= _MAX_ORIGINS:
            self._nonces.pop(next(iter(self._nonces)))
        self._nonces[origin] = nonce
        return response.status_code == 401 and bool(
            _USE_NONCE.search(", ".join(response.headers.get_list("www-authenticate"))))

    def _flow(self, request: httpx.Request, token: str) -> Generator[httpx.Request, httpx.Response, None]:
        self._sign(request, token)
        response = yield request
        if self._learn(request, response):
            self._sign(request, token)  # a new proof: new jti, the server's nonce
            response = yield request
            self._learn(request, response)

    def sync_auth_flow(self, request: httpx.Request) -> Generator[httpx.Request, httpx.Response, None]:
        token = self._token()
        if inspect.isawaitable(token):
            if inspect.iscoroutine(token):
                token.close()  # never awaited: close it rather than leak it
            raise TypeError("an async token source needs an async httpx client")
        yield from self._flow(request, token)

    async def async_auth_flow(self, request: httpx.Request) -> AsyncGenerator[httpx.Request, httpx.Response]:
        token = self._token()
        if inspect.isawaitable(token):
            token = await token
        flow = self._flow(request, token)
        outgoing = next(flow)
        while True:
            response = yield outgoing
            try:
                outgoing = flow.send(response)
            except StopIteration:
                return
