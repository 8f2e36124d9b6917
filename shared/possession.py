"""Proof of possession of an agent key, made by the agent runtime and checked by registration.

A spawn proof is a compact JWS (`typ` `agentid-spawn+jwt`) signed with the agent's own key over the
spawn id, the orchestrator's SPIFFE ID and the tenant, short-lived. It shows the key's holder asked
to be spawned by this orchestrator, in this tenant, for this spawn and nothing else: it cannot be
replayed for another spawn, orchestrator or tenant. A renewal proof (`agentid-renew+jwt`) binds the
agent id and a fresh nonce instead.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from shared import jose
from shared.errors import InvalidProof
from shared.ids import new_id
from shared.keys import PrivateKey, PublicKey

SPAWN_TYP = "agentid-spawn+jwt"
RENEW_TYP = "agentid-renew+jwt"
PROOF_LIFETIME_S = 300


def spawn_proof(key: PrivateKey, *, spawn_id: str, orchestrator: str, tenant: str,
                now: float | None = None) -> str:
    iat = int(time.time() if now is None else now)
    claims = {"spawn_id": spawn_id, "orchestrator": orchestrator, "tenant": tenant,
              "iat": iat, "exp": iat + PROOF_LIFETIME_S, "jti": new_id()}
    return jose.sign(claims, key, typ=SPAWN_TYP)


def renew_proof(key: PrivateKey, *, agent_id: str, tenant: str, now: float | None = None) -> str:
    iat = int(time.time() if now is None else now)
    claims = {"agent_id": agent_id, "tenant": tenant, "iat": iat,
              "exp": iat + PROOF_LIFETIME_S, "jti": new_id()}
    return jose.sign(claims, key, typ=RENEW_TYP)


def check_proof(proof: str, key: PublicKey, *, typ: str, expect: dict[str, str],
                now: Callable[[], float] = time.time) -> dict[str, object]:
    """Verify a proof made with `key` whose claims include `expect`. Raises InvalidProof."""
    try:
        _, claims = jose.verify(proof, key, algorithms=jose.algs_for(key), typ=typ,
                                require=("iat", "exp", "jti"), leeway=30, now=now,
                                max_age=PROOF_LIFETIME_S)
    except jose.JoseError as exc:
        raise InvalidProof(f"proof of possession rejected: {exc.reason}") from exc
    for name, value in expect.items():
        if claims.get(name) != value:
            raise InvalidProof(f"proof of possession is for another {name}")
    return claims
