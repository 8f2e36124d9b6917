"""The attestation worker, through the bus: challenge -> evidence -> verify, postures, events.

Evidence is Nitro-, SEV-SNP- and Sigstore-shaped, built with test keys under test roots that a
fixture installs on the running worker (`use_unsafe_test_anchors`); one test removes them and
shows that the pinned vendor roots then refuse the same evidence.
"""

from __future__ import annotations

import asyncio
import hashlib
import os
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import msgspec
import pytest

from agentid import attestation
from agentid.agent import Agent
from contracts import attestation as att
from contracts import subjects as sub
from services.attestation.appraisal import UnsafeTestAnchors
from services.attestation.verifiers import Binding, pack_evidence
from services.attestation.worker import AttestationWorker
from shared.b64 import b64u_encode
from shared.errors import AttestationFailed, Conflict, Forbidden, InvalidRequest
from tests.attestation_factory import GOOD_PCRS, der, make_vcek, nitro_document, nitro_pki, snp_pki, snp_report, tcb_raw
from tests.attestation_factory.sigstore import BUILDER, GITHUB_ISSUER, REPO, WORKFLOW, dsse_bundle, encode, \
    sigstore_world, statement
from tests.helpers import Harness

pytestmark = pytest.mark.integration

MODEL = b"credit-llm weights, release 2026.10"
MODEL_DIGEST = "sha256:" + hashlib.sha256(MODEL).hexdigest()
CHIP_ID = bytes(range(64))
SNP_TCB = {"bl": 3, "tee": 0, "snp": 8, "ucode": 115}
REFERENCE: dict[str, Any] = {
    "nitro_pcrs": {str(i): [GOOD_PCRS[i].hex()] for i in (0, 1, 2)},
    "snp_measurements": ["5a" * 48],
    "snp_min_tcb": SNP_TCB,
    "snp_vmpl": 0,
    "sigstore_identities": [{"issuer": GITHUB_ISSUER, "subject": WORKFLOW}],
    "slsa_builder_ids": [BUILDER],
    "slsa_sources": [{"repository": REPO, "ref": "refs/heads/main"}],
}


@pytest.fixture
async def worker(harness: Harness) -> AsyncIterator[AttestationWorker]:
    """The running worker, appraising with the test roots for the length of one test."""
    found = [w for w in harness.stack.workers if isinstance(w, AttestationWorker)]
    assert found, "the attestation worker runs in the harness"
    w = found[0]
    w.use_unsafe_test_anchors(UnsafeTestAnchors(
        nitro_roots=[nitro_pki().root], snp_chains=snp_pki().chains("Milan"),
        sigstore_trusted_root=sigstore_world().trusted_root()))
    yield w
    w.use_unsafe_test_anchors(None)


async def _setup(harness: Harness, tenant: str, reference: dict[str, Any] | None = REFERENCE,
                 **spawn: Any) -> Agent:
    if reference is not None:
        await harness.operator.request(sub.SET_REFERENCE_VALUES, tenant, att.SetReferenceValues(document=reference))
    return await _agent(harness, tenant, **spawn)


async def _agent(harness: Harness, tenant: str, **spawn: Any) -> Agent:
    orch, _, _ = await harness.new_orchestrator(tenant)
    async with orch:
        agent, _ = await harness.new_agent(orch, **spawn)
    return agent


def nitro_for(ch: att.Challenge, *, nonce: bytes | None = None, user_data: bytes | None = None,
              pcrs: dict[int, bytes] = GOOD_PCRS) -> bytes:
    return nitro_document(timestamp=datetime.now(UTC), pcrs=pcrs,
                          nonce=bytes.fromhex(ch.nonce) if nonce is None else nonce,
                          user_data=bytes.fromhex(ch.binding) if user_data is None else user_data)


def snp_for(report_data: bytes) -> bytes:
    key, vcek = make_vcek(chip_id=CHIP_ID, tcb=SNP_TCB)
    report = snp_report(key, chip_id=CHIP_ID, reported_tcb=tcb_raw(**SNP_TCB), report_data=report_data)
    return pack_evidence(report, der(vcek))


