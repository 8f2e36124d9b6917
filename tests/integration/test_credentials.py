"""The agent passport: a W3C VC 2.0 credential (vc+jwt) checked offline, revoked through a Bitstring
Status List, presented with holder binding; each refusal with its own reason."""

from __future__ import annotations

import asyncio
import base64
import json
import os
import sys
import time

import msgspec
import pytest
from joserfc import jws
from joserfc.jwk import ECKey, OKPKey
from multiformats import multibase, multicodec

from agentid.credentials import BusFetcher, StatusListCache, verify_credential, verify_presentation
from contracts import issuance as iss
from contracts import subjects as sub
from shared import jose, status_list
from shared.b64 import b64u_encode
from shared.keys import PrivateKey
from shared.vc import CredentialError, presentation
from tests.helpers import Harness

pytestmark = pytest.mark.integration


async def _issued(harness: Harness, tenant: str, **fields: object):
    orch, _, _ = await harness.new_orchestrator(tenant)
    agent, key = await harness.new_agent(orch, **fields)
    record = await agent.credential()
    issuer = await harness.operator.request(sub.GET_ISSUER, tenant, iss.GetIssuer())
    return orch, agent, key, record, issuer


async def test_valid_credential_verifies_and_says_what_the_agent_is(harness: Harness, tenant: str) -> None:
    orch, agent, _, record, issuer = await _issued(harness, tenant)
    fetch = BusFetcher(harness.operator)
    verified = await verify_credential(record.vc_jwt, trusted_issuers=issuer.dids, fetcher=fetch)
    assert verified.status_checked and verified.issuer == issuer.did == record.issuer
    header, claims, _ = jose.split(record.vc_jwt)
    assert header["typ"] == "vc+jwt" and header["kid"].startswith(issuer.did + "#")
    assert "vc" not in claims and claims["iss"] == claims["issuer"] == issuer.did
    assert claims["@context"][0] == "https://www.w3.org/ns/credentials/v2"
    assert claims["type"] == ["VerifiableCredential", "AgentCredential"]
    subject = claims["credentialSubject"]
    assert subject["id"] == agent.did == claims["sub"]
    assert subject["spiffeId"] == agent.spiffe_id
    assert subject["purpose"] == "testing" and subject["policyTier"] == "standard"
    assert subject["dataAccessClass"] == "internal" and subject["attested"] is False
    assert subject["controller"] == {"type": "user", "id": "alice@example.com"}
    assert subject["model"]["digest"] == "sha256:" + "00" * 32
    assert subject["toolProfile"]["tools"] == [{"name": "calculator", "version": "1.0"}]
    assert subject["toolProfile"]["digest"].startswith("sha256:")
    assert claims["validFrom"] <= claims["validUntil"]
    assert claims["exp"] == int(agent.identity.expires_at.timestamp())
    status = claims["credentialStatus"]
    assert status["type"] == "BitstringStatusListEntry" and status["statusPurpose"] == "revocation"
    assert status["statusListIndex"] == str(record.status_index)
    assert status["statusListCredential"].startswith(harness.stack.settings.base_url() + f"/tenants/{tenant}/status-lists/")
    await agent.close()
    await orch.close()


async def test_credential_signature_checks_out_with_independent_libraries(harness: Harness, tenant: str) -> None:
    """joserfc verifies the JWS with the key multiformats decodes from the issuer's did:key."""
    orch, agent, _, record, issuer = await _issued(harness, tenant)
    codec, raw = multicodec.unwrap(multibase.decode(issuer.did[len("did:key:"):]))
    assert codec.name == "ed25519-pub"
    key = OKPKey.import_key({"kty": "OKP", "crv": "Ed25519", "x": b64u_encode(raw)})
    assert jws.deserialize_compact(record.vc_jwt, key, algorithms=["EdDSA"]).headers()["typ"] == "vc+jwt"
    # The issuer record's DID document is the did:key document of that key.
    assert issuer.did_document["id"] == issuer.did
    assert issuer.did_document["assertionMethod"] == [f"{issuer.did}#{issuer.did[len('did:key:'):]}"]
    await agent.close()
    await orch.close()


async def test_tampered_credential_fails(harness: Harness, tenant: str) -> None:
    orch, agent, _, record, issuer = await _issued(harness, tenant)
    h, p, s = record.vc_jwt.split(".")
    claims = json.loads(base64.urlsafe_b64decode(p + "=="))
    claims["credentialSubject"]["policyTier"] = "critical"
    forged = f"{h}.{b64u_encode(json.dumps(claims).encode())}.{s}"
    with pytest.raises(CredentialError) as err:
        await verify_credential(forged, trusted_issuers=issuer.dids, fetcher=BusFetcher(harness.operator))
    assert err.value.reason == "bad_signature"
    await agent.close()
    await orch.close()


