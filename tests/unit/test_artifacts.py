"""Artifact bundles checked offline: DSSE and in-toto as their specs say, and each refusal.

The bundle here is built from parts made locally (an issuer, a credential, its status list, a log
with a signed checkpoint), exactly as the workers make them, so every way of breaking it can be
tried without a stack; the integration test does the real flow."""

from __future__ import annotations

import base64
import copy
import json
from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest
from cryptography.hazmat.primitives.asymmetric import ed25519

from agentid.artifacts import ArtifactBundle, ArtifactError, Trust, verify
from shared import artifacts, dsse, merkle, status_list, vc
from shared.canonical import canonical_json
from shared.checkpoint import Checkpoint, sign_checkpoint
from shared.keys import PrivateKey
from shared.signed_note import Signer

NOW = datetime.now(UTC).replace(microsecond=0)
CONTENT = b'{"loan": "L-1001", "decision": "approve"}'
LIST_URL = "https://agentid.example/tenants/acme/status-lists/sl_1"
ORIGIN = "agentid.example/agentid/acme"


def test_pae_matches_the_dsse_spec_example() -> None:
    assert dsse.pae("http://example.com/HelloWorld", b"hello world") == b"DSSEv1 29 http://example.com/HelloWorld 11 hello world"


def test_envelope_and_statement_follow_the_specs() -> None:
    key = PrivateKey.generate()
    stmt = artifacts.statement(name="r.json", digest_hex=artifacts.sha256_hex(CONTENT), predicate={"x": 1})
    env = artifacts.envelope(key, stmt)
    assert set(env) == {"payload", "payloadType", "signatures"} and env["payloadType"] == "application/vnd.in-toto+json"
    payload = base64.b64decode(env["payload"])
    assert json.loads(payload) == stmt and stmt["_type"] == "https://in-toto.io/Statement/v1"
    assert stmt["subject"] == [{"name": "r.json", "digest": {"sha256": artifacts.sha256_hex(CONTENT)}}]
    # The signature is over PAE(payloadType, payload), checked here with the raw key.
    sig = base64.b64decode(env["signatures"][0]["sig"])
    assert key.public.verify(sig, dsse.pae(env["payloadType"], payload))
    assert dsse.verify(env, key.public) == (env["payloadType"], payload)


def _parts(*, revoked: bool = False, list_time: datetime = NOW - timedelta(minutes=1), logged: datetime = NOW):
    issuer, agent, log_key = PrivateKey.generate(), PrivateKey.generate(), ed25519.Ed25519PrivateKey.generate()
    bits = status_list.empty()
    if revoked:
        status_list.set_bit(bits, 7)
    kid = f"{issuer.public.did}#{issuer.public.did[8:]}"
    credential_id = "urn:uuid:4f3b7a1e-0000-4000-8000-000000000001"
    credential = vc.sign(vc.credential(credential_id=credential_id, issuer=issuer.public.did, types=["AgentCredential"],
                                       subject={"id": agent.public.did}, valid_from=NOW - timedelta(hours=1),
                                       valid_until=NOW + timedelta(hours=1), status=vc.status_entry(LIST_URL, 7),
                                       issued_at=NOW - timedelta(hours=1)), issuer, kid)
    listing = vc.sign(vc.status_list_credential(list_url=LIST_URL, issuer=issuer.public.did,
                                                encoded_list=status_list.encode(bits), valid_from=list_time), issuer, kid)
    predicate = {"agent": {"agentId": "agt_1", "spiffeId": "spiffe://acme.example/agent/agt_1", "did": agent.public.did},
                 "credentialId": credential_id, "onBehalfOf": "alice", "act": None, "delegation": None,
                 "purpose": "loan decision", "mediaType": "application/json", "signedAt": vc.iso(NOW)}
    stmt = artifacts.statement(name="decision.json", digest_hex=artifacts.sha256_hex(CONTENT), predicate=predicate)
    env = artifacts.envelope(agent, stmt)
    leaf = canonical_json({
        "v": 1, "seq": 1, "time": logged.strftime("%Y-%m-%dT%H:%M:%S.000Z"), "tenant": "acme", "event": "artifact.signed",
        "msg_id": "01ABC", "status": "verified", "actor": {"id": "spiffe://agentid.system/service/issuance"},
        "subject": {"type": "agent", "id": "agt_1", "did": agent.public.did}, "on_behalf_of": "alice",
        "details": {"artifact_digest": artifacts.sha256_hex(CONTENT), "envelope_digest": artifacts.envelope_digest(env),
                    "credential_id": credential_id, "purpose": "loan decision"},
        "trace_id": None, "event_digest": "sha256:" + "00" * 32}).decode()
    tree = merkle.MemoryTree.from_leaves([b"an earlier entry", leaf.encode(), b"a later entry"])
    signer = Signer(ORIGIN, log_key)
    note = sign_checkpoint(Checkpoint(ORIGIN, tree.size, tree.root()), signer)
    bundle = ArtifactBundle(dsse_envelope=env, statement=stmt, credential_vc_jwt=credential, status_list_vc_jwt=listing,
                            event_msg_id="01ABC", leaf=leaf, checkpoint=note, log_public_key=signer.verifier_key_string(),
                            inclusion_proof={"leaf_index": 1, "tree_size": tree.size,
                                             "hashes": [base64.b64encode(h).decode() for h in tree.inclusion_proof(1)]})
    trust = Trust(issuers=frozenset({issuer.public.did}), log_keys=(signer.verifier_key_string(),))
    return bundle, trust, agent


