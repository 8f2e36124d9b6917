"""Workload identity: SVIDs checked from outside (py-spiffe, openssl, cryptography's verifier),
renewal, JWT-SVIDs, rotation with overlap, lifecycle, the kill switch and expiry."""

from __future__ import annotations

import asyncio
import json
import subprocess
from pathlib import Path

import msgspec
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from spiffe import JwtBundle, JwtSvid, TrustDomain, X509Bundle, X509Svid

from agentid.agent import Agent
from agentid.keys import AgentKey
from contracts import registration as reg
from contracts import subjects as sub
from shared import spiffe as sp
from shared.bus import Signer
from shared.bus.signing import sign
from shared.errors import AgentInactive, Forbidden, InvalidProof, InvalidRequest
from shared.possession import renew_proof
from shared.keys import PrivateKey
from tests.helpers import SPAWN_FIELDS, Harness

pytestmark = pytest.mark.integration


def _load(pem: str) -> x509.Certificate:
    return x509.load_pem_x509_certificate(pem.encode())


async def test_x509_svid_verifies_against_the_bundle(harness: Harness, tenant: str, tmp_path: Path) -> None:
    orch, _, _ = await harness.new_orchestrator(tenant)
    async with orch:
        agent, key = await harness.new_agent(orch, alg="ES256")
        bundle = await orch.bundle()
    async with agent:
        svid = agent.svid
        assert svid is not None
        cas, jwt_keys = sp.bundle_authorities(bundle.jwks)
        assert len(cas) == 1 and len(jwt_keys) == 1
        assert all("kid" not in k for k in bundle.jwks["keys"] if k["use"] == "x509-svid")
        # cryptography's RFC 5280 path validation, then the SPIFFE leaf rules.
        assert sp.verify_x509_svid([_load(p) for p in svid.chain_pem], cas) == agent.spiffe_id

        # py-spiffe parses the SVID (leaf rules, SPIFFE ID) and the bundle independently.
        chain = "".join(svid.chain_pem).encode()
        parsed = X509Svid.parse(chain, key.private.pem().encode())
        assert str(parsed.spiffe_id) == agent.spiffe_id
        td = TrustDomain(agent.identity.trust_domain)
        spiffe_bundle = X509Bundle.parse(td, "".join(sp.pem(c) for c in cas).encode())
        assert len(spiffe_bundle.x509_authorities) == 1

        # openssl verify accepts the chain.
        (tmp_path / "ca.pem").write_text(sp.pem(cas[0]))
        (tmp_path / "leaf.pem").write_text(svid.cert_pem)
        out = subprocess.run(["openssl", "verify", "-x509_strict", "-purpose", "sslclient",
                              "-CAfile", str(tmp_path / "ca.pem"), str(tmp_path / "leaf.pem")],
                             capture_output=True, text=True)
        assert out.returncode == 0 and ": OK" in out.stdout, out.stderr

        # The JWT-SVID validates with py-spiffe against the bundle's jwt-svid keys.
        token = await agent.jwt_svid("spiffe://example.org/tool")
        jwt_bundle = JwtBundle.parse(td, json.dumps({"keys": [k for k in bundle.jwks["keys"]
                                                              if k["use"] == "jwt-svid"]}).encode())
        jwt = JwtSvid.parse_and_validate(token, jwt_bundle, {"spiffe://example.org/tool"})
        assert str(jwt.spiffe_id) == agent.spiffe_id
        header = json.loads(sp.jose.b64u_decode(token.split(".")[0]))
        assert header == {"alg": "ES256", "kid": header["kid"], "typ": "JWT"} and header["kid"] in jwt_keys
        claims = sp.verify_jwt_svid(token, jwt_keys, audience="spiffe://example.org/tool")
        assert claims["exp"] - claims["iat"] <= 300


