"""Attestation for an agent runtime: get a challenge, have the TEE bind it, submit the evidence.

    result = await attest(agent, "aws-nitro", lambda ch: nsm.attestation(
        nonce=bytes.fromhex(ch.nonce), user_data=bytes.fromhex(ch.binding)))

The challenge names what the evidence must carry (`Challenge.binding`, the SHA-512 of the nonce
and the agent key's thumbprint); the request that submits it is signed with the agent's key.
A refusal raises `AttestationFailed` whose `detail["reason"]` is the stable reason code.
"""

from __future__ import annotations

import inspect
from collections.abc import Awaitable, Callable

from agentid.agent import Agent
from contracts import attestation as att
from contracts import subjects as sub

EvidenceBuilder = Callable[[att.Challenge], bytes | Awaitable[bytes]]


async def challenge(agent: Agent) -> att.Challenge:
    """A fresh single-use challenge for this agent and its key."""
    return await agent.bus.request(sub.ATTESTATION_CHALLENGE, agent.tenant, att.RequestChallenge())


async def submit(agent: Agent, kind: att.EvidenceKind, evidence: bytes, *,
                 challenge_id: str | None = None) -> att.AttestationResult:
    """Submit evidence (TEE kinds: with the challenge it is bound to; `sigstore`: without)."""
    return await agent.bus.request(sub.ATTESTATION_VERIFY, agent.tenant, att.VerifyEvidence(
        kind=kind, evidence=evidence, challenge_id=challenge_id))


async def attest(agent: Agent, kind: att.EvidenceKind, make_evidence: EvidenceBuilder) -> att.AttestationResult:
    """Challenge, build the evidence bound to it (sync or async callback), submit it."""
    ch = await challenge(agent)
    evidence = make_evidence(ch)
    if inspect.isawaitable(evidence):
        evidence = await evidence
    return await submit(agent, kind, evidence, challenge_id=ch.challenge_id)  # type: ignore[arg-type]


async def provenance(agent: Agent, bundle: bytes) -> att.AttestationResult:
    """Submit a Sigstore bundle for the model or a tool this agent's credential names."""
    return await submit(agent, "sigstore", bundle)


async def posture(agent: Agent, agent_id: str | None = None) -> att.Posture:
    """The postures an agent (by default this one) holds now."""
    return await agent.bus.request(sub.ATTESTATION_POSTURE, agent.tenant,
                                   att.GetPosture(agent_id=agent_id or agent.agent_id))