async def test_credential_from_an_unknown_issuer_fails(harness: Harness, tenant: str) -> None:
    orch, agent, _, record, _ = await _issued(harness, tenant)
    with pytest.raises(CredentialError) as err:
        await verify_credential(record.vc_jwt, trusted_issuers=[PrivateKey.generate().public.did],
                                fetcher=BusFetcher(harness.operator))
    assert err.value.reason == "unknown_issuer"
    # A look-alike signed by an untrusted key claiming to be the issuer.
    other = await harness.new_tenant()
    _, foreign_agent, _, foreign, foreign_issuer = await _issued(harness, other)
    with pytest.raises(CredentialError) as err:
        await verify_credential(foreign.vc_jwt, trusted_issuers=(await harness.operator.request(
            sub.GET_ISSUER, tenant, iss.GetIssuer())).dids, fetcher=BusFetcher(harness.operator))
    assert err.value.reason == "unknown_issuer"
    for a in (agent, foreign_agent):
        await a.close()
    await orch.close()


async def test_credential_outside_its_validity_window_fails(harness: Harness, tenant: str) -> None:
    orch, agent, _, record, issuer = await _issued(harness, tenant)
    fetch = BusFetcher(harness.operator)
    with pytest.raises(CredentialError) as err:
        await verify_credential(record.vc_jwt, trusted_issuers=issuer.dids, fetcher=fetch,
                                now=record.valid_until.timestamp() + 3600)
    assert err.value.reason == "expired"
    with pytest.raises(CredentialError) as err:
        await verify_credential(record.vc_jwt, trusted_issuers=issuer.dids, fetcher=fetch,
                                now=record.valid_from.timestamp() - 3600)
    assert err.value.reason == "not_yet_valid"
    await agent.close()
    await orch.close()


async def test_revocation_by_the_cli_is_seen_once_the_list_is_fetched_again(harness: Harness, tenant: str) -> None:
    orch, agent, _, record, issuer = await _issued(harness, tenant)
    cache = StatusListCache(BusFetcher(harness.operator).status_list, ttl_s=3600)
    await verify_credential(record.vc_jwt, trusted_issuers=issuer.dids, status=cache, fetcher=BusFetcher(harness.operator))

    env = {k: v for k, v in os.environ.items() if not k.startswith("AGENTID_")}
    env.update(AGENTID_DATA_DIR=str(harness.settings.data_dir), OTEL_SDK_DISABLED="true")
    # The workers run in this event loop: the CLI must run beside it, not block it.
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "agentid.cli", "agent", "revoke", agent.agent_id, "--tenant", tenant,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE, env=env)
    stdout, stderr = await asyncio.wait_for(proc.communicate(), 60)
    assert proc.returncode == 0 and f"revoked {agent.agent_id}" in stdout.decode(), stderr.decode()
    [msg] = await harness.next_events(sub.CREDENTIAL_REVOKED.subject(tenant, harness.root))
    revoked = msgspec.json.decode(msg.data, type=iss.CredentialRevoked)
    assert revoked.credential_id == record.credential_id and revoked.status_index == record.status_index

    # Still trusted from the cached list (the documented window), refused once it is fetched again.
    await verify_credential(record.vc_jwt, trusted_issuers=issuer.dids, status=cache, fetcher=BusFetcher(harness.operator))
    cache.invalidate()
    with pytest.raises(CredentialError) as err:
        await verify_credential(record.vc_jwt, trusted_issuers=issuer.dids, status=cache, fetcher=BusFetcher(harness.operator))
    assert err.value.reason == "revoked"
    await agent.close()
    await orch.close()


async def test_exit_also_sets_the_status_bit(harness: Harness, tenant: str) -> None:
    orch, agent, _, record, issuer = await _issued(harness, tenant)
    await agent.exit()
    await harness.next_events(sub.CREDENTIAL_REVOKED.subject(tenant, harness.root))
    list_jwt = await BusFetcher(harness.operator).status_list(
        jose.split(record.vc_jwt)[1]["credentialStatus"]["statusListCredential"])
    bits = status_list.decode(jose.split(list_jwt)[1]["credentialSubject"]["encodedList"])
    assert len(bits) * 8 >= 131_072
    assert status_list.get_bit(bits, record.status_index)
    with pytest.raises(CredentialError) as err:
        await verify_credential(record.vc_jwt, trusted_issuers=issuer.dids, fetcher=BusFetcher(harness.operator))
    assert err.value.reason == "revoked"
    await agent.close()
    await orch.close()