async def refused(agent: Agent, kind: att.EvidenceKind, evidence: bytes, challenge_id: str | None) -> dict[str, Any]:
    with pytest.raises(AttestationFailed) as exc:
        await attestation.submit(agent, kind, evidence, challenge_id=challenge_id)
    assert exc.value.detail is not None
    return exc.value.detail


async def failed_events(harness: Harness, tenant: str, n: int) -> list[att.AttestationFailed]:
    msgs = await harness.next_events(sub.ATTESTATION_FAILED.subject(tenant, harness.root), n)
    return [msgspec.json.decode(m.data, type=att.AttestationFailed) for m in msgs]


def other_thumbprint() -> str:
    return b64u_encode(hashlib.sha256(os.urandom(32)).digest())  # a well-formed thumbprint of no agent here


# -- the path that verifies ------------------------------------------------------------------


async def test_nitro_evidence_bound_to_the_challenge_gives_a_tee_posture(
        harness: Harness, tenant: str, worker: AttestationWorker) -> None:
    agent = await _setup(harness, tenant)
    async with agent:
        ch = await attestation.challenge(agent)
        assert ch.agent_id == agent.agent_id and ch.key_thumbprint == agent.key.thumbprint
        assert bytes.fromhex(ch.binding) == Binding(bytes.fromhex(ch.nonce), agent.key.thumbprint).digest()
        assert len(bytes.fromhex(ch.nonce)) == 32
        result = await attestation.submit(agent, "aws-nitro", nitro_for(ch), challenge_id=ch.challenge_id)
        posture = await attestation.posture(agent)
    assert result.verified and result.posture == "tee" and result.kind == "aws-nitro"
    assert result.agent_id == agent.agent_id and result.key_thumbprint == agent.key.thumbprint
    assert result.claims["pcrs"]["0"] == GOOD_PCRS[0].hex()
    assert result.claims["user_data"] == ch.binding and result.claims["nonce"] == ch.nonce
    # Nitro evidence is fresh for the tenant's max_evidence_age_s (300 s): the posture ends with it.
    assert result.verified_at < result.expires_at <= result.verified_at + timedelta(seconds=300)
    assert posture.tee is not None and posture.tee.result_id == result.result_id and posture.supply_chain is None
    [msg] = await harness.next_events(sub.ATTESTATION_VERIFIED.subject(tenant, harness.root))
    event = msgspec.json.decode(msg.data, type=att.AttestationVerified)
    assert (event.result_id, event.agent_id, event.posture, event.kind) == (
        result.result_id, agent.agent_id, "tee", "aws-nitro")
    assert event.expires_at == result.expires_at and event.key_thumbprint == agent.key.thumbprint
    assert event.reference_version == 1 and event.claims == result.claims
    row = await harness.db.fetchrow("SELECT * FROM attestation.challenges WHERE id = $1", ch.challenge_id)
    assert row["used_at"] is not None


async def test_snp_evidence_bound_to_the_challenge_verifies(
        harness: Harness, tenant: str, worker: AttestationWorker) -> None:
    agent = await _setup(harness, tenant)
    async with agent:
        result = await attestation.attest(agent, "amd-sev-snp", lambda ch: snp_for(bytes.fromhex(ch.binding)))
    assert result.verified and result.claims["measurement"] == "5a" * 48
    # The report does not expire by itself: the posture is capped by the deployment's maximum age.
    cap = result.verified_at + timedelta(seconds=harness.settings.attestation_posture_max_age_s)
    assert result.expires_at <= cap


# -- binding: wrong nonce, old nonce, another key --------------------------------------------


