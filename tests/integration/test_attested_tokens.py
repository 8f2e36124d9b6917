"""Policy can require attestation per tier: an unattested agent of such a tier is refused tokens with
`attestation_required`, is allowed after a successful attestation, and is refused again once the
attestation expires. The agent's credential states its attested posture."""

from __future__ import annotations

import msgspec
import pytest

from agentid import attestation
from agentid.demo_attestation import DEMO_VERIFIER_KID, SUBMOD, demo_ear
from contracts import attestation as att
from contracts import subjects as sub
from shared import jose
from shared.errors import AgentidError, AttestationRequired
from shared.keys import PrivateKey
from tests.helpers import TOKEN_CONFIG, Harness, eventually, ledger

pytestmark = pytest.mark.integration


async def test_attestation_required_then_allowed_then_expired(harness: Harness, tenant: str) -> None:
    config = msgspec.structs.replace(TOKEN_CONFIG, attestation_required_tiers=["high"])
    await harness.token_rules(tenant, policy="permit(principal, action, resource);", config=config)
    verifier = PrivateKey.generate("ES256")

    async def trust(max_age_s: int) -> None:
        await harness.operator.request(sub.SET_REFERENCE_VALUES, tenant, att.SetReferenceValues(document={
            "ear_keys": [verifier.public.jwk(kid=DEMO_VERIFIER_KID)], "ear_required_submods": [SUBMOD],
            "max_evidence_age_s": max_age_s}))

    orch, _, _ = await harness.new_orchestrator(tenant)
    agent, _ = await harness.new_agent(orch, tier="high")
    with pytest.raises(AttestationRequired):
        await agent.token([ledger()], "https://ledger.example")

    await trust(300)
    result = await attestation.attest(agent, "ear", lambda challenge: demo_ear(verifier, challenge))
    assert result.verified and result.posture == "tee"

    async def allowed() -> bool:
        try:
            agent._tokens.clear()
            await agent.token([ledger()], "https://ledger.example")
            return True
        except AttestationRequired:
            return False

    await eventually(allowed)  # the posture reaches the token worker by its event

    async def credential_attested() -> bool:
        claims = jose.split((await agent.credential()).vc_jwt)[1]
        return claims["credentialSubject"].get("attested") is True

    await eventually(credential_attested)
    subject = jose.split((await agent.credential()).vc_jwt)[1]["credentialSubject"]
    assert subject["attestation"]["tee"]["kind"] == "ear" and subject["attestation"]["tee"]["resultId"] == result.result_id

    # A short-lived attestation replaces it; once that expires, tokens are refused again.
    await trust(1)
    await attestation.attest(agent, "ear", lambda challenge: demo_ear(verifier, challenge))

    async def refused_again() -> bool:
        agent._tokens.clear()
        try:
            await agent.token([ledger()], "https://ledger.example")
            return False
        except AgentidError as exc:
            return isinstance(exc, AttestationRequired)

    await eventually(refused_again, timeout=15)
    await agent.close()
    await orch.close()