async def test_svid_carries_exactly_what_spiffe_requires(harness: Harness, tenant: str) -> None:
    orch, _, _ = await harness.new_orchestrator(tenant)
    async with orch:
        agent, _ = await harness.new_agent(orch)
    async with agent:
        cert = _load(agent.svid.cert_pem)  # type: ignore[union-attr]
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName)
        assert san.value.get_values_for_type(x509.UniformResourceIdentifier) == [agent.spiffe_id]
        assert not san.value.get_values_for_type(x509.DNSName)
        bc = cert.extensions.get_extension_for_class(x509.BasicConstraints)
        assert bc.critical and bc.value.ca is False
        ku = cert.extensions.get_extension_for_class(x509.KeyUsage)
        assert ku.critical and ku.value.digital_signature and not ku.value.key_cert_sign and not ku.value.crl_sign
        lifetime = cert.not_valid_after_utc - cert.not_valid_before_utc
        assert lifetime.total_seconds() <= harness.settings.svid_lifetime_s + 30
        assert cert.public_key().public_bytes_raw() == sp.PublicKey.from_jwk(agent.identity.public_jwk).crypto.public_bytes_raw()  # type: ignore[union-attr]


async def test_svid_meets_iam_roles_anywhere_end_entity_requirements(harness: Harness, tenant: str) -> None:
    """What docs/aws-iam-roles-anywhere.md promises: an ES256 agent's SVID is usable as the
    session certificate, and the tenant CA as the trust anchor."""
    orch, _, _ = await harness.new_orchestrator(tenant)
    async with orch:
        agent, _ = await harness.new_agent(orch, alg="ES256")
        bundle = await orch.bundle()
    async with agent:
        cert = _load(agent.svid.cert_pem)  # type: ignore[union-attr]
        assert cert.version == x509.Version.v3
        assert cert.extensions.get_extension_for_class(x509.BasicConstraints).value.ca is False
        assert cert.extensions.get_extension_for_class(x509.KeyUsage).value.digital_signature
        assert isinstance(cert.signature_hash_algorithm, hashes.SHA256 | hashes.SHA384 | hashes.SHA512)
        from cryptography.hazmat.primitives.asymmetric import ec

        assert isinstance(cert.public_key(), ec.EllipticCurvePublicKey)  # Roles Anywhere signs with ECDSA or RSA
        # Source identity = subject CN: the agent id, so AWS CloudTrail names the agent.
        assert cert.subject.get_attributes_for_oid(x509.NameOID.COMMON_NAME)[0].value == agent.agent_id
        [ca] = sp.bundle_authorities(bundle.jwks)[0]
        assert ca.version == x509.Version.v3
        ca_bc = ca.extensions.get_extension_for_class(x509.BasicConstraints)
        assert ca_bc.critical and ca_bc.value.ca is True
        assert ca.extensions.get_extension_for_class(x509.KeyUsage).value.key_cert_sign
        assert ca.subject == cert.issuer


async def test_renewal_issues_a_fresh_svid(harness: Harness, tenant: str) -> None:
    orch, _, _ = await harness.new_orchestrator(tenant)
    async with orch:
        agent, _ = await harness.new_agent(orch)
    async with agent:
        first = agent.svid
        renewed = await agent.renew_svid()
        assert renewed.serial != first.serial and renewed.spiffe_id == first.spiffe_id  # type: ignore[union-attr]
        assert (await orch_get(harness, tenant, agent)).svid.serial == renewed.serial  # type: ignore[union-attr]
    [msg] = await harness.next_events(sub.AGENT_RENEWED.subject(tenant, harness.root))
    assert msgspec.json.decode(msg.data, type=reg.AgentRenewed).serial == renewed.serial


async def orch_get(harness: Harness, tenant: str, agent: Agent) -> reg.AgentIdentity:
    return await harness.operator.request(sub.GET_AGENT, tenant, reg.GetAgent(agent_id=agent.agent_id))


async def test_sdk_renews_in_the_background_before_expiry(harness: Harness, tenant: str) -> None:
    orch, _, _ = await harness.new_orchestrator(tenant)
    key = AgentKey.generate()
    async with orch:
        identity = await orch.spawn(key, **SPAWN_FIELDS)
    # A margin larger than the SVID's whole life: renewal is due at once.
    agent = await Agent.connect(identity, key, deployment=harness.deployment, renew_margin_s=10 * 3600)
    async with agent:
        await asyncio.wait_for(agent.renewed.wait(), 10)
        assert agent.svid.serial != identity.svid.serial  # type: ignore[union-attr]


