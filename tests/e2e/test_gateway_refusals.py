"""Every refusal of the HTTP edge, over real HTTP, with its standard error code and status:
RFC 6749 section 5.2, RFC 9449 section 5 (400 at an authorization server), RFC 7523, RFC 8693,
RFC 9396, RFC 7662 / 7009 client authentication. After all of them the gateway still answers."""

from __future__ import annotations

import asyncio
import base64
import json
import time
from collections.abc import AsyncIterator
from urllib.parse import urlencode

import httpx
import pytest

from contracts import gateway as gw
from contracts import subjects as sub
from shared.errors import Forbidden
from tests import oauth_client as oc
from tests.gateway_world import LEDGER, USERS, World, make_world
from tests.helpers import Harness, eventually, ledger

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
async def world(harness: Harness) -> AsyncIterator[World]:
    """One tenant for every refusal: each test signs fresh assertions and proofs."""
    async for w in make_world(harness):
        yield w


def error_of(resp: httpx.Response) -> tuple[int, str]:
    assert resp.headers["content-type"] == "application/json"
    assert resp.headers.get("cache-control") == "no-store"
    return resp.status_code, resp.json()["error"]


def cc_form(world: World, assertion: str | None = None, details: list | None = None) -> dict:
    assertion = assertion or oc.client_assertion(world.agent_key, world.agent.spiffe_id, world.token_url)
    return oc.client_credentials_form(assertion, details or [ledger(["read"])], LEDGER)


def proof(world: World, key=None, url: str | None = None, **kw) -> str:
    return oc.dpop_proof(key or world.agent_key, "POST", url or world.token_url, **kw)


async def post(world: World, form: dict, dpop: str | None, **headers: str) -> httpx.Response:
    return await oc.token_request(world.http, world.token_url, form, dpop, **headers)


# -- DPoP ---------------------------------------------------------------------------------------------
async def test_missing_dpop_proof(world: World) -> None:
    assert error_of(await post(world, cc_form(world), None)) == (400, "invalid_dpop_proof")


async def test_replayed_dpop_proof(world: World) -> None:
    p = proof(world)
    assert (await post(world, cc_form(world), p)).status_code == 200
    assert error_of(await post(world, cc_form(world), p)) == (400, "invalid_dpop_proof")


@pytest.mark.parametrize("case", ["other_url", "other_method", "old", "two_headers", "not_a_jwt"])
async def test_bad_dpop_proofs(world: World, case: str) -> None:
    headers: dict[str, str] = {}
    if case == "other_url":
        p = proof(world, url=world.metadata["introspection_endpoint"])
    elif case == "other_method":
        p = oc.dpop_proof(world.agent_key, "GET", world.token_url)
    elif case == "old":
        p = proof(world, iat=time.time() - 600)
    elif case == "two_headers":
        p = f"{proof(world)}, {proof(world)}"
    else:
        p = "not.a.jwt"
    assert error_of(await post(world, cc_form(world), p, **headers)) == (400, "invalid_dpop_proof")


# -- client authentication (RFC 7523) ------------------------------------------------------------------
async def test_replayed_client_assertion(world: World) -> None:
    assertion = oc.client_assertion(world.agent_key, world.agent.spiffe_id, world.token_url)
    assert (await post(world, cc_form(world, assertion), proof(world))).status_code == 200
    assert error_of(await post(world, cc_form(world, assertion), proof(world))) == (401, "invalid_client")


async def test_assertion_signed_by_a_key_that_is_not_the_agents(world: World) -> None:
    forged = oc.client_assertion(oc.new_key(), world.agent.spiffe_id, world.token_url)
    assert error_of(await post(world, cc_form(world, forged), proof(world))) == (401, "invalid_client")


async def test_unknown_agent(world: World) -> None:
    stranger = world.agent.spiffe_id.rsplit("/", 1)[0] + "/agt_01JUNKNOWNAGENTXXXXXXXXXXX"
    assertion = oc.client_assertion(world.agent_key, stranger, world.token_url)
    assert error_of(await post(world, cc_form(world, assertion), proof(world))) == (401, "invalid_client")


@pytest.mark.parametrize("case", ["issuer_untyped", "two_audiences", "other_audience", "expired", "too_old",
                                  "long_lived", "typed_as_dpop", "client_id_mismatch", "no_assertion", "wrong_type"])
