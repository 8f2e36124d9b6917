"""Tenant isolation (issue 13, item 5): the one place a reviewer reads it.

Two tenants, A and B, each with an orchestrator, an agent that holds a credential, a token and a
root delegation, against the real workers. A tenant can neither address, read, write nor verify
against the other's state, keys or subjects; each way is tried here and refused with its typed
code. On the bus itself NATS refuses cross-tenant publishes and subscribes before any of this runs
(tests/integration/test_nats_permissions.py); these tests hold even on an unsecured NATS.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import msgspec
import pytest

from agentid import delegation
from agentid.agent import Agent
from agentid.credentials import BusFetcher, CredentialError, verify_credential
from agentid.devidp import DevIdp
from agentid.jwks import BusJwks
from agentid.keys import AgentKey
from agentid.orchestrator import Orchestrator
from agentid.verifier import Verifier
from contracts import attestation as att
from contracts import audit as au
from contracts import delegation as dlg
from contracts import issuance as iss
from contracts import registration as reg
from contracts import subjects as sub
from contracts import tokens as tok
from shared.bus import Bus
from shared.bus.client import stream_name
from shared.dpop import make_proof
from shared.errors import AgentidError, DelegationInvalid, Forbidden, NotFound
from shared.oauth_errors import InvalidTokenError
from tests.helpers import SPAWN_FIELDS, Harness, eventually, ledger

pytestmark = pytest.mark.integration

AUDIENCE = "https://ledger.example"
URL = "https://ledger.example/accounts/42"
RECORDS = {"type": "records", "locations": ["https://api.example.com/records/*"], "actions": ["read"]}
DELEGATION = dlg.DelegationConfig(max_depth=5, base=[dlg.BaseCapabilities(tiers=["standard"], capabilities=[RECORDS])])


@dataclass
class Tenant:
    name: str
    orch: Orchestrator
    agent: Agent
    key: Any
    credential: iss.CredentialRecord
    token: tok.IssuedToken
    root: delegation.Delegation


async def _tenant(harness: Harness) -> Tenant:
    name = await harness.new_tenant()
    await harness.token_rules(name)
    await harness.operator.request(sub.DELEGATION_CONFIG_SET, name, dlg.SetDelegationConfig(config=DELEGATION))
    orch, _, _ = await harness.new_orchestrator(name)
    agent, key = await harness.new_agent(orch)
    return Tenant(name, orch, agent, key, await agent.credential(), await agent.token([ledger()], AUDIENCE),
                  await delegation.root(agent))


@pytest.fixture(scope="module")
async def pair(harness: Harness) -> AsyncIterator[tuple[Tenant, Tenant]]:
    a, b = await _tenant(harness), await _tenant(harness)
    yield a, b
    for t in (a, b):
        await t.agent.close()
        await t.orch.close()


async def _code(call: Any) -> str:
    with pytest.raises(AgentidError) as caught:
        await call
    return caught.value.code.value


# -- addressing: another tenant's subjects ------------------------------------------------------------


@pytest.mark.parametrize("kind", ["orchestrator", "agent"])
async def test_a_party_may_not_address_another_tenants_subjects(pair: tuple[Tenant, Tenant], kind: str) -> None:
    """Every route the party may call at home, tried on B's subject: `forbidden` before the body is read."""
    a, b = pair
    bus = a.orch.bus if kind == "orchestrator" else a.agent.bus
    routes = [r for r in sub.ROUTES if kind in r.senders]
    assert routes
    for route in routes:
        assert await _code(bus.request(route, b.name, {})) == "forbidden", route.name


async def test_an_event_signed_by_a_party_of_another_tenant_is_refused(harness: Harness,
                                                                       pair: tuple[Tenant, Tenant]) -> None:
    """A's orchestrator publishing B's `spawn_requested` (an unsecured NATS lets it reach B's stream):
    the audit logs it as rejected, and registration spawns nothing."""
    a, b = pair
    before = await harness.count("SELECT count(*) FROM registration.agents WHERE tenant = $1", b.name)
    request = a.orch.spawn_request(AgentKey.generate(), **SPAWN_FIELDS)
    ack = await a.orch.bus.publish_event(sub.SPAWN_REQUESTED, b.name, request, msg_id=request.spawn_id)

    async def entry() -> dict[str, Any] | None:
        page = await harness.operator.request(sub.AUDIT_QUERY, b.name, au.QueryLog(limit=500))
        found = [json.loads(e.leaf) for e in page.entries if request.spawn_id in e.leaf]
        return found[0] if found else None

    await eventually(lambda: _some(entry()))
    assert (await entry() or {})["status"] == "rejected"

    async def handled() -> bool:  # registration's consumer has settled it (a refusal is terminated)
        info = await harness.nc.jetstream().consumer_info(stream_name(harness.root), "registration-spawn")
        return info.ack_floor.stream_seq >= ack.seq

    await eventually(handled)
    assert await harness.count("SELECT count(*) FROM registration.agents WHERE tenant = $1", b.name) == before
    assert await harness.count("SELECT count(*) FROM registration.agents WHERE spawn_id = $1", request.spawn_id) == 0


