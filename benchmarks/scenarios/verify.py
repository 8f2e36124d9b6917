"""The SDK `Verifier` on one core: token + DPoP proof + details + replay check, per call.

- `verify_cold`: a different token every call (the verified-token cache never hits); floor = the
  two signature verifications a cold check cannot avoid (token, proof), raw `cryptography`;
- `verify_cached`: one token, a fresh proof every call (the token's signature is checked once);
  floor = the one verification left (the proof).

Tokens and proofs are made before each run (they are the caller's work, not the verifier's).
Rates are per second of this process's CPU time; latencies are wall time per call.
"""

from __future__ import annotations

from typing import Any

from agentid.jwks import StaticJwks
from agentid.verifier import Verifier
from benchmarks.floor import verifications
from benchmarks.load import cpu_run_async
from benchmarks.scenarios import Bench, Result
from benchmarks.verifier import AUDIENCE, ISSUER, URL, mint_token
from shared.dpop import make_proof
from shared.keys import PrivateKey


async def run(bench: Bench, names: list[str]) -> dict[str, Result]:
    plan = bench.plan
    n = plan.verify
    signer, agent = PrivateKey.generate(), PrivateKey.generate()
    jwks = {"keys": [signer.public.jwk(kid=signer.public.thumbprint, use="sig", alg="EdDSA")]}
    verifier = Verifier(issuer=ISSUER, audience=AUDIENCE, jwks=StaticJwks(jwks), token_cache_size=2 * n)

    def calls(tokens: list[str]) -> list[tuple[str, str]]:
        return [(f"DPoP {t}", make_proof(agent, "GET", URL, access_token=t)) for t in tokens]

    async def check(batch: list[tuple[str, str]]) -> Any:
        async def one(i: int) -> None:
            await verifier.verify("GET", URL, *batch[i], action="read", resource=URL)
        return await cpu_run_async(one, count=len(batch))

    bench.say(f"verify: warming up, then {plan.runs} runs of {n} cold and {n} cached checks")
    await check(calls([mint_token(signer, agent) for _ in range(min(n, 200))]))
    results: dict[str, list[dict[str, Any]]] = {"verify_cold": [], "verify_cached": []}
    floors: dict[str, list[dict[str, Any]]] = {"verify_cold": [], "verify_cached": []}
    for i in range(plan.runs):
        floors["verify_cold"].append(verifications(2, n).figures())
        floors["verify_cached"].append(verifications(1, n).figures())
        cold = await check(calls([mint_token(signer, agent) for _ in range(n)]))
        cached = await check(calls([mint_token(signer, agent)] * n))  # one token per run: it lives 300 s
        results["verify_cold"].append(cold.figures())
        results["verify_cached"].append(cached.figures())
        bench.say(f"  verify run {i + 1}/{plan.runs}: cold {results['verify_cold'][-1]['rate_per_s']}/s, "
                  f"cached {results['verify_cached'][-1]['rate_per_s']}/s (floors: {floors['verify_cold'][-1]['rate_per_s']}/s, "
                  f"{floors['verify_cached'][-1]['rate_per_s']}/s)")
    how = {"agent_alg": "EdDSA", "token_alg": "EdDSA", "rate": "per CPU second, one core"}
    out = {
        "verify_cold": Result(results["verify_cold"], "2 raw Ed25519 verifications (token + DPoP proof), one core",
                              floors["verify_cold"], how),
        "verify_cached": Result(results["verify_cached"], "1 raw Ed25519 verification (the DPoP proof), one core",
                                floors["verify_cached"], how),
    }
    return {k: v for k, v in out.items() if k in names}
