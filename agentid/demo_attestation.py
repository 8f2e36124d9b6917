"""The demo's attestation step, told honestly.

A demo machine has no TEE, so the demo does not pretend to: it plays the part of an external
attestation verifier (such as Veraison) with a key generated for this run, configures the demo
tenant to trust that key, and has it sign an EAR (an attestation *result*, draft-ietf-rats-ear)
bound to the agent's challenge. agentid then appraises that EAR exactly as it would a real
verifier's: signature by a trusted key, profile, every submodule affirming, freshness, and the
binding to the nonce and the agent's key. The report says so in `attestation.note`.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

import msgspec

from agentid import attestation
from contracts import attestation as att
from contracts import subjects as sub
from shared import jose
from shared.b64 import b64u_encode
from shared.keys import PrivateKey

if TYPE_CHECKING:
    from agentid.demo import DemoContext

DEMO_VERIFIER_KID = "agentid-demo-ear-verifier"
SUBMOD = "agent-runtime"
NOTE = ("EAR signed by a demo verifier key generated for this run and trusted only by the demo "
        "tenant; it stands in for a real attestation verifier. No hardware evidence is involved.")


def demo_ear(key: PrivateKey, challenge: att.Challenge) -> bytes:
    """An EAR from the demo verifier, bound to `challenge` (eat_nonce = base64url(binding))."""
    claims: dict[str, Any] = {
        "eat_profile": "tag:github.com,2023:veraison/ear",
        "iat": int(time.time()),
        "ear.verifier-id": {"developer": "agentid demo (not a real verifier)", "build": "demo"},
        "eat_nonce": b64u_encode(bytes.fromhex(challenge.binding)),
        "submods": {SUBMOD: {
            "ear.status": "affirming",
            "ear.trustworthiness-vector": {"instance-identity": 2, "configuration": 2, "executables": 2,
                                           "hardware": 2},
            "ear.appraisal-policy-id": "agentid-demo-policy",
        }},
    }
    return jose.sign(claims, key, typ=None, kid=DEMO_VERIFIER_KID).encode("ascii")


async def attestation_step(ctx: DemoContext) -> None:
    """Attest the first (high-tier) agent with an EAR from the demo verifier; fill the report."""
    agent = ctx.agents[0]
    verifier_key = PrivateKey.generate("ES256")
    verifier_jwk = verifier_key.public.jwk(kid=DEMO_VERIFIER_KID)
    reference = await ctx.operator.request(sub.SET_REFERENCE_VALUES, agent.tenant, att.SetReferenceValues(
        document={"ear_keys": [verifier_jwk], "ear_required_submods": [SUBMOD]}))
    ctx.say(f"Attestation reference values v{reference.version} for tenant {agent.tenant!r}: trust the demo "
            f"EAR verifier key {DEMO_VERIFIER_KID} (generated for this demo run)")
    challenge = await attestation.challenge(agent)
    evidence = demo_ear(verifier_key, challenge)
    result = await attestation.submit(agent, "ear", evidence, challenge_id=challenge.challenge_id)
    ctx.say(f"{agent.agent_id}: attested ({result.posture}, {result.kind}) until {result.expires_at:%H:%M:%S}Z, "
            f"result {result.result_id}\n  {NOTE}")
    ctx.report["attestation"] = {
        "kind": result.kind,
        "result": msgspec.to_builtins(result),
        "agent_id": result.agent_id,
        "claims": result.claims,
        "evidence": evidence.decode("ascii"),
        "verifier_jwk": verifier_jwk,
        "challenge": msgspec.to_builtins(challenge),
        "note": NOTE,
    }