async def test_evidence_with_the_wrong_nonce_is_refused(harness: Harness, tenant: str, worker: AttestationWorker) -> None:
    agent = await _setup(harness, tenant)
    async with agent:
        ch = await attestation.challenge(agent)
        wrong = os.urandom(32)
        nitro = nitro_for(ch, nonce=wrong, user_data=Binding(wrong, agent.key.thumbprint).digest())
        detail = await refused(agent, "aws-nitro", nitro, ch.challenge_id)
        assert detail["reason"] == "nonce_mismatch" and detail["kind"] == "aws-nitro"
        ch2 = await attestation.challenge(agent)
        detail2 = await refused(agent, "amd-sev-snp", snp_for(Binding(wrong, agent.key.thumbprint).digest()),
                                ch2.challenge_id)
        assert detail2["reason"] == "binding_mismatch"
        # The challenge is spent even though the evidence failed: single use means single use.
        detail3 = await refused(agent, "aws-nitro", nitro_for(ch), ch.challenge_id)
        assert detail3["reason"] == "challenge_used"
    events = await failed_events(harness, tenant, 3)
    assert [e.reason for e in events] == ["nonce_mismatch", "binding_mismatch", "challenge_used"]
    assert events[0].result_id == detail["result_id"] and events[0].challenge_id == ch.challenge_id
    assert [e.posture_ended for e in events] == [True, True, False]
    rows = await harness.db.fetch("SELECT verified, reason FROM attestation.results WHERE tenant = $1"
                                  " ORDER BY created_at", tenant)
    assert [(r["verified"], r["reason"]) for r in rows] == [
        (False, "nonce_mismatch"), (False, "binding_mismatch"), (False, "challenge_used")]


async def test_evidence_bound_to_another_key_is_refused(harness: Harness, tenant: str, worker: AttestationWorker) -> None:
    agent = await _setup(harness, tenant)
    async with agent:
        ch = await attestation.challenge(agent)
        moved = Binding(bytes.fromhex(ch.nonce), other_thumbprint()).digest()
        assert (await refused(agent, "aws-nitro", nitro_for(ch, user_data=moved), ch.challenge_id))["reason"] == \
            "key_binding_mismatch"
        ch = await attestation.challenge(agent)
        moved = Binding(bytes.fromhex(ch.nonce), other_thumbprint()).digest()
        assert (await refused(agent, "amd-sev-snp", snp_for(moved), ch.challenge_id))["reason"] == "binding_mismatch"


async def test_evidence_bound_to_an_old_nonce_is_refused(harness: Harness, tenant: str, worker: AttestationWorker) -> None:
    agent = await _setup(harness, tenant)
    async with agent:
        first = await attestation.challenge(agent)
        old = nitro_for(first)
        await attestation.submit(agent, "aws-nitro", old, challenge_id=first.challenge_id)
        # Replayed as it is: the challenge is spent.
        assert (await refused(agent, "aws-nitro", old, first.challenge_id))["reason"] == "challenge_used"
        # Replayed against a fresh challenge: its nonce is not the new one.
        second = await attestation.challenge(agent)
        assert (await refused(agent, "aws-nitro", old, second.challenge_id))["reason"] == "nonce_mismatch"
        third = await attestation.challenge(agent)
        old_snp = snp_for(bytes.fromhex(first.binding))
        assert (await refused(agent, "amd-sev-snp", old_snp, third.challenge_id))["reason"] == "binding_mismatch"


async def test_two_concurrent_verifies_of_one_challenge_spend_it_once(
        harness: Harness, tenant: str, worker: AttestationWorker) -> None:
    agent = await _setup(harness, tenant)
    async with agent:
        ch = await attestation.challenge(agent)
        outcomes = await asyncio.gather(
            *(attestation.submit(agent, "aws-nitro", nitro_for(ch), challenge_id=ch.challenge_id) for _ in range(2)),
            return_exceptions=True)
    verified = [o for o in outcomes if isinstance(o, att.AttestationResult)]
    refusals = [o for o in outcomes if isinstance(o, AttestationFailed)]
    assert len(verified) == 1 and len(refusals) == 1
    assert refusals[0].detail is not None and refusals[0].detail["reason"] == "challenge_used"


async def test_an_expired_challenge_is_refused_and_keeps_the_posture(
        harness: Harness, tenant: str, worker: AttestationWorker) -> None:
    agent = await _setup(harness, tenant)
    async with agent:
        held = await attestation.attest(agent, "amd-sev-snp", lambda ch: snp_for(bytes.fromhex(ch.binding)))
        ch = await attestation.challenge(agent)
        # Time passes for this challenge only: its expiry moves into the past.
        await harness.db.execute("UPDATE attestation.challenges SET expires_at = now() - interval '1 second'"
                                 " WHERE id = $1", ch.challenge_id)
        detail = await refused(agent, "amd-sev-snp", snp_for(bytes.fromhex(ch.binding)), ch.challenge_id)
        posture = await attestation.posture(agent)
    assert detail["reason"] == "challenge_expired"
    assert posture.tee is not None and posture.tee.result_id == held.result_id
    row = await harness.db.fetchrow("SELECT used_at FROM attestation.challenges WHERE id = $1", ch.challenge_id)
    assert row["used_at"] is None


