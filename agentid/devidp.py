"""A small local OpenID Connect provider for demos and tests: discovery and JWKS over real HTTP,
RS256 user tokens (as most providers sign), keys that rotate. Not for production: it signs
whatever it is asked to."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Iterable
from typing import Any

import jwt
import uvicorn
from cryptography.hazmat.primitives.asymmetric import rsa
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from shared.embedded import free_port


class DevIdp:
    def __init__(self, *, port: int | None = None) -> None:
        self.port = port or free_port()
        self.issuer = f"http://127.0.0.1:{self.port}"
        self._keys: list[tuple[str, rsa.RSAPrivateKey]] = []
        self.rotate()
        self._server: uvicorn.Server | None = None
        self._task: asyncio.Task[None] | None = None

    def rotate(self) -> str:
        """A new signing key; the previous ones stay published, as providers do during rollover."""
        kid = uuid.uuid4().hex[:16]
        self._keys.insert(0, (kid, rsa.generate_private_key(public_exponent=65537, key_size=2048)))
        return kid

    def jwks(self) -> dict[str, Any]:
        keys = []
        for kid, key in self._keys:
            jwk = jwt.algorithms.RSAAlgorithm.to_jwk(key.public_key(), as_dict=True)
            keys.append({**jwk, "kid": kid, "use": "sig", "alg": "RS256"})
        return {"keys": keys}

    def mint(self, sub: str, *, audience: str, scopes: Iterable[str] = (), groups: Iterable[str] = (),
             lifetime_s: int = 600, may_act: dict[str, Any] | None = None, extra: dict[str, Any] | None = None,
             now: float | None = None) -> str:
        """A user's ID-token-like JWT from this provider."""
        iat = int(time.time() if now is None else now)
        claims: dict[str, Any] = {"iss": self.issuer, "sub": sub, "aud": audience, "iat": iat, "exp": iat + lifetime_s,
                                  "scope": " ".join(scopes), "groups": list(groups)}
        if may_act is not None:
            claims["may_act"] = may_act
        claims.update(extra or {})
        kid, key = self._keys[0]
        return jwt.encode(claims, key, algorithm="RS256", headers={"kid": kid})

    def app(self) -> Starlette:
        async def discovery(request: Request) -> JSONResponse:
            return JSONResponse({"issuer": self.issuer, "jwks_uri": f"{self.issuer}/jwks.json",
                                 "id_token_signing_alg_values_supported": ["RS256"],
                                 "response_types_supported": ["id_token"], "subject_types_supported": ["public"]})

        async def jwks(request: Request) -> JSONResponse:
            return JSONResponse(self.jwks())

        return Starlette(routes=[Route("/.well-known/openid-configuration", discovery), Route("/jwks.json", jwks)])

    @property
    def discovery_url(self) -> str:
        return f"{self.issuer}/.well-known/openid-configuration"

    async def start(self) -> None:
        config = uvicorn.Config(self.app(), host="127.0.0.1", port=self.port, log_level="warning", lifespan="off")
        self._server = uvicorn.Server(config)
        self._task = asyncio.create_task(self._server.serve())
        while not self._server.started:
            if self._task.done():
                self._task.result()
            await asyncio.sleep(0.01)

    async def stop(self) -> None:
        if self._server is not None and self._task is not None:
            self._server.should_exit = True
            await self._task
