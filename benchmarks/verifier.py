"""Resource-server verification rate on one core, next to its floor measured in the same run.

    python -m benchmarks.verifier [--n 5000] [--agent-alg EdDSA|ES256]

A full check is `Verifier.verify`: token (signature, claims, details), DPoP proof (signature and
every RFC 9449 check), the operation within the details, and the replay-cache insert.
  - cold:   a different token every call (the token cache never hits);
  - cached: one token, a fresh proof every call (the token's signature is checked once).
The floor is the raw signature verifications a check cannot avoid: two (token + proof) cold, one
cached. Rates are CPU time of this process, so other load on the machine matters less.
"""

from __future__ import annotations

import argparse
import asyncio
import time
from typing import Any

from agentid.jwks import StaticJwks
from agentid.verifier import Verifier
from shared import jose
from shared.capabilities import Capability, to_rar
from shared.dpop import make_proof
from shared.ids import new_id
from shared.keys import PrivateKey

ISSUER = "https://agentid.example/tenants/bench"
AUDIENCE = "https://ledger.example"
URL = "https://ledger.example/accounts/42"
DETAILS = [to_rar(Capability(type="ledger", resource="https://ledger.example/accounts/*", actions=frozenset({"read"})))]


def mint_token(signer: PrivateKey, agent: PrivateKey) -> str:
    """An access token in the token worker's format, DPoP-bound to `agent`."""
    now = int(time.time())
    sub = f"spiffe://bench.example/agent/agt_{new_id()}"
    return jose.sign({"iss": ISSUER, "sub": sub, "aud": AUDIENCE, "iat": now, "nbf": now, "exp": now + 300,
                      "jti": new_id(), "client_id": sub, "tenant": "bench", "authorization_details": DETAILS,
                      "cnf": {"jkt": agent.public.thumbprint}, "agent_did": agent.public.did},
                     signer, typ="at+jwt", kid=signer.public.thumbprint)


async def _rate(verifier: Verifier, calls: list[tuple[str, str]]) -> float:
    start = time.process_time()
    for authorization, proof in calls:
        await verifier.verify("GET", URL, authorization, proof, action="read", resource=URL)
    return len(calls) / (time.process_time() - start)


def _floor(key: PrivateKey, n: int) -> float:
    data = b"x" * 600
    sig = key.sign(data)
    start = time.process_time()
    for _ in range(n):
        key.public.verify(sig, data)
    return n / (time.process_time() - start)


async def run(n: int, agent_alg: str) -> dict[str, Any]:
    signer, agent = PrivateKey.generate(), PrivateKey.generate(agent_alg)  # type: ignore[arg-type]
    jwks = {"keys": [signer.public.jwk(kid=signer.public.thumbprint, use="sig", alg="EdDSA")]}
    verifier = Verifier(issuer=ISSUER, audience=AUDIENCE, jwks=StaticJwks(jwks), token_cache_size=2 * n)
    tokens = [mint_token(signer, agent) for _ in range(n)]
    cold = [(f"DPoP {t}", make_proof(agent, "GET", URL, access_token=t)) for t in tokens]
    one = tokens[0]
    cached = [(f"DPoP {one}", make_proof(agent, "GET", URL, access_token=one)) for _ in range(n)]
    await verifier.verify("GET", URL, *cached.pop(), action="read", resource=URL)  # warm: keys, caches
    token_floor, proof_floor = _floor(signer, n), _floor(agent, n)
    return {
        "cold_per_s": await _rate(verifier, cold),
        "cached_per_s": await _rate(verifier, cached),
        "floor_cold_per_s": 1 / (1 / token_floor + 1 / proof_floor),
        "floor_cached_per_s": proof_floor,
    }


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--n", type=int, default=5000)
    p.add_argument("--agent-alg", choices=["EdDSA", "ES256"], default="EdDSA")
    args = p.parse_args()
    r = asyncio.run(run(args.n, args.agent_alg))
    print(f"verify, cold   (token + proof + details + replay): {r['cold_per_s']:8.0f}/s"
          f"   floor (2 signature checks): {r['floor_cold_per_s']:8.0f}/s")
    print(f"verify, cached (proof + details + replay):         {r['cached_per_s']:8.0f}/s"
          f"   floor (1 signature check):  {r['floor_cached_per_s']:8.0f}/s")


if __name__ == "__main__":
    main()