async def test_another_agents_challenge_is_refused_and_stays_usable(
        harness: Harness, tenant: str, worker: AttestationWorker) -> None:
    owner = await _setup(harness, tenant)
    thief = await _agent(harness, tenant)
    async with owner, thief:
        ch = await attestation.challenge(owner)
        stolen = nitro_for(ch, user_data=Binding(bytes.fromhex(ch.nonce), thief.key.thumbprint).digest())
        assert (await refused(thief, "aws-nitro", stolen, ch.challenge_id))["reason"] == "challenge_not_yours"
        result = await attestation.submit(owner, "aws-nitro", nitro_for(ch), challenge_id=ch.challenge_id)
    assert result.verified and result.agent_id == owner.agent_id
    [event] = await failed_events(harness, tenant, 1)
    assert event.agent_id == thief.agent_id and event.reason == "challenge_not_yours" and not event.posture_ended


async def test_an_unknown_challenge_is_refused(harness: Harness, tenant: str, worker: AttestationWorker) -> None:
    agent = await _setup(harness, tenant)
    async with agent:
        ch = await attestation.challenge(agent)
        assert (await refused(agent, "aws-nitro", nitro_for(ch), "chl_does_not_exist"))["reason"] == \
            "challenge_unknown"


async def test_a_challenge_is_only_for_tee_evidence(harness: Harness, tenant: str, worker: AttestationWorker) -> None:
    agent = await _setup(harness, tenant)
    async with agent:
        ch = await attestation.challenge(agent)
        with pytest.raises(InvalidRequest):
            await attestation.submit(agent, "aws-nitro", nitro_for(ch))
        with pytest.raises(InvalidRequest):
            await attestation.submit(agent, "sigstore", b"{}", challenge_id=ch.challenge_id)
    # Malformed requests write nothing, not even a failure record.
    assert await harness.count("SELECT count(*) FROM attestation.results WHERE tenant = $1", tenant) == 0
    assert await harness.event_count(sub.ATTESTATION_FAILED.subject(tenant, harness.root)) == 0


async def test_only_the_agent_itself_may_ask_for_a_challenge(harness: Harness, tenant: str) -> None:
    with pytest.raises(Forbidden):
        await harness.operator.request(sub.ATTESTATION_CHALLENGE, tenant, att.RequestChallenge())


# -- policy and postures ---------------------------------------------------------------------


async def test_without_reference_values_every_appraisal_is_refused(
        harness: Harness, tenant: str, worker: AttestationWorker) -> None:
    agent = await _setup(harness, tenant, reference=None)
    async with agent:
        ch = await attestation.challenge(agent)
        assert (await refused(agent, "aws-nitro", nitro_for(ch), ch.challenge_id))["reason"] == "not_configured"


async def test_a_refused_appraisal_ends_the_posture(harness: Harness, tenant: str, worker: AttestationWorker) -> None:
    agent = await _setup(harness, tenant)
    async with agent:
        await attestation.attest(agent, "aws-nitro", nitro_for)
        assert (await attestation.posture(agent)).tee is not None
        ch = await attestation.challenge(agent)
        other_image = {**GOOD_PCRS, 0: b"\x77" * 48}
        detail = await refused(agent, "aws-nitro", nitro_for(ch, pcrs=other_image), ch.challenge_id)
        assert detail["reason"] == "pcr_not_allowed"
        assert (await attestation.posture(agent)).tee is None
    [event] = await failed_events(harness, tenant, 1)
    assert event.posture_ended and event.posture == "tee" and event.result_id == detail["result_id"]