async def test_a_good_bundle_verifies_and_says_who_signed_what_for_whom() -> None:
    bundle, trust, agent = _parts()
    result = await verify(bundle, CONTENT, trust)
    assert result.agent_did == agent.public.did and result.on_behalf_of == "alice"
    assert result.artifact_name == "decision.json" and result.log_index == 1
    assert (await verify(ArtifactBundle.from_json(json.loads(json.dumps(bundle.to_json()))), CONTENT, trust)).log_index == 1


async def _refused(bundle: ArtifactBundle, trust: Trust, content: bytes = CONTENT) -> str:
    with pytest.raises(ArtifactError) as err:
        await verify(bundle, content, trust)
    return err.value.reason


async def test_a_changed_artifact() -> None:
    bundle, trust, _ = _parts()
    assert await _refused(bundle, trust, CONTENT.replace(b"approve", b"decline")) == "digest_mismatch"


async def test_a_changed_statement() -> None:
    bundle, trust, _ = _parts()
    stmt = copy.deepcopy(bundle.statement)
    stmt["predicate"]["purpose"] = "something else"
    assert await _refused(replace(bundle, statement=stmt), trust) == "statement_mismatch"
    env = dict(bundle.dsse_envelope)
    env["payload"] = base64.b64encode(canonical_json(stmt)).decode()  # the signed payload itself edited
    assert await _refused(replace(bundle, dsse_envelope=env, statement=stmt), trust) == "bad_signature"


async def test_a_signature_by_another_key() -> None:
    bundle, trust, _ = _parts()
    forged = artifacts.envelope(PrivateKey.generate(), bundle.statement)
    assert await _refused(replace(bundle, dsse_envelope=forged), trust) == "bad_signature"


async def test_a_credential_revoked_before_the_signing_time() -> None:
    bundle, trust, _ = _parts(revoked=True)
    assert await _refused(bundle, trust) == "credential_revoked"


async def test_a_status_list_from_after_the_signature_proves_nothing() -> None:
    bundle, trust, _ = _parts(list_time=NOW + timedelta(hours=1))
    assert await _refused(bundle, trust) in ("credential_status_unknown", "credential_malformed", "credential_status_invalid")


async def test_an_inclusion_proof_that_does_not_match_the_checkpoint() -> None:
    bundle, trust, _ = _parts()
    proof = copy.deepcopy(bundle.inclusion_proof)
    first = bytearray(base64.b64decode(proof["hashes"][0]))
    first[0] ^= 1
    proof["hashes"][0] = base64.b64encode(bytes(first)).decode()
    assert await _refused(replace(bundle, inclusion_proof=proof), trust) == "inclusion_mismatch"
    proof = copy.deepcopy(bundle.inclusion_proof)
    proof["leaf_index"] = 0
    assert await _refused(replace(bundle, inclusion_proof=proof), trust) == "inclusion_mismatch"


async def test_a_checkpoint_signed_by_an_unknown_key() -> None:
    bundle, trust, _ = _parts()
    stranger = Signer(ORIGIN, ed25519.Ed25519PrivateKey.generate())
    assert await _refused(bundle, Trust(issuers=trust.issuers, log_keys=(stranger.verifier_key_string(),))) == "untrusted_log"


async def test_a_log_entry_about_another_signature_or_time() -> None:
    bundle, trust, agent = _parts()
    other, _, _ = _parts()
    assert await _refused(replace(bundle, leaf=other.leaf, inclusion_proof=other.inclusion_proof,
                                  checkpoint=other.checkpoint), Trust(issuers=trust.issuers, log_keys=(other.log_public_key,))) \
        in ("entry_mismatch", "untrusted_issuer")
    stmt = copy.deepcopy(bundle.statement)
    stmt["predicate"]["signedAt"] = vc.iso(NOW - timedelta(days=30))  # backdated, re-signed by the agent itself
    assert await _refused(replace(bundle, statement=stmt, dsse_envelope=artifacts.envelope(agent, stmt)), trust) \
        == "entry_mismatch"  # a re-signed statement is another envelope than the one logged


async def test_an_untrusted_issuer_and_an_unlogged_bundle() -> None:
    bundle, trust, _ = _parts()
    assert await _refused(bundle, Trust(issuers=frozenset({"did:key:z6Mkother"}), log_keys=trust.log_keys)) == "untrusted_issuer"
    assert await _refused(replace(bundle, inclusion_proof=None), trust) == "not_logged"


async def test_a_signature_logged_long_after_its_claimed_time() -> None:
    """A statement claiming to be signed a day before it reached the log is backdated."""
    bundle, trust, _ = _parts(logged=NOW + timedelta(days=1), list_time=NOW + timedelta(days=1))
    assert await _refused(bundle, trust) == "backdated"