async def test_bad_client_assertions(world: World, case: str) -> None:
    key, cid, aud = world.agent_key, world.agent.spiffe_id, world.token_url
    form_extra: dict[str, str] = {}
    assertion: str | None = None
    if case == "issuer_untyped":  # what an actor token looks like: never a client assertion
        assertion = oc.client_assertion(key, cid, world.issuer)
    elif case == "two_audiences":
        assertion = oc.client_assertion(key, cid, [aud, "https://elsewhere.example/token"])
    elif case == "other_audience":
        assertion = oc.client_assertion(key, cid, "https://elsewhere.example/token")
    elif case == "expired":
        assertion = oc.client_assertion(key, cid, aud, iat=time.time() - 20, lifetime=10)
    elif case == "too_old":
        assertion = oc.client_assertion(key, cid, aud, iat=time.time() - 120, lifetime=300)
    elif case == "long_lived":
        assertion = oc.client_assertion(key, cid, aud, lifetime=3600)
    elif case == "typed_as_dpop":
        assertion = oc.client_assertion(key, cid, aud, typ="dpop+jwt")
    elif case == "client_id_mismatch":
        form_extra["client_id"] = world.orch.spiffe_id
    form = {**cc_form(world, assertion), **form_extra}
    if case == "no_assertion":
        form.pop("client_assertion")
    if case == "wrong_type":
        form["client_assertion_type"] = "urn:ietf:params:oauth:client-assertion-type:saml2-bearer"
    assert error_of(await post(world, form, proof(world))) == (401, "invalid_client"), case


async def test_issuer_audience_with_explicit_typing_is_accepted(world: World) -> None:
    """draft-ietf-oauth-rfc7523bis: the issuer as the one audience, typed client-authentication+jwt."""
    assertion = oc.client_assertion(world.agent_key, world.agent.spiffe_id, world.issuer,
                                    typ="client-authentication+jwt")
    assert (await post(world, cc_form(world, assertion), proof(world))).status_code == 200


async def test_an_actor_token_is_not_a_client_assertion(world: World) -> None:
    actor = oc.actor_token(world.agent_key, world.agent.spiffe_id, world.issuer)
    assert error_of(await post(world, cc_form(world, actor), proof(world))) == (401, "invalid_client")


async def test_http_basic_at_the_token_endpoint(world: World) -> None:
    resp = await post(world, cc_form(world), proof(world), Authorization="Basic " + base64.b64encode(b"a:b").decode())
    assert error_of(resp) == (401, "invalid_client") and resp.headers["www-authenticate"].startswith("Basic")


async def test_an_exited_agent_cannot_authenticate(world: World) -> None:
    key = oc.new_key()
    agent = await world.spawn(key)
    await agent.exit("done")
    await agent.close()

    async def applied() -> bool:  # the token worker learns of the exit from the agent.exited event
        return await world.harness.count("SELECT count(*) FROM token.senders WHERE subject_id = $1 AND NOT active",
                                         agent.agent_id) == 1
    await eventually(applied)
    assertion = oc.client_assertion(key, agent.spiffe_id, world.token_url)
    resp = await oc.token_request(world.http, world.token_url, oc.client_credentials_form(
        assertion, [ledger(["read"])], LEDGER), oc.dpop_proof(key, "POST", world.token_url))
    assert error_of(resp) == (401, "invalid_client")


# -- what the client asks for --------------------------------------------------------------------------
async def test_widened_details(world: World) -> None:
    """Beyond the tenant's policy (client credentials), beyond the user's grant (exchange)."""
    assert error_of(await world.client_credentials([ledger(["pay"])])) == (400, "invalid_scope")
    user_token = world.idp.mint("alice", audience=USERS, scopes=["ledger.read"])
    form = oc.exchange_form(oc.client_assertion(world.orch_key, world.orch.spiffe_id, world.token_url), user_token,
                            oc.ID_TOKEN_TYPE, oc.actor_token(world.agent_key, world.agent.spiffe_id, world.issuer),
                            [ledger(["read", "pay"])], LEDGER)
    assert error_of(await post(world, form, proof(world))) == (400, "invalid_scope")


@pytest.mark.parametrize("details", ["[", "{}", "[]", "[1]", json.dumps([{"type": "unknown-type"}]),
                                     json.dumps([ledger(["read"])] * 17), '[{"type": "ledger", "type": "x"}]',
                                     json.dumps([{"type": "ledger", "locations": ["https://ledger.example/a"],
                                                  "actions": ["read"], "extra": NotImplemented}],
                                                default=lambda _: "x")])
async def test_malformed_authorization_details(world: World, details: str) -> None:
    form = {**cc_form(world), "authorization_details": details}
    assert error_of(await post(world, form, proof(world))) == (400, "invalid_authorization_details")