async def test_malformed_evidence_is_refused_and_the_worker_goes_on(
        harness: Harness, tenant: str, worker: AttestationWorker) -> None:
    agent = await _setup(harness, tenant)
    async with agent:
        for junk in (b"\x00", b"\xd2\x84" + os.urandom(200), b"{" * 5000):
            ch = await attestation.challenge(agent)
            assert (await refused(agent, "aws-nitro", junk, ch.challenge_id))["reason"] == "malformed"
        result = await attestation.attest(agent, "aws-nitro", nitro_for)
    assert result.verified


async def test_the_pinned_vendor_roots_refuse_test_evidence(
        harness: Harness, tenant: str, worker: AttestationWorker) -> None:
    worker.use_unsafe_test_anchors(None)
    agent = await _setup(harness, tenant)
    async with agent:
        ch = await attestation.challenge(agent)
        assert (await refused(agent, "aws-nitro", nitro_for(ch), ch.challenge_id))["reason"] == "chain_untrusted"
        ch = await attestation.challenge(agent)
        detail = await refused(agent, "amd-sev-snp", snp_for(bytes.fromhex(ch.binding)), ch.challenge_id)
        assert detail["reason"] == "chain_untrusted"


async def test_an_agent_may_read_only_its_own_posture(harness: Harness, tenant: str) -> None:
    a = await _setup(harness, tenant, reference=None)
    b = await _agent(harness, tenant)
    async with a, b:
        with pytest.raises(Forbidden):
            await attestation.posture(a, b.agent_id)
    posture = await harness.operator.request(sub.ATTESTATION_POSTURE, tenant, att.GetPosture(agent_id=b.agent_id))
    assert posture.tee is None and posture.supply_chain is None


async def test_an_orchestrator_may_read_only_its_own_agents_posture(harness: Harness, tenant: str) -> None:
    mine, _, _ = await harness.new_orchestrator(tenant)
    other, _, _ = await harness.new_orchestrator(tenant)
    async with mine, other:
        agent, _ = await harness.new_agent(mine)
        await agent.close()
        ask = att.GetPosture(agent_id=agent.agent_id)
        assert (await mine.bus.request(sub.ATTESTATION_POSTURE, tenant, ask)).agent_id == agent.agent_id
        with pytest.raises(Forbidden):
            await other.bus.request(sub.ATTESTATION_POSTURE, tenant, ask)


async def test_open_challenges_are_bounded(harness: Harness, tenant: str) -> None:
    from shared.errors import RateLimited

    agent = await _setup(harness, tenant, reference=None)
    async with agent:
        for _ in range(8):
            await attestation.challenge(agent)
        with pytest.raises(RateLimited):
            await attestation.challenge(agent)


# -- supply chain ----------------------------------------------------------------------------


def bundle_for(digest: str) -> bytes:
    signed_at = datetime.now(UTC) - timedelta(minutes=1)
    return encode(dsse_bundle(sigstore_world(), statement({"sha256": digest.split(":")[1]}), signed_at=signed_at))


async def test_provenance_of_the_credentials_model_gives_a_supply_chain_posture(
        harness: Harness, tenant: str, worker: AttestationWorker) -> None:
    agent = await _setup(harness, tenant, model={"name": "credit-llm", "version": "2026.10", "digest": MODEL_DIGEST})
    async with agent:
        result = await attestation.provenance(agent, bundle_for(MODEL_DIGEST))
        posture = await attestation.posture(agent)
    assert result.posture == "supply_chain" and result.artifacts == ["model"]
    assert result.claims["matched_digests"] == {"model": [MODEL_DIGEST]}
    assert posture.supply_chain is not None and posture.supply_chain.artifacts == ["model"] and posture.tee is None
    [msg] = await harness.next_events(sub.ATTESTATION_VERIFIED.subject(tenant, harness.root))
    event = msgspec.json.decode(msg.data, type=att.AttestationVerified)
    assert event.posture == "supply_chain" and event.artifacts == ["model"] and event.kind == "sigstore"