async def _some(value: Any) -> bool:
    return (await value) is not None


# -- reading and writing: another tenant's ids on one's own subjects ---------------------------------


async def test_a_tenant_cannot_read_another_tenants_agents(harness: Harness, pair: tuple[Tenant, Tenant]) -> None:
    a, b = pair
    op = harness.operator
    their_agent = b.agent.agent_id
    for bus in (op, a.orch.bus):
        assert await _code(bus.request(sub.GET_AGENT, a.name, reg.GetAgent(agent_id=their_agent))) == "not_found"
    assert await _code(op.request(sub.GET_CREDENTIAL, a.name, iss.GetCredential(agent_id=their_agent))) == "not_found"
    their_list = b.credential.status_list_credential.rsplit("/", 1)[1]
    assert await _code(op.request(sub.GET_STATUS_LIST, a.name, iss.GetStatusList(list_id=their_list))) == "not_found"
    assert await _code(op.request(sub.DELEGATION_CHAIN, a.name, dlg.GetChain(cid=b.root.cid))) == "not_found"
    assert await _code(op.request(sub.DELEGATION_ROOT, a.name, dlg.GetRoot(agent_id=their_agent))) == "not_found"
    # Postures are read by (tenant, agent): at home B's agent has none, whoever asks.
    posture = await op.request(sub.ATTESTATION_POSTURE, a.name, att.GetPosture(agent_id=their_agent))
    assert posture.tee is None and posture.supply_chain is None
    assert await _code(a.orch.bus.request(sub.ATTESTATION_POSTURE, a.name,
                                          att.GetPosture(agent_id=their_agent))) == "forbidden"
    # Writes: A's orchestrator cannot end B's agent, nor A's operator routes revoke B's credential.
    assert await _code(a.orch.bus.request(sub.EXIT_AGENT, a.name, reg.ExitAgent(agent_id=their_agent))) == "not_found"
    assert await _code(a.orch.bus.request(sub.REVOKE_AGENT, a.name, reg.RevokeAgent(agent_id=their_agent))) == "not_found"
    assert await _code(op.request(sub.REVOKE_CREDENTIAL, a.name, iss.RevokeCredential(agent_id=their_agent))) == "not_found"
    assert (await op.request(sub.GET_AGENT, b.name, reg.GetAgent(agent_id=their_agent))).status == "active"
    assert await harness.count("SELECT count(*) FROM issuance.credentials WHERE agent_id = $1 AND revoked_at IS NOT NULL", their_agent) == 0


async def test_revoking_another_tenants_token_at_home_leaves_it_active(harness: Harness,
                                                                       pair: tuple[Tenant, Tenant]) -> None:
    a, b = pair
    op = harness.operator
    try:
        revoked = await op.request(sub.TOKEN_REVOKE, a.name, tok.RevokeToken(jti=b.token.jti))
        assert not revoked.revoked
    except NotFound:
        pass
    assert (await op.request(sub.TOKEN_INTROSPECT, b.name, tok.Introspect(token=b.token.access_token))).active


# -- verifying: another tenant's keys and trust ---------------------------------------------------


async def test_open_routes_answer_with_the_tenants_own_keys_only(harness: Harness, pair: tuple[Tenant, Tenant]) -> None:
    """Bundles, JWKS, issuer, delegation authority, audit log: A's never name a key or DID of B's."""
    a, b = pair

    async def public(tenant: Tenant) -> dict[str, Any]:
        bus = tenant.agent.bus
        return msgspec.to_builtins({
            "bundle": await bus.request(sub.GET_BUNDLE, tenant.name, reg.GetBundle()),
            "jwks": await bus.request(sub.TOKEN_JWKS, tenant.name, tok.GetJwks()),
            "issuer": await bus.request(sub.GET_ISSUER, tenant.name, iss.GetIssuer()),
            "authority": await bus.request(sub.DELEGATION_AUTHORITY, tenant.name, dlg.GetAuthority()),
            "log": await bus.request(sub.AUDIT_CHECKPOINTS, tenant.name, au.ListCheckpoints()),
        })

    mine, theirs = await public(a), await public(b)
    assert mine["bundle"]["trust_domain"] != theirs["bundle"]["trust_domain"]
    kids = lambda doc: {k.get("kid") or json.dumps(k, sort_keys=True) for k in doc["keys"]}
    assert not kids(mine["jwks"]) & kids(theirs["jwks"])
    assert not kids(mine["bundle"]["jwks"]) & kids(theirs["bundle"]["jwks"])
    assert not set(mine["issuer"]["dids"]) & set(theirs["issuer"]["dids"])
    assert not set(mine["authority"]["trusted_roots"]) & set(theirs["authority"]["trusted_roots"])
    assert mine["log"]["log_public_key"] != theirs["log"]["log_public_key"]
    assert mine["log"]["origin"] != theirs["log"]["origin"]
    text = json.dumps(mine)
    assert b.name not in text and b.agent.agent_id not in text


