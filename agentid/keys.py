"""`AgentKey`: the key pair an agent runtime makes for itself. The private half never leaves it."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from shared.keys import Alg, PrivateKey
from shared.possession import renew_proof, spawn_proof


class AgentKey:
    """An agent's own signing key (Ed25519 by default, or P-256 with `alg="ES256"`)."""

    def __init__(self, private: PrivateKey) -> None:
        self._private = private

    @classmethod
    def generate(cls, alg: Alg = "EdDSA") -> AgentKey:
        return cls(PrivateKey.generate(alg))

    @classmethod
    def from_jwk(cls, jwk: Mapping[str, Any]) -> AgentKey:
        return cls(PrivateKey.from_jwk(jwk))

    @classmethod
    def from_pem(cls, pem: str | bytes) -> AgentKey:
        return cls(PrivateKey.from_pem(pem))

    @property
    def private(self) -> PrivateKey:
        return self._private

    @property
    def public_jwk(self) -> dict[str, Any]:
        return self._private.public.jwk()

    @property
    def thumbprint(self) -> str:
        """RFC 7638 thumbprint: the key id, and `cnf.jkt` in tokens bound to this key."""
        return self._private.public.thumbprint

    @property
    def did(self) -> str:
        return self._private.public.did

    def spawn_proof(self, *, spawn_id: str, orchestrator: str, tenant: str) -> str:
        """Proof that this key's holder asks `orchestrator` (its SPIFFE ID) to spawn it."""
        return spawn_proof(self._private, spawn_id=spawn_id, orchestrator=orchestrator, tenant=tenant)

    def renew_proof(self, *, agent_id: str, tenant: str) -> str:
        return renew_proof(self._private, agent_id=agent_id, tenant=tenant)

    def __repr__(self) -> str:
        return f"AgentKey({self._private.alg}, {self.thumbprint})"