async def test_provenance_of_another_artifact_is_refused(harness: Harness, tenant: str, worker: AttestationWorker) -> None:
    agent = await _setup(harness, tenant, model={"name": "credit-llm", "version": "2026.10", "digest": MODEL_DIGEST})
    async with agent:
        other = "sha256:" + hashlib.sha256(b"another model").hexdigest()
        assert (await refused(agent, "sigstore", bundle_for(other), None))["reason"] == "digest_mismatch"


async def test_a_model_the_tenant_does_not_accept_is_refused(
        harness: Harness, tenant: str, worker: AttestationWorker) -> None:
    accepted = "sha256:" + hashlib.sha256(b"the approved model").hexdigest()
    agent = await _setup(harness, tenant, reference={**REFERENCE, "artifact_digests": {"model": [accepted]}},
                         model={"name": "credit-llm", "version": "2026.10", "digest": MODEL_DIGEST})
    async with agent:
        assert (await refused(agent, "sigstore", bundle_for(MODEL_DIGEST), None))["reason"] == "digest_mismatch"


async def test_provenance_needs_a_digest_in_the_credential(
        harness: Harness, tenant: str, worker: AttestationWorker) -> None:
    agent = await _setup(harness, tenant, model={"name": "credit-llm", "version": "2026.10"}, tools=[])
    async with agent:
        assert (await refused(agent, "sigstore", bundle_for(MODEL_DIGEST), None))["reason"] == "not_configured"


# -- reference values ------------------------------------------------------------------------


async def test_reference_values_are_versioned_documents(harness: Harness, tenant: str) -> None:
    op = harness.operator
    first = await op.request(sub.SET_REFERENCE_VALUES, tenant, att.SetReferenceValues(document=REFERENCE))
    assert first.version == 1 and first.document["snp_vmpl"] == 0 and first.document["debug_allowed"] is False
    assert first.set_by.startswith("spiffe://") and first.digest.startswith("sha256:")
    with pytest.raises(Conflict):
        await op.request(sub.SET_REFERENCE_VALUES, tenant, att.SetReferenceValues(document={}, expected_version=0))
    second = await op.request(sub.SET_REFERENCE_VALUES, tenant,
                              att.SetReferenceValues(document={"debug_allowed": True}, expected_version=1))
    listing = await op.request(sub.LIST_REFERENCE_VALUES, tenant, att.ListReferenceValues())
    assert second.version == 2 and listing.current == second
    assert [v.version for v in listing.versions] == [2, 1]
    msgs = await harness.next_events(sub.REFERENCE_VALUES_UPDATED.subject(tenant, harness.root), 2)
    events = [msgspec.json.decode(m.data, type=att.ReferenceValuesUpdated) for m in msgs]
    assert [(e.version, e.digest) for e in events] == [(1, first.digest), (2, second.digest)]


@pytest.mark.parametrize("document", [
    {"nitro_pcrs": {"40": ["00"]}},
    {"snp_measurements": ["ABCD"]},
    {"unknown_field": 1},
    {"ear_keys": [{"kty": "EC", "crv": "P-256", "x": "AA", "y": "AA"}]},
    {"ear_keys": [{"kty": "EC", "crv": "P-256", "x": "f83OJ3D2xF1Bg8vub9tLe1gHMzV76e8Tus9uPHvRVEU",
                   "y": "x_FEzRu9m36HLN_tue659LNpXW6pCyStikYjKIWI5a0",
                   "d": "jpsQnnGQmL-YBIffH1136cspYG6-0iY7X1fCE9-E9LI"}]},
    {"max_evidence_age_s": 0},
])
async def test_invalid_reference_values_are_refused_and_write_nothing(
        harness: Harness, tenant: str, document: dict[str, Any]) -> None:
    with pytest.raises(InvalidRequest):
        await harness.operator.request(sub.SET_REFERENCE_VALUES, tenant, att.SetReferenceValues(document=document))
    assert await harness.count("SELECT count(*) FROM attestation.reference_values WHERE tenant = $1", tenant) == 0


async def test_only_operators_set_reference_values(harness: Harness, tenant: str) -> None:
    agent = await _setup(harness, tenant, reference=None)
    async with agent:
        with pytest.raises(Forbidden):
            await agent.bus.request(sub.SET_REFERENCE_VALUES, tenant, att.SetReferenceValues(document={}))