async def test_a_token_of_one_tenant_is_refused_by_anothers_verifier(harness: Harness,
                                                                     pair: tuple[Tenant, Tenant]) -> None:
    a, b = pair
    base = harness.stack.settings.base_url()

    async def verify(issuer_tenant: str, keys_tenant: Tenant) -> Any:
        verifier = Verifier(issuer=f"{base}/tenants/{issuer_tenant}", audience=AUDIENCE,
                            jwks=BusJwks(keys_tenant.agent.bus, keys_tenant.name))
        await verifier.start()
        try:
            proof = make_proof(a.key.private, "GET", URL, access_token=a.token.access_token)
            return await verifier.verify("GET", URL, f"DPoP {a.token.access_token}", proof,
                                         action="read", resource=URL)
        finally:
            await verifier.aclose()

    assert (await verify(a.name, a)).jti == a.token.jti                   # the control: at home it passes
    with pytest.raises(InvalidTokenError):                                 # B's verifier: wrong issuer
        await verify(b.name, b)
    with pytest.raises(InvalidTokenError):                                 # A's issuer name, B's keys
        await verify(a.name, b)
    op = harness.operator
    assert not (await op.request(sub.TOKEN_INTROSPECT, b.name, tok.Introspect(token=a.token.access_token))).active
    assert (await op.request(sub.TOKEN_INTROSPECT, a.name, tok.Introspect(token=a.token.access_token))).active


async def test_a_credential_of_one_tenant_does_not_verify_with_anothers_issuer(harness: Harness,
                                                                              pair: tuple[Tenant, Tenant]) -> None:
    a, b = pair
    fetch = BusFetcher(harness.operator)
    mine = (await harness.operator.request(sub.GET_ISSUER, a.name, iss.GetIssuer())).dids
    theirs = (await harness.operator.request(sub.GET_ISSUER, b.name, iss.GetIssuer())).dids
    await verify_credential(a.credential.vc_jwt, trusted_issuers=mine, fetcher=fetch)  # the control
    with pytest.raises(CredentialError) as caught:
        await verify_credential(a.credential.vc_jwt, trusted_issuers=theirs, fetcher=fetch)
    assert caught.value.reason == "unknown_issuer"
    # A's status list URL names A: asked for B's list id under A's URL, the bus answers not found.
    url = a.credential.status_list_credential
    their_list = b.credential.status_list_credential.rsplit("/", 1)[1]
    with pytest.raises(NotFound):
        await fetch.status_list(url.rsplit("/", 1)[0] + "/" + their_list)


async def test_a_delegation_rooted_in_one_tenant_is_refused_in_another(harness: Harness,
                                                                      pair: tuple[Tenant, Tenant]) -> None:
    """A resource server's service checking A's chain against B: B's authority is not its root."""
    a, b = pair
    service = await Bus.connect(harness.settings.nats_url or "", name="test-token-service",
                                signer=harness.keyring.signer("service", "token"),
                                registry=harness.keyring.registry(), root=harness.root)
    try:
        check = dlg.CheckChain(chain=a.root.chain, holder_did=a.agent.did)
        assert (await service.request(sub.DELEGATION_CHECK, a.name, check)).holder == a.agent.did  # the control
        with pytest.raises(DelegationInvalid):
            await service.request(sub.DELEGATION_CHECK, b.name, check)
    finally:
        await service.close()
    # Nor can A's agent hand its capabilities to B's agent.
    with pytest.raises((DelegationInvalid, NotFound, Forbidden)):
        await delegation.delegate(a.agent, b.agent.did, [RECORDS], 600, parent=a.root)


async def test_an_on_behalf_of_exchange_cannot_name_another_tenants_agent(harness: Harness,
                                                                          pair: tuple[Tenant, Tenant]) -> None:
    a, b = pair
    idp = DevIdp()
    await idp.start()
    try:
        await harness.operator.request(sub.IDP_ADD, b.name, tok.AddIdp(idp=tok.IdentityProvider(
            issuer=idp.issuer, discovery_url=idp.discovery_url, audiences=[AUDIENCE],
            scope_grants={"ledger.read": [ledger(["read"], path="/accounts/*")]})))
        user_token = idp.mint("alice", audience=AUDIENCE, scopes=["ledger.read"])
        code = await _code(b.orch.token_for(a.agent.agent_id, user_token, [ledger()], AUDIENCE))
        assert code in ("not_found", "forbidden"), code
    finally:
        await idp.stop()


async def test_audit_of_one_tenant_never_lists_another(harness: Harness, pair: tuple[Tenant, Tenant]) -> None:
    a, b = pair
    op = harness.operator
    about_b = await op.request(sub.AUDIT_QUERY, a.name, au.QueryLog(agent_id=b.agent.agent_id))
    assert about_b.entries == []
    everything = await op.request(sub.AUDIT_QUERY, a.name, au.QueryLog(limit=500))
    assert everything.entries
    for entry in everything.entries:
        assert b.name not in entry.leaf and b.agent.agent_id not in entry.leaf
    # An agent of B asking B's log about A's agent sees nothing either.
    assert (await b.agent.bus.request(sub.AUDIT_QUERY, b.name, au.QueryLog(agent_id=a.agent.agent_id))).entries == []