async def test_renewal_with_another_key_is_refused(harness: Harness, tenant: str) -> None:
    orch, _, _ = await harness.new_orchestrator(tenant)
    async with orch:
        agent, _ = await harness.new_agent(orch)
    async with agent:
        stranger = PrivateKey.generate()
        # A proof made with another key, sent over the agent's own signed connection.
        bad = reg.RenewSvid(agent_id=agent.agent_id, proof=renew_proof(stranger, agent_id=agent.agent_id, tenant=tenant))
        with pytest.raises(InvalidProof):
            await agent.bus.request(sub.RENEW_SVID, tenant, bad)
        # The whole request signed by another key in the agent's name.
        subject = sub.RENEW_SVID.subject(tenant, harness.root)
        payload = msgspec.json.encode(bad)
        code, _ = await harness.raw_request(subject, payload, sign(Signer(agent.spiffe_id, stranger), subject, payload))
        assert code == "unknown_sender"


async def test_renewal_of_an_exited_agent_is_refused(harness: Harness, tenant: str) -> None:
    orch, _, _ = await harness.new_orchestrator(tenant)
    async with orch:
        agent, key = await harness.new_agent(orch)
        await orch.exit(agent.agent_id)
        proof = key.renew_proof(agent_id=agent.agent_id, tenant=tenant)
        with pytest.raises(AgentInactive):  # the orchestrator asking on its behalf
            await orch.bus.request(sub.RENEW_SVID, tenant, reg.RenewSvid(agent_id=agent.agent_id, proof=proof))
    with pytest.raises(AgentInactive):  # the agent itself
        await agent.renew_svid()
    await agent.close()


async def test_jwt_svid_needs_an_audience_and_an_active_agent(harness: Harness, tenant: str) -> None:
    orch, _, _ = await harness.new_orchestrator(tenant)
    async with orch:
        agent, _ = await harness.new_agent(orch)
        with pytest.raises(InvalidRequest):
            await agent.bus.request(sub.ISSUE_JWT_SVID, tenant, reg.IssueJwtSvid(audience=[]))
        with pytest.raises(InvalidRequest):
            await agent.bus.request(sub.ISSUE_JWT_SVID, tenant, {"audience": ["a"], "lifetime_s": 3600})
        with pytest.raises(Forbidden):  # only agents get JWT-SVIDs, for themselves
            await orch.bus.request(sub.ISSUE_JWT_SVID, tenant, reg.IssueJwtSvid(audience=["a"]))
        await orch.exit(agent.agent_id)
    with pytest.raises(AgentInactive):
        await agent.jwt_svid("spiffe://example.org/tool")
    await agent.close()


async def test_jwt_svid_verification_refusals(harness: Harness, tenant: str) -> None:
    orch, _, _ = await harness.new_orchestrator(tenant)
    async with orch:
        agent, _ = await harness.new_agent(orch)
        bundle = await orch.bundle()
    async with agent:
        token = await agent.jwt_svid("spiffe://example.org/a")
    _, keys = sp.bundle_authorities(bundle.jwks)
    with pytest.raises(sp.SpiffeError):
        sp.verify_jwt_svid(token, keys, audience="spiffe://example.org/b")
    with pytest.raises(sp.SpiffeError):
        sp.verify_jwt_svid(token, {}, audience="spiffe://example.org/a")
    with pytest.raises(sp.SpiffeError):
        sp.verify_jwt_svid(token, keys, audience="spiffe://example.org/a", now=9_999_999_999)


