"""Access tokens in the token worker's format, minted locally: resource-server tests need no stack.

    issuer = TokenFactory()
    agent = PrivateKey.generate()
    token = issuer.mint(agent)                               # DPoP-bound to `agent`
    verifier = Verifier(issuer=issuer.issuer, audience=issuer.audience, jwks=StaticJwks(issuer.jwks))
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Mapping
from typing import Any

from shared import jose
from shared.capabilities import Capability, to_rar
from shared.ids import new_id
from shared.keys import PrivateKey

TENANT = "acme"
ISSUER = f"https://agentid.example/tenants/{TENANT}"
AUDIENCE = "https://ledger.example"
TRUST_DOMAIN = "acme.agentid.example"

DEFAULT_DETAILS = (
    Capability(type="ledger", resource="https://ledger.example/accounts/*", actions={"read"}),
    Capability(type="ledger", resource="https://ledger.example/payments", actions={"pay"},
               constraints={"amount": {"value": "50", "currency": "EUR"}}),
)


def spiffe_id(agent_id: str | None = None) -> str:
    return f"spiffe://{TRUST_DOMAIN}/agent/{agent_id or 'agt_' + new_id()}"


class TokenFactory:
    """A token signing key, its JWKS, and tokens in the contract format (overridable claim by claim)."""

    def __init__(self, *, issuer: str = ISSUER, audience: str = AUDIENCE, tenant: str = TENANT,
                 alg: str = "EdDSA") -> None:
        self.issuer = issuer
        self.audience = audience
        self.tenant = tenant
        self.key = PrivateKey.generate(alg)  # type: ignore[arg-type]
        self.kid = self.key.public.thumbprint

    @property
    def jwks(self) -> dict[str, Any]:
        return {"keys": [self.jwk()]}

    def jwk(self) -> dict[str, Any]:
        return self.key.public.jwk(kid=self.kid, use="sig", alg=self.key.alg)

    def claims(self, agent: PrivateKey | None = None, *, sub: str | None = None,
               details: Iterable[Capability] = DEFAULT_DETAILS, now: float | None = None,
               lifetime: int = 300, **overrides: Any) -> dict[str, Any]:
        iat = int(time.time() if now is None else now)
        sub = sub or spiffe_id()
        claims: dict[str, Any] = {
            "iss": self.issuer, "sub": sub, "aud": self.audience, "iat": iat, "nbf": iat,
            "exp": iat + lifetime, "jti": new_id(), "client_id": sub, "tenant": self.tenant,
            "authorization_details": [to_rar(c) for c in details],
            "cnf": {"jkt": agent.public.thumbprint} if agent is not None else {},
            "agent_did": agent.public.did if agent is not None else "did:key:zunknown",
        }
        claims.update(overrides)
        return {k: v for k, v in claims.items() if v is not _DROP}

    def mint(self, agent: PrivateKey | None = None, *, typ: str = "at+jwt", kid: str | None = None,
             key: PrivateKey | None = None, headers: Mapping[str, Any] | None = None, alg: str | None = None,
             **claims: Any) -> str:
        """A signed token; pass `claim=DROP` to leave a claim out, `key=` to sign with another key."""
        return jose.sign(self.claims(agent, **claims), key or self.key, typ=typ,
                         kid=self.kid if kid is None else kid, headers=headers, alg=alg)


class _Drop:
    def __repr__(self) -> str:
        return "DROP"


_DROP = _Drop()
DROP: Any = _DROP