async def test_token_exchange_refusals(world: World) -> None:
    user_token = world.idp.mint("alice", audience=USERS, scopes=["ledger.read"])
    orch_assertion = lambda: oc.client_assertion(world.orch_key, world.orch.spiffe_id, world.token_url)
    actor = lambda: oc.actor_token(world.agent_key, world.agent.spiffe_id, world.issuer)
    detail = [ledger(["read"])]
    # The DPoP proof is the orchestrator's, not the acting agent's: the token would not be the agent's.
    form = oc.exchange_form(orch_assertion(), user_token, oc.ID_TOKEN_TYPE, actor(), detail, LEDGER)
    assert error_of(await post(world, form, proof(world, key=world.orch_key))) == (400, "invalid_dpop_proof")
    # An actor token signed by another key; a user token from an untrusted provider.
    forged = oc.actor_token(oc.new_key(), world.agent.spiffe_id, world.issuer)
    form = oc.exchange_form(orch_assertion(), user_token, oc.ID_TOKEN_TYPE, forged, detail, LEDGER)
    assert error_of(await post(world, form, proof(world))) == (400, "invalid_request")
    form = oc.exchange_form(orch_assertion(), user_token[:-8] + "AAAAAAAA", oc.ID_TOKEN_TYPE, actor(), detail, LEDGER)
    assert error_of(await post(world, form, proof(world))) == (400, "invalid_request")
    # An agent may not exchange a user's own token; an orchestrator may not use client_credentials.
    form = oc.exchange_form(oc.client_assertion(world.agent_key, world.agent.spiffe_id, world.token_url), user_token,
                            oc.ID_TOKEN_TYPE, actor(), detail, LEDGER)
    assert error_of(await post(world, form, proof(world))) == (400, "unauthorized_client")
    form = oc.client_credentials_form(orch_assertion(), detail, LEDGER)
    assert error_of(await post(world, form, proof(world, key=world.orch_key))) == (400, "unauthorized_client")
    # Missing actor token; a token type we do not issue.
    form = oc.exchange_form(orch_assertion(), user_token, oc.ID_TOKEN_TYPE, actor(), detail, LEDGER)
    form.pop("actor_token")
    assert error_of(await post(world, form, proof(world))) == (400, "invalid_request")
    form = {**oc.exchange_form(orch_assertion(), user_token, oc.ID_TOKEN_TYPE, actor(), detail, LEDGER),
            "requested_token_type": "urn:ietf:params:oauth:token-type:refresh_token"}
    assert error_of(await post(world, form, proof(world))) == (400, "invalid_request")


# -- the form itself -------------------------------------------------------------------------------------
async def test_unsupported_grant_types(world: World) -> None:
    for grant in ("password", "authorization_code", "urn:ietf:params:oauth:grant-type:jwt-bearer"):
        form = {**cc_form(world), "grant_type": grant}
        assert error_of(await post(world, form, proof(world))) == (400, "unsupported_grant_type")


async def test_malformed_forms(world: World) -> None:
    url, p = world.token_url, proof(world)
    cases = [
        ({"content": json.dumps(cc_form(world)), "headers": {"Content-Type": "application/json"}}, 400),
        ({"content": b"grant_type=client_credentials&&x", "headers": {"Content-Type": oc_form()}}, 400),
        ({"content": b"grant_type=%zz", "headers": {"Content-Type": oc_form()}}, 400),
        ({"content": "grant_type=é".encode(), "headers": {"Content-Type": oc_form()}}, 400),
        ({"content": b"a=1&" * 40, "headers": {"Content-Type": oc_form()}}, 400),
        ({"content": b"x" * (65 * 1024), "headers": {"Content-Type": oc_form()}}, 413),
        ({"content": b"", "headers": {"Content-Type": oc_form()}}, 400),
    ]
    for kwargs, status in cases:
        kwargs["headers"]["DPoP"] = p
        resp = await world.http.post(url, **kwargs)
        assert error_of(resp) == (status, "invalid_request"), kwargs["content"][:40]
    # A repeated parameter, a scope instead of details, two resources.
    body = urlencode([*cc_form(world).items(), ("grant_type", "client_credentials")])
    resp = await world.http.post(url, content=body, headers={"Content-Type": oc_form(), "DPoP": proof(world)})
    assert error_of(resp) == (400, "invalid_request")
    assert error_of(await post(world, {**cc_form(world), "scope": "read"}, proof(world))) == (400, "invalid_scope")
    two = urlencode([*cc_form(world).items(), ("resource", "https://other.example")])
    resp = await world.http.post(url, content=two, headers={"Content-Type": oc_form(), "DPoP": proof(world)})
    assert error_of(resp) == (400, "invalid_target")
    no_resource = cc_form(world)
    no_resource.pop("resource")
    assert error_of(await post(world, no_resource, proof(world))) == (400, "invalid_target")


def oc_form() -> str:
    return "application/x-www-form-urlencoded"


async def test_an_audience_outside_the_tenants_rules(world: World) -> None:
    form = {**cc_form(world), "resource": "https://not-allowed.example"}
    status, error = error_of(await post(world, form, proof(world)))
    assert status == 400 and error in ("invalid_target", "invalid_request")