async def test_rotation_keeps_old_credentials_verifiable(harness: Harness, tenant: str) -> None:
    orch, _, _ = await harness.new_orchestrator(tenant)
    async with orch:
        old_agent, _ = await harness.new_agent(orch)
        old_jwt = await old_agent.jwt_svid("spiffe://example.org/a")
        before = await orch.bundle()
        rotated = await harness.operator.request(sub.ROTATE_AUTHORITIES, tenant, reg.RotateAuthorities())
        new_agent, _ = await harness.new_agent(orch)
    assert rotated.sequence == before.sequence + 1
    cas, keys = sp.bundle_authorities(rotated.jwks)
    assert len(cas) == 2 and len(keys) == 2  # old and new overlap
    for agent in (old_agent, new_agent):
        assert sp.verify_x509_svid([_load(agent.svid.cert_pem)], cas) == agent.spiffe_id  # type: ignore[union-attr]
    assert _load(old_agent.svid.cert_pem).issuer != _load(new_agent.svid.cert_pem).issuer  # type: ignore[union-attr]
    sp.verify_jwt_svid(old_jwt, keys, audience="spiffe://example.org/a")
    new_jwt = await new_agent.jwt_svid("spiffe://example.org/a")
    assert json.loads(sp.jose.b64u_decode(new_jwt.split(".")[0]))["kid"] != json.loads(
        sp.jose.b64u_decode(old_jwt.split(".")[0]))["kid"]
    # The old CA alone no longer verifies new SVIDs.
    old_cas, _ = sp.bundle_authorities(before.jwks)
    with pytest.raises(sp.SpiffeError):
        sp.verify_x509_svid([_load(new_agent.svid.cert_pem)], old_cas)  # type: ignore[union-attr]
    await old_agent.close()
    await new_agent.close()


async def test_revoking_a_parent_revokes_its_sub_agents_in_one_step(harness: Harness, tenant: str) -> None:
    orch, _, _ = await harness.new_orchestrator(tenant)
    async with orch:
        parent, _ = await harness.new_agent(orch)
        child, _ = await harness.new_agent(orch, parent_agent_id=parent.agent_id)
        grandchild, _ = await harness.new_agent(orch, parent_agent_id=child.agent_id)
        bystander, _ = await harness.new_agent(orch)
        assert child.identity.parent_agent_id == parent.agent_id
        assert child.identity.expires_at <= parent.identity.expires_at
        revoked = await orch.revoke(parent.agent_id, reason="compromised")
        assert set(revoked) == {parent.agent_id, child.agent_id, grandchild.agent_id}
        listing = await orch.list(status="revoked")
        assert {a.agent_id for a in listing.agents} == set(revoked)
        assert (await orch.get(bystander.agent_id)).status == "active"
        assert (await orch.get(grandchild.agent_id)).end_reason == f"parent {parent.agent_id} revoked"
    events = await harness.next_events(sub.AGENT_EXITED.subject(tenant, harness.root), n=3)
    decoded = [msgspec.json.decode(m.data, type=reg.AgentExited) for m in events]
    assert {e.agent_id for e in decoded} == set(revoked) and {e.status for e in decoded} == {"revoked"}
    for a in (parent, child, grandchild, bystander):
        await a.close()


async def test_sub_agent_must_have_an_active_parent_of_the_same_orchestrator(harness: Harness, tenant: str) -> None:
    orch, _, _ = await harness.new_orchestrator(tenant)
    other, _, _ = await harness.new_orchestrator(tenant)
    async with orch, other:
        parent, _ = await harness.new_agent(orch)
        with pytest.raises(Forbidden):
            await harness.new_agent(other, parent_agent_id=parent.agent_id)
        await orch.exit(parent.agent_id)
        with pytest.raises(Forbidden):
            await harness.new_agent(orch, parent_agent_id=parent.agent_id)
    await parent.close()


async def test_agent_past_its_lifetime_expires_by_itself(harness: Harness, tenant: str) -> None:
    orch, _, _ = await harness.new_orchestrator(tenant)
    async with orch:
        agent, _ = await harness.new_agent(orch, lifetime_s=1)
        assert (agent.svid.not_after - agent.identity.created_at).total_seconds() <= 1  # type: ignore[union-attr]
        [msg] = await harness.next_events(sub.AGENT_EXITED.subject(tenant, harness.root))
        event = msgspec.json.decode(msg.data, type=reg.AgentExited)
        assert event.agent_id == agent.agent_id and event.status == "expired"
        assert (await orch.get(agent.agent_id)).status == "expired"
    await agent.close()
