"""The HTTP edge, driven like any outside OAuth client would: httpx and joserfc over real HTTP.

Discovery (RFC 8414), client credentials with private_key_jwt + DPoP + authorization details, the
token checked by a resource server's `Verifier` with the gateway's JWKS; a second gateway replica
that demands DPoP nonces (the client retries once, and the replicas share one replay cache);
token exchange with an actor token and a re-exchange to a sub-agent (the act chain grows);
introspection and revocation by a registered resource server; a credential whose status list is
fetched by its URL; the SPIFFE bundle, health, and the refusals of the document routes.
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
from collections.abc import AsyncIterator

import httpx
import jwt as pyjwt
import msgspec
import pytest

from agentid.credentials import CredentialError, HttpFetcher, verify_credential
from agentid.jwks import HttpJwks
from agentid.verifier import Verifier
from contracts import gateway as gw
from contracts import issuance as iss
from contracts import registration as reg
from contracts import subjects as sub
from contracts import tokens as tok
from services.gateway.worker import GatewayWorker
from shared.embedded import free_port
from tests import oauth_client as oc
from tests.gateway_world import LEDGER, USERS, World, make_world
from tests.helpers import Harness, ledger

pytestmark = pytest.mark.e2e


@pytest.fixture
async def world(harness: Harness) -> AsyncIterator[World]:
    async for w in make_world(harness):
        yield w


def claims_of(token: str) -> dict:
    return pyjwt.decode(token, options={"verify_signature": False})


async def test_discovery_metadata(world: World) -> None:
    m = world.metadata
    issuer = f"{world.base}/tenants/{world.tenant}"
    assert m["issuer"] == issuer
    assert m["token_endpoint"] == f"{issuer}/token" and m["jwks_uri"] == f"{issuer}/jwks.json"
    assert m["introspection_endpoint"] == f"{issuer}/introspect" and m["revocation_endpoint"] == f"{issuer}/revoke"
    assert m["grant_types_supported"] == ["client_credentials", oc.TOKEN_EXCHANGE]
    assert m["token_endpoint_auth_methods_supported"] == ["private_key_jwt"]
    assert set(m["dpop_signing_alg_values_supported"]) == {"ES256", "EdDSA", "Ed25519"}
    assert m["authorization_details_types_supported"] == ["ledger"]
    jwks = (await world.http.get(m["jwks_uri"])).json()
    assert jwks["keys"] and all("d" not in k for k in jwks["keys"])


async def test_client_credentials_with_dpop_and_details_then_the_resource_server(world: World) -> None:
    dpop_key = oc.new_key()  # a DPoP key of the agent's own choosing, proven in the request
    detail = ledger(["read"])
    resp = await world.client_credentials([detail], dpop_key=dpop_key)
    assert resp.status_code == 200, resp.text
    body = resp.json()
    assert body["token_type"] == "DPoP" and body["issued_token_type"] == oc.ACCESS_TOKEN_TYPE
    assert 0 < body["expires_in"] <= 300 and body["authorization_details"] == [detail]
    assert resp.headers["cache-control"] == "no-store"
    claims = claims_of(body["access_token"])
    assert claims["iss"] == world.issuer and claims["sub"] == world.agent.spiffe_id
    assert claims["client_id"] == world.agent.spiffe_id and claims["aud"] == LEDGER
    assert claims["cnf"] == {"jkt": dpop_key.thumbprint()}

    # A resource server verifies it with the gateway's JWKS, as any RS would.
    keys = HttpJwks(world.metadata["jwks_uri"])
    verifier = Verifier(issuer=world.issuer, audience=LEDGER, jwks=keys)
    await verifier.start()
    try:
        url = f"{LEDGER}/accounts/42"
        proof = oc.dpop_proof(dpop_key, "GET", url, access_token=body["access_token"])
        checked = await verifier.verify("GET", url, f"DPoP {body['access_token']}", proof, action="read", resource=url)
        assert checked.agent_spiffe_id == world.agent.spiffe_id and checked.jkt == dpop_key.thumbprint()
    finally:
        await verifier.aclose()
        await keys.aclose()


async def test_a_replica_that_demands_nonces_and_shares_the_replay_cache(world: World) -> None:
    """A second gateway (same public URL, another port: behind one load balancer) requires DPoP
    nonces. The client retries once with the nonce, re-sending the same client assertion."""
    settings = world.harness.stack.settings.model_copy(update={"http_port": free_port(), "gateway_dpop_nonce": True})
    replica = GatewayWorker(settings, world.harness.keyring, nats_url=settings.nats_url or "", database_url="")
    stop = asyncio.Event()
    task = asyncio.create_task(replica.run(stop))
    await asyncio.wait_for(replica.ready.wait(), 10)
    try:
        at_replica = f"http://127.0.0.1:{settings.http_port}/tenants/{world.tenant}/token"
        assertion = oc.client_assertion(world.agent_key, world.agent.spiffe_id, world.token_url)
        form = oc.client_credentials_form(assertion, [ledger(["read"])], LEDGER)
        first = await oc.token_request(world.http, at_replica, form, oc.dpop_proof(world.agent_key, "POST",
                                                                                  world.token_url))
        assert first.status_code == 400 and first.json()["error"] == "use_dpop_nonce"
        nonce = first.headers["dpop-nonce"]
        proof = oc.dpop_proof(world.agent_key, "POST", world.token_url, nonce=nonce)
        retry = await oc.token_request(world.http, at_replica, form, proof)
        assert retry.status_code == 200, retry.text
        assert retry.headers["dpop-nonce"]  # kept current on success (RFC 9449 section 8.2)
        # The proof the replica accepted is spent for every replica: the first one refuses it.
        fresh = oc.client_credentials_form(oc.client_assertion(world.agent_key, world.agent.spiffe_id,
                                                               world.token_url), [ledger(["read"])], LEDGER)
        replayed = await oc.token_request(world.http, world.token_url, fresh, proof)
        assert replayed.status_code == 400 and replayed.json()["error"] == "invalid_dpop_proof"
        # A stale nonce is refused with a fresh one.
        stale = oc.dpop_proof(world.agent_key, "POST", world.token_url, nonce="not-a-nonce")
        again = await oc.token_request(world.http, at_replica, fresh, stale)
        assert again.json()["error"] == "use_dpop_nonce" and again.headers["dpop-nonce"] == nonce
    finally:
        stop.set()
        await task


async def test_token_exchange_then_re_exchange_introspection_and_revocation(world: World) -> None:
    user_token = world.idp.mint("alice", audience=USERS, scopes=["ledger.read"])
    detail = ledger(["read"])
    # The orchestrator authenticates with its own key; the agent signs the actor token and the proof.
    form = oc.exchange_form(
        oc.client_assertion(world.orch_key, world.orch.spiffe_id, world.token_url), user_token, oc.ID_TOKEN_TYPE,
        oc.actor_token(world.agent_key, world.agent.spiffe_id, world.issuer), [detail], LEDGER)
    resp = await oc.token_request(world.http, world.token_url, form,
                                  oc.dpop_proof(world.agent_key, "POST", world.token_url))
    assert resp.status_code == 200, resp.text
    obo = resp.json()
    assert obo["token_type"] == "DPoP" and obo["issued_token_type"] == oc.ACCESS_TOKEN_TYPE
    claims = claims_of(obo["access_token"])
    assert claims["sub"] == "alice" and claims["act"]["sub"] == world.agent.spiffe_id
    assert claims["cnf"] == {"jkt": world.agent_key.thumbprint()}

    # The agent hands a narrower slice to its sub-agent: it is the client now, the sub-agent acts.
    sub_key = oc.new_key()
    helper = await world.spawn(sub_key, parent_agent_id=world.agent.agent_id)
    try:
        form = oc.exchange_form(
            oc.client_assertion(world.agent_key, world.agent.spiffe_id, world.token_url), obo["access_token"],
            oc.ACCESS_TOKEN_TYPE, oc.actor_token(sub_key, helper.spiffe_id, world.issuer), [detail], LEDGER)
        resp = await oc.token_request(world.http, world.token_url, form,
                                      oc.dpop_proof(sub_key, "POST", world.token_url))
        assert resp.status_code == 200, resp.text
        nested = resp.json()["access_token"]
    finally:
        await helper.close()

    # Introspection by the ledger's resource server: the whole act chain, nearest actor outermost.
    info = await world.http.post(world.metadata["introspection_endpoint"], data={"token": nested},
                                 auth=world.basic())
    assert info.status_code == 200 and info.headers["cache-control"] == "no-store"
    body = info.json()
    assert body["active"] is True and body["sub"] == "alice" and body["token_type"] == "DPoP"
    assert body["act"]["sub"] == helper.spiffe_id and body["act"]["act"]["sub"] == world.agent.spiffe_id
    assert body["cnf"] == {"jkt": sub_key.thumbprint()} and body["aud"] == LEDGER

    # Revocation (RFC 7009): 200, and the token is inactive from then on; unknown tokens get 200 too.
    revoked = await world.http.post(world.metadata["revocation_endpoint"], data={"token": nested},
                                    auth=world.basic())
    assert revoked.status_code == 200 and revoked.content == b""
    info = await world.http.post(world.metadata["introspection_endpoint"], data={"token": nested},
                                 auth=world.basic())
    assert info.json() == {"active": False}
    for token in (nested, "not-a-token"):
        again = await world.http.post(world.metadata["revocation_endpoint"], data={"token": token}, auth=world.basic())
        assert again.status_code == 200


async def test_introspection_shows_the_delegation_path(world: World) -> None:
    """A token minted from a UCAN chain (on the bus) introspects over HTTP with its delegation."""
    from tests.integration.test_delegation import HOPS, _agents, _chain, _configure

    harness, tenant = world.harness, await world.harness.new_tenant()
    api = "https://api.example.com"
    await harness.token_rules(tenant, policy='permit(principal is Agent, action == Action::"read", resource);',
                              config=tok.TokenConfig(detail_types={"records": {"type": "object"}}, audiences=[api]))
    await _configure(harness, tenant)
    orch, agents = await _agents(harness, tenant, 2)
    links = await _chain(agents)
    issued = await agents[1].token([HOPS[2]], api, delegation=links[-1].chain)
    rs = await harness.operator.request(sub.RS_ADD, tenant, gw.AddResourceServer(name="records", audiences=[api]))
    info = await world.http.post(f"{world.base}/tenants/{tenant}/introspect", data={"token": issued.access_token},
                                 auth=httpx.BasicAuth(rs.client_id, rs.client_secret))
    body = info.json()
    assert body["active"] is True and body["delegation"]["depth"] == 2
    assert body["delegation"]["chain"] == [link.cid for link in links] and body["delegation"]["path"]
    for agent in agents:
        await agent.close()
    await orch.close()


async def test_a_credential_verified_with_its_status_list_fetched_by_url(world: World) -> None:
    record = await world.agent.credential()
    issuer = await world.harness.operator.request(sub.GET_ISSUER, world.tenant, iss.GetIssuer())
    assert record.status_list_credential.startswith(f"{world.issuer}/status-lists/")
    resp = await world.http.get(record.status_list_credential)
    assert resp.status_code == 200 and resp.headers["content-type"] == "application/vc+jwt"
    fetcher = HttpFetcher(insecure_hosts={"127.0.0.1"})
    try:
        verified = await verify_credential(record.vc_jwt, trusted_issuers=issuer.dids, fetcher=fetcher)
        assert verified.status_checked and verified.subject_id
        await world.harness.operator.request(sub.REVOKE_CREDENTIAL, world.tenant,
                                             iss.RevokeCredential(agent_id=world.agent.agent_id))
        with pytest.raises(CredentialError) as err:  # the list served now has the bit set
            await verify_credential(record.vc_jwt, trusted_issuers=issuer.dids, fetcher=fetcher)
        assert err.value.reason == "revoked"
    finally:
        await fetcher.aclose()


async def test_bundle_health_and_document_refusals(world: World) -> None:
    http, base, t = world.http, world.base, world.tenant
    bundle = await http.get(f"{base}/tenants/{t}/bundle")
    assert bundle.status_code == 200 and bundle.headers["content-type"] == "application/json"
    expected = await world.harness.operator.request(sub.GET_BUNDLE, t, reg.GetBundle())
    assert bundle.json() == msgspec.to_builtins(expected.jwks)
    assert {k["use"] for k in bundle.json()["keys"]} == {"x509-svid", "jwt-svid"}
    assert (await http.get(f"{base}/healthz")).json() == {"status": "ok"}
    assert (await http.get(f"{base}/readyz")).status_code == 200
    bare = await http.get(f"{base}/jwks.json")
    assert bare.status_code == 404 and f"{base}/tenants/<tenant>/jwks.json" in bare.json()["error_description"]
    # did:key issuers (no AGENTID_DID_WEB_HOST) have no did.json to serve.
    assert (await http.get(f"{base}/tenants/{t}/did.json")).status_code == 404
    # Documents of a tenant that does not exist are refused, and reading them creates nothing.
    ghost = "tghost" + t[1:]
    for path in (f"/tenants/{ghost}/jwks.json", f"/.well-known/oauth-authorization-server/tenants/{ghost}",
                 f"/tenants/{ghost}/did.json", f"/tenants/{ghost}/bundle", f"/tenants/{ghost}/status-lists/sl_1",
                 "/tenants/Not_A_Tenant/jwks.json", f"/tenants/{t}/status-lists/..%2f", "/nowhere"):
        resp = await http.get(f"{base}{path}")
        assert resp.status_code == 404 and resp.json()["error"] == "not_found", path
    assert await world.harness.count("SELECT count(*) FROM token.signing_keys WHERE tenant = $1", ghost) == 0
    assert await world.harness.count("SELECT count(*) FROM issuance.issuer_keys WHERE tenant = $1", ghost) == 0
    wrong_method = await http.get(world.token_url)
    assert wrong_method.status_code == 405 and wrong_method.json()["error"] == "method_not_allowed"


async def test_status_json_and_the_deployment_file_name_the_gateway(world: World) -> None:
    data_dir = world.harness.stack.settings.data_dir
    env = {"AGENTID_DATA_DIR": str(data_dir), "PATH": os.environ.get("PATH", "/usr/bin:/bin")}
    proc = await asyncio.create_subprocess_exec(sys.executable, "-m", "agentid.cli", "status", "--json", env=env,
                                                stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    out, err = await asyncio.wait_for(proc.communicate(), 60)
    assert proc.returncode == 0, err.decode()
    status = json.loads(out)
    assert status["running"] and status["http_url"] == world.base and "gateway" in status["workers"]
    assert json.loads(world.harness.stack.settings.deployment_path.read_text())["http_url"] == world.base


async def test_no_credential_lands_in_a_table_an_event_a_span_or_a_log(world: World, spans, caplog) -> None:
    """Client assertions, DPoP proofs, tokens and resource-server secrets pass through the gateway
    and the token worker; none of them is stored, published, traced or logged (refusals included)."""
    from tests import secrets_scan

    caplog.set_level("DEBUG")
    assertion = oc.client_assertion(world.agent_key, world.agent.spiffe_id, world.token_url)
    proof = oc.dpop_proof(world.agent_key, "POST", world.token_url)
    form = oc.client_credentials_form(assertion, [ledger(["read"])], LEDGER)
    token = (await oc.token_request(world.http, world.token_url, form, proof)).json()["access_token"]
    replayed = await oc.token_request(world.http, world.token_url, form, oc.dpop_proof(world.agent_key, "POST",
                                                                                      world.token_url))
    assert replayed.status_code == 401
    await world.http.post(world.metadata["introspection_endpoint"], data={"token": token}, auth=world.basic())
    await world.http.post(world.metadata["introspection_endpoint"], data={"token": token},
                          auth=world.basic(secret=world.rs.client_secret[:-1]))
    needles = [assertion, assertion.split(".")[2], proof, proof.split(".")[2], token, token.split(".")[2],
               world.rs.client_secret]
    found = await secrets_scan.in_database(world.harness, needles)
    found += await secrets_scan.in_events(world.harness, needles, world.tenant)
    found += secrets_scan.in_spans(spans, needles)
    found += secrets_scan.in_logs(caplog.records, needles)
    assert found == []
    # The scan does see what is meant to be there: the resource server's id, in its table.
    assert await secrets_scan.in_database(world.harness, [world.rs.client_id])


async def test_the_sdk_token_client_over_http(world: World) -> None:
    """`agentid.oauth_client` (what the demo uses): discovery, assertion, proof; refusals typed."""
    from agentid.oauth_client import client_credentials
    from shared.errors import InvalidClient, InvalidScope
    from shared.keys import PrivateKey

    key = PrivateKey.from_jwk(world.agent_key.as_dict(private=True))
    token = await client_credentials(world.http, world.base, world.tenant, key, world.agent.spiffe_id,
                                     [ledger(["read"])], LEDGER)
    assert token.token_type == "DPoP" and claims_of(token.access_token)["cnf"]["jkt"] == world.agent_key.thumbprint()
    with pytest.raises(InvalidScope):
        await client_credentials(world.http, world.base, world.tenant, key, world.agent.spiffe_id,
                                 [ledger(["pay"])], LEDGER)
    with pytest.raises(InvalidClient):
        await client_credentials(world.http, world.base, world.tenant, PrivateKey.generate("ES256"),
                                 world.agent.spiffe_id, [ledger(["read"])], LEDGER)


async def test_one_trace_from_the_http_client_to_the_token_worker(world: World, spans) -> None:
    trace_id = "4bf92f3577b34da6a3ce929d0e0e4736"
    assertion = oc.client_assertion(world.agent_key, world.agent.spiffe_id, world.token_url)
    resp = await oc.token_request(world.http, world.token_url, oc.client_credentials_form(
        assertion, [ledger(["read"])], LEDGER), oc.dpop_proof(world.agent_key, "POST", world.token_url),
        traceparent=f"00-{trace_id}-00f067aa0ba902b7-01")
    assert resp.status_code == 200
    in_trace = [s for s in spans.get_finished_spans() if f"{s.context.trace_id:032x}" == trace_id]
    names = {s.name for s in in_trace}
    assert "POST /tenants/{tenant}/token" in names
    assert any(name.endswith(".token.grant") and name.startswith("process") for name in names), names
    http_span = next(s for s in in_trace if s.name == "POST /tenants/{tenant}/token")
    assert http_span.attributes["http.response.status_code"] == 200
    assert http_span.attributes["agentid.tenant"] == world.tenant