# -- introspection and revocation clients ---------------------------------------------------------------
async def test_resource_server_authentication(world: World) -> None:
    token = (await world.client_credentials([ledger(["read"])])).json()["access_token"]
    for endpoint in (world.metadata["introspection_endpoint"], world.metadata["revocation_endpoint"]):
        for auth in (None, world.basic(secret="wrong"), world.basic(client_id="rs_unknown"),
                     world.basic(client_id=world.rs.client_id + "x")):
            resp = await world.http.post(endpoint, data={"token": token}, auth=auth)
            assert error_of(resp) == (401, "invalid_client"), (endpoint, auth)
            assert resp.headers["www-authenticate"].startswith("Basic realm=")
        for header in ("Bearer abc", "Basic !!!", "Basic " + base64.b64encode(b"no-colon").decode()):
            resp = await world.http.post(endpoint, data={"token": token}, headers={"Authorization": header})
            assert error_of(resp) == (401, "invalid_client")
        resp = await world.http.post(endpoint, data={}, auth=world.basic())
        assert error_of(resp) == (400, "invalid_request")
    # Basic credentials are form-url-decoded (RFC 6749 section 2.3.1): an escaped id still matches.
    escaped = "".join(f"%{b:02X}" for b in world.rs.client_id.encode())
    raw = base64.b64encode(f"{escaped}:{world.rs.client_secret}".encode()).decode()
    resp = await world.http.post(world.metadata["introspection_endpoint"], data={"token": token},
                                 headers={"Authorization": f"Basic {raw}"})
    assert resp.status_code == 200 and resp.json()["active"] is True
    # Still active after every refused revocation.
    assert (await world.http.post(world.metadata["introspection_endpoint"], data={"token": token},
                                  auth=world.basic())).json()["active"] is True


async def test_a_resource_server_sees_only_its_audiences_and_its_tenant(world: World) -> None:
    token = (await world.client_credentials([ledger(["read"])])).json()["access_token"]
    tools = await world.harness.operator.request(sub.RS_ADD, world.tenant, gw.AddResourceServer(
        name="tools", audiences=["https://tools.example/search"]))
    auth = httpx.BasicAuth(tools.client_id, tools.client_secret)
    resp = await world.http.post(world.metadata["introspection_endpoint"], data={"token": token}, auth=auth)
    assert resp.json() == {"active": False}
    await world.http.post(world.metadata["revocation_endpoint"], data={"token": token}, auth=auth)
    resp = await world.http.post(world.metadata["introspection_endpoint"], data={"token": token}, auth=world.basic())
    assert resp.json()["active"] is True  # the other resource server could not revoke it
    # Another tenant's endpoint does not know this resource server.
    other = await world.harness.new_tenant()
    resp = await world.http.post(f"{world.base}/tenants/{other}/introspect", data={"token": token}, auth=world.basic())
    assert error_of(resp) == (401, "invalid_client")
    # A removed resource server's credentials stop working at once.
    await world.harness.operator.request(sub.RS_REMOVE, world.tenant, gw.RemoveResourceServer(
        client_id=tools.client_id))
    resp = await world.http.post(world.metadata["introspection_endpoint"], data={"token": token}, auth=auth)
    assert error_of(resp) == (401, "invalid_client")


async def test_only_the_gateway_relays(world: World) -> None:
    """`token.grant` and the resource-server routes refuse every other service or party."""
    grant = gw.TokenGrant(grant_type="client_credentials", client_assertion="a.b.c", dpop_jkt="A" * 43,
                          authorization_details=[ledger(["read"])], audience=LEDGER)
    for route, body in ((sub.TOKEN_GRANT, grant), (sub.TOKEN_RS_INTROSPECT, gw.ResourceServerCall(
            client_id=world.rs.client_id, client_secret=world.rs.client_secret, token="x"))):
        with pytest.raises(Forbidden):
            await world.harness.operator.request(route, world.tenant, body)
        with pytest.raises(Forbidden):
            await world.orch.bus.request(route, world.tenant, body)


async def test_garbage_never_takes_the_gateway_down(world: World) -> None:
    host, port = world.base.removeprefix("http://").split(":")
    for raw in (b"\x00\x01\x02 garbage\r\n\r\n", b"GET / HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * 40_000 + b"\r\n\r\n",
                b"POST /tenants/" + world.tenant.encode() + b"/token HTTP/1.1\r\nHost: x\r\n"
                b"Content-Length: 99999999\r\n"
                b"Content-Type: application/x-www-form-urlencoded\r\n\r\nabc"):
        reader, writer = await asyncio.open_connection(host, int(port))
        writer.write(raw)
        await writer.drain()
        answer = await asyncio.wait_for(reader.read(200), 10)
        assert answer == b"" or answer.startswith(b"HTTP/1.1 4")
        writer.close()
    assert (await world.http.get(f"{world.base}/healthz")).status_code == 200
    assert (await world.client_credentials([ledger(["read"])])).status_code == 200