async def test_status_entries_are_spread_at_random(harness: Harness, tenant: str) -> None:
    orch, _, _ = await harness.new_orchestrator(tenant)
    indexes = []
    for _ in range(4):
        agent, _ = await harness.new_agent(orch)
        indexes.append((await agent.credential()).status_index)
        await agent.close()
    await orch.close()
    assert len(set(indexes)) == 4
    assert max(indexes) - min(indexes) > 16  # sequential allocation would cluster them


async def test_missing_status_fails_closed(harness: Harness, tenant: str) -> None:
    orch, agent, _, record, issuer = await _issued(harness, tenant)

    async def unreachable(url: str) -> str:
        raise OSError("list server down")

    with pytest.raises(CredentialError) as err:
        await verify_credential(record.vc_jwt, trusted_issuers=issuer.dids, status=unreachable,
                                fetcher=BusFetcher(harness.operator))
    assert err.value.reason == "status_unavailable"
    await agent.close()
    await orch.close()


async def test_presentation_with_holder_binding(harness: Harness, tenant: str) -> None:
    orch, agent, key, record, issuer = await _issued(harness, tenant)
    fetch = BusFetcher(harness.operator)
    nonce = b64u_encode(os.urandom(16))
    vp = await agent.present(audience="https://tool.example", nonce=nonce)
    header, claims, _ = jose.split(vp)
    assert header["typ"] == "vp+jwt" and claims["holder"] == agent.did
    result = await verify_presentation(vp, audience="https://tool.example", nonce=nonce,
                                       trusted_issuers=issuer.dids, fetcher=fetch)
    assert result.holder == agent.did and result.credentials[0].subject_id == agent.did

    async def refused(vp_jwt: str, audience: str = "https://tool.example", n: str = nonce) -> str:
        with pytest.raises(CredentialError) as err:
            await verify_presentation(vp_jwt, audience=audience, nonce=n, trusted_issuers=issuer.dids, fetcher=fetch)
        return err.value.reason

    assert await refused(vp, n="another-nonce") == "wrong_nonce"
    assert await refused(vp, audience="https://other.example") == "wrong_audience"
    # Another key presenting this agent's credential: as itself (not the subject), or claiming the agent.
    thief = PrivateKey.generate()
    assert await refused(presentation(thief, [record.vc_jwt], audience="https://tool.example", nonce=nonce)) \
        == "holder_mismatch"
    h, p, _ = vp.split(".")
    stolen_sig = b64u_encode(thief.sign(f"{h}.{p}".encode()))
    assert await refused(f"{h}.{p}.{stolen_sig}") == "bad_signature"
    # Expired presentation.
    old = presentation(key.private, [record.vc_jwt], audience="https://tool.example", nonce=nonce,
                       now=time.time() - 3600)
    assert await refused(old) == "expired"
    await agent.close()
    await orch.close()


async def test_issuer_rotation_keeps_old_credentials_verifiable(harness: Harness, tenant: str) -> None:
    orch, old_agent, _, old_record, before = await _issued(harness, tenant)
    rotated = await harness.operator.request(sub.ROTATE_ISSUER_KEY, tenant, iss.RotateIssuerKey())
    assert rotated.did != before.did and set(before.dids) < set(rotated.dids)
    new_agent, _ = await harness.new_agent(orch)
    new_record = await new_agent.credential()
    assert new_record.issuer == rotated.did
    fetch = BusFetcher(harness.operator)
    for record in (old_record, new_record):
        await verify_credential(record.vc_jwt, trusted_issuers=rotated.dids, fetcher=fetch)
    # The old key still signs its own list: revoking an old credential after rotation works.
    await old_agent.exit()
    await harness.next_events(sub.CREDENTIAL_REVOKED.subject(tenant, harness.root))
    with pytest.raises(CredentialError) as err:
        await verify_credential(old_record.vc_jwt, trusted_issuers=rotated.dids, fetcher=fetch)
    assert err.value.reason == "revoked"
    await verify_credential(new_record.vc_jwt, trusted_issuers=rotated.dids, fetcher=fetch)
    for a in (old_agent, new_agent):
        await a.close()
    await orch.close()


async def test_es256_issuer_keys_would_be_read_by_joserfc(harness: Harness, tenant: str) -> None:
    """ES256 agent keys: the presentation (signed by the agent) checks out with joserfc."""
    orch, agent, key, _, _ = await _issued(harness, tenant, alg="ES256")
    vp = await agent.present(audience="aud", nonce="n")
    assert jws.deserialize_compact(vp, ECKey.import_key(key.public_jwk), algorithms=["ES256"]).protected["typ"] == "vp+jwt"
    await agent.close()
    await orch.close()
