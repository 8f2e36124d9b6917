"""On behalf of a user: RFC 8693 exchange of a real OIDC user token (RS256, served over HTTP by a
local provider) for a token naming the user as `sub` and the agent as `act`, bound to the agent's
key; every refusal with its code; re-exchange to a sub-agent keeps the chain and only narrows."""

from __future__ import annotations

from collections.abc import AsyncIterator

import jwt
import time

import msgspec
import pytest

from agentid.devidp import DevIdp
from contracts import subjects as sub
from contracts import tokens as tok
from services.token.exchange import make_actor_token
from shared.errors import Forbidden, InvalidGrant, InvalidRequest, InvalidScope, PolicyDenied
from shared.keys import PrivateKey
from tests.helpers import Harness, ledger

pytestmark = pytest.mark.integration

AUDIENCE = "https://agents.bank.example"
POLICY = """
@id("agents-read-for-their-users")
permit(principal is Agent, action == Action::"read", resource) when { context.onBehalfOf };
@id("tellers-pay")
permit(principal is Agent, action == Action::"pay", resource) when { context.onBehalfOf && context.user.groups.contains("tellers") };
"""


@pytest.fixture
async def idp() -> AsyncIterator[DevIdp]:
    provider = DevIdp()
    await provider.start()
    yield provider
    await provider.stop()


async def _trust(harness: Harness, tenant: str, idp: DevIdp, **overrides: object) -> None:
    await harness.token_rules(tenant, policy=POLICY)
    provider = tok.IdentityProvider(
        issuer=idp.issuer, discovery_url=idp.discovery_url, audiences=[AUDIENCE],
        scope_grants={"ledger.read": [ledger(["read"], path="/accounts/*")]},
        group_grants={"tellers": [ledger(["read", "pay"], path="/accounts/*")]})
    provider = msgspec.structs.replace(provider, **overrides)
    await harness.operator.request(sub.IDP_ADD, tenant, tok.AddIdp(idp=provider))


async def _setup(harness: Harness, tenant: str, idp: DevIdp):
    await _trust(harness, tenant, idp)
    orch, _, _ = await harness.new_orchestrator(tenant)
    agent, key = await harness.new_agent(orch)
    return orch, agent, key


def _claims(token: str) -> dict:
    return jwt.decode(token, options={"verify_signature": False})


async def test_exchange_names_the_user_and_the_agent(harness: Harness, tenant: str, idp: DevIdp) -> None:
    orch, agent, key = await _setup(harness, tenant, idp)
    user_token = idp.mint("alice", audience=AUDIENCE, scopes=["ledger.read"])
    issued = await orch.token_for(agent.agent_id, user_token, [ledger()], "https://ledger.example")
    claims = _claims(issued.access_token)
    assert claims["sub"] == "alice" and claims["subject_issuer"] == idp.issuer
    assert claims["act"] == {"sub": agent.spiffe_id, "did": agent.did}
    assert claims["cnf"] == {"jkt": key.thumbprint} and claims["client_id"] == agent.spiffe_id
    assert claims["exp"] - claims["iat"] <= 300
    info = await harness.operator.request(sub.TOKEN_INTROSPECT, tenant, tok.Introspect(token=issued.access_token))
    assert info.active and info.claims["act"]["sub"] == agent.spiffe_id
    [msg] = await harness.next_events(sub.TOKEN_ISSUED.subject(tenant, harness.root))
    event = msgspec.json.decode(msg.data, type=tok.TokenIssued)
    assert event.user == "alice" and event.act == claims["act"]
    await agent.close()
    await orch.close()


async def test_actor_named_by_an_agent_signed_actor_token(harness: Harness, tenant: str, idp: DevIdp) -> None:
    orch, agent, key = await _setup(harness, tenant, idp)
    issuer = f"{harness.stack.settings.base_url()}/tenants/{tenant}"
    request = tok.ExchangeToken(
        subject_token=idp.mint("alice", audience=AUDIENCE, scopes=["ledger.read"]),
        subject_token_type="urn:ietf:params:oauth:token-type:id_token",
        actor_token=make_actor_token(key.private, agent.spiffe_id, issuer),
        actor_token_type="urn:ietf:params:oauth:token-type:jwt",
        audience="https://ledger.example", authorization_details=[ledger()])
    issued = await orch.bus.request(sub.TOKEN_EXCHANGE, tenant, request)
    assert _claims(issued.access_token)["act"]["sub"] == agent.spiffe_id
    with pytest.raises(InvalidGrant, match="already used"):  # actor tokens are single use
        await orch.bus.request(sub.TOKEN_EXCHANGE, tenant, request)
    forged = msgspec.structs.replace(request, actor_token=make_actor_token(PrivateKey.generate(), agent.spiffe_id, issuer))
    with pytest.raises(InvalidGrant):  # signed by a key that is not the agent's
        await orch.bus.request(sub.TOKEN_EXCHANGE, tenant, forged)
    # Older than the replay guard remembers: refused as too old, so it can never be used twice.
    stale = msgspec.structs.replace(request, actor_token=make_actor_token(
        key.private, agent.spiffe_id, issuer, now=time.time() - harness.settings.max_skew_s - 1))
    with pytest.raises(InvalidGrant, match="too_old"):
        await orch.bus.request(sub.TOKEN_EXCHANGE, tenant, stale)
    await agent.close()
    await orch.close()


# -- refusals ------------------------------------------------------------------------------------
async def test_untrusted_issuer(harness: Harness, tenant: str, idp: DevIdp) -> None:
    orch, agent, _ = await _setup(harness, tenant, idp)
    stranger = DevIdp()
    with pytest.raises(InvalidGrant, match="not trusted"):
        await orch.token_for(agent.agent_id, stranger.mint("alice", audience=AUDIENCE, scopes=["ledger.read"]),
                             [ledger()], "https://ledger.example")
    await agent.close()
    await orch.close()


async def test_bad_signature_expired_and_wrong_audience(harness: Harness, tenant: str, idp: DevIdp) -> None:
    orch, agent, _ = await _setup(harness, tenant, idp)
    good = idp.mint("alice", audience=AUDIENCE, scopes=["ledger.read"])
    h, p, s = good.split(".")
    tampered = f"{h}.{p}.{s[:-6]}AAAAAA"
    expired = idp.mint("alice", audience=AUDIENCE, scopes=["ledger.read"], lifetime_s=60, now=1_700_000_000)
    elsewhere = idp.mint("alice", audience="https://other-app.example", scopes=["ledger.read"])
    # A subject identifier no OpenID provider may issue: too long, not a string, control characters.
    odd = [idp.mint("a" * 256, audience=AUDIENCE, scopes=["ledger.read"]),
           idp.mint("alice", audience=AUDIENCE, scopes=["ledger.read"], extra={"sub": 42}),
           idp.mint("alice\nbob", audience=AUDIENCE, scopes=["ledger.read"])]
    for token, reason in ((tampered, "bad_signature"), (expired, "expired"), (elsewhere, "another audience"),
                          *((t, "no usable sub") for t in odd)):
        with pytest.raises(InvalidGrant, match=reason):
            await orch.token_for(agent.agent_id, token, [ledger()], "https://ledger.example")
    await agent.close()
    await orch.close()


async def test_may_act_naming_another_agent(harness: Harness, tenant: str, idp: DevIdp) -> None:
    orch, agent, _ = await _setup(harness, tenant, idp)
    other, _ = await harness.new_agent(orch)
    token = idp.mint("alice", audience=AUDIENCE, scopes=["ledger.read"], may_act={"sub": other.spiffe_id})
    with pytest.raises(InvalidGrant, match="another actor"):
        await orch.token_for(agent.agent_id, token, [ledger()], "https://ledger.example")
    await orch.token_for(other.agent_id, token, [ledger()], "https://ledger.example")  # the one it names may
    for a in (agent, other):
        await a.close()
    await orch.close()


async def test_agent_of_another_orchestrator_or_tenant(harness: Harness, tenant: str, idp: DevIdp) -> None:
    orch, agent, _ = await _setup(harness, tenant, idp)
    rival, _, _ = await harness.new_orchestrator(tenant)
    token = idp.mint("alice", audience=AUDIENCE, scopes=["ledger.read"])
    with pytest.raises(Forbidden, match="another orchestrator"):
        await rival.token_for(agent.agent_id, token, [ledger()], "https://ledger.example")
    other_tenant = await harness.new_tenant()
    await _trust(harness, other_tenant, idp)
    foreign, _, _ = await harness.new_orchestrator(other_tenant)
    with pytest.raises(Exception) as err:  # the agent does not exist in the other tenant
        await foreign.token_for(agent.agent_id, token, [ledger()], "https://ledger.example")
    assert getattr(err.value, "code", None) in ("not_found", "forbidden")
    for o in (orch, rival, foreign):
        await o.close()
    await agent.close()


async def test_agent_may_not_present_a_user_token_itself(harness: Harness, tenant: str, idp: DevIdp) -> None:
    orch, agent, _ = await _setup(harness, tenant, idp)
    token = idp.mint("alice", audience=AUDIENCE, scopes=["ledger.read"])
    with pytest.raises(Forbidden, match="never by an agent"):
        await agent.bus.request(sub.TOKEN_EXCHANGE, tenant, tok.ExchangeToken(
            subject_token=token, subject_token_type="urn:ietf:params:oauth:token-type:id_token",
            actor_agent_id=agent.agent_id, audience="https://ledger.example", authorization_details=[ledger()]))
    await agent.close()
    await orch.close()


async def test_details_beyond_the_users_grant(harness: Harness, tenant: str, idp: DevIdp) -> None:
    orch, agent, _ = await _setup(harness, tenant, idp)
    reader = idp.mint("alice", audience=AUDIENCE, scopes=["ledger.read"])
    with pytest.raises(InvalidScope, match="beyond what the user granted"):
        await orch.token_for(agent.agent_id, reader, [ledger(["pay"])], "https://ledger.example")
    teller = idp.mint("bob", audience=AUDIENCE, groups=["tellers"])
    await orch.token_for(agent.agent_id, teller, [ledger(["pay"])], "https://ledger.example")
    nobody = idp.mint("carol", audience=AUDIENCE)
    with pytest.raises(InvalidScope):
        await orch.token_for(agent.agent_id, nobody, [ledger()], "https://ledger.example")
    await agent.close()
    await orch.close()


async def test_policy_sees_the_user(harness: Harness, tenant: str, idp: DevIdp) -> None:
    await _trust(harness, tenant, idp, group_grants={"clerks": [ledger(["read", "pay"], path="/accounts/*")]})
    orch, _, _ = await harness.new_orchestrator(tenant)
    agent, _ = await harness.new_agent(orch)
    clerk = idp.mint("dave", audience=AUDIENCE, groups=["clerks"])
    with pytest.raises(PolicyDenied, match="pay"):  # granted by the user, but policy wants a teller
        await orch.token_for(agent.agent_id, clerk, [ledger(["pay"])], "https://ledger.example")
    await agent.close()
    await orch.close()


# -- re-exchange -----------------------------------------------------------------------------------
async def test_re_exchange_keeps_the_chain_and_only_narrows(harness: Harness, tenant: str, idp: DevIdp) -> None:
    orch, parent, _ = await _setup(harness, tenant, idp)
    child, child_key = await harness.new_agent(orch, parent_agent_id=parent.agent_id)
    grandchild, _ = await harness.new_agent(orch, parent_agent_id=child.agent_id)
    user_token = idp.mint("alice", audience=AUDIENCE, groups=["tellers"])
    first = await orch.token_for(parent.agent_id, user_token, [ledger(["read", "pay"], path="/accounts/*")],
                                 "https://ledger.example")
    second = await parent.hand_on(first.access_token, child.agent_id, [ledger(["read"], path="/accounts/*")],
                                  "https://ledger.example")
    third = await child.hand_on(second.access_token, grandchild.agent_id, [ledger(["read"])], "https://ledger.example")
    claims = _claims(third.access_token)
    assert claims["sub"] == "alice"
    assert claims["act"] == {"sub": grandchild.spiffe_id, "did": grandchild.did,
                             "act": {"sub": child.spiffe_id, "did": child.did,
                                     "act": {"sub": parent.spiffe_id, "did": parent.did}}}
    info = await harness.operator.request(sub.TOKEN_INTROSPECT, tenant, tok.Introspect(token=third.access_token))
    assert info.claims["act"]["act"]["act"]["sub"] == parent.spiffe_id
    assert _claims(second.access_token)["cnf"] == {"jkt": child_key.thumbprint}
    # Widening is refused, as is handing a token one does not hold, or to a non-sub-agent.
    with pytest.raises(InvalidScope, match="only narrow"):
        await child.hand_on(second.access_token, grandchild.agent_id, [ledger(["pay"])], "https://ledger.example")
    with pytest.raises(Forbidden, match="holding"):
        await parent.hand_on(second.access_token, grandchild.agent_id, [ledger()], "https://ledger.example")
    stranger, _ = await harness.new_agent(orch)
    with pytest.raises(Forbidden, match="sub-agent"):
        await parent.hand_on(first.access_token, stranger.agent_id, [ledger()], "https://ledger.example")
    for a in (parent, child, grandchild, stranger):
        await a.close()
    await orch.close()


async def test_re_exchange_beyond_the_depth_limit(harness: Harness, tenant: str, idp: DevIdp) -> None:
    from tests.helpers import TOKEN_CONFIG

    await _trust(harness, tenant, idp)
    await harness.operator.request(sub.TOKEN_CONFIG_SET, tenant, tok.SetTokenConfig(
        config=msgspec.structs.replace(TOKEN_CONFIG, max_delegation_depth=2)))
    orch, _, _ = await harness.new_orchestrator(tenant)
    a, _ = await harness.new_agent(orch)
    b, _ = await harness.new_agent(orch, parent_agent_id=a.agent_id)
    c, _ = await harness.new_agent(orch, parent_agent_id=b.agent_id)
    t1 = await orch.token_for(a.agent_id, idp.mint("alice", audience=AUDIENCE, scopes=["ledger.read"]), [ledger()],
                              "https://ledger.example")
    t2 = await a.hand_on(t1.access_token, b.agent_id, [ledger()], "https://ledger.example")
    with pytest.raises(InvalidRequest, match="deeper"):
        await b.hand_on(t2.access_token, c.agent_id, [ledger()], "https://ledger.example")
    for x in (a, b, c):
        await x.close()
    await orch.close()


async def test_idp_key_rotation_keeps_exchanges_working(harness: Harness, tenant: str, idp: DevIdp) -> None:
    orch, agent, _ = await _setup(harness, tenant, idp)
    await orch.token_for(agent.agent_id, idp.mint("alice", audience=AUDIENCE, scopes=["ledger.read"]), [ledger()],
                         "https://ledger.example")
    idp.rotate()
    rotated = idp.mint("alice", audience=AUDIENCE, scopes=["ledger.read"])
    await orch.token_for(agent.agent_id, rotated, [ledger()], "https://ledger.example")
    await agent.close()
    await orch.close()


async def test_idp_must_be_https_and_removable(harness: Harness, tenant: str, idp: DevIdp) -> None:
    await harness.token_rules(tenant, policy=POLICY)
    with pytest.raises(InvalidRequest, match="https"):
        await harness.operator.request(sub.IDP_ADD, tenant, tok.AddIdp(idp=tok.IdentityProvider(
            issuer="http://idp.example", jwks_uri="http://idp.example/jwks", audiences=[AUDIENCE])))
    await _trust(harness, tenant, idp)
    listed = await harness.operator.request(sub.IDP_REMOVE, tenant, tok.RemoveIdp(issuer=idp.issuer))
    assert listed.idps == []
    orch, _, _ = await harness.new_orchestrator(tenant)
    agent, _ = await harness.new_agent(orch)
    with pytest.raises(InvalidGrant, match="not trusted"):
        await orch.token_for(agent.agent_id, idp.mint("alice", audience=AUDIENCE, scopes=["ledger.read"]), [ledger()],
                             "https://ledger.example")
    await agent.close()
    await orch.close()


async def test_the_user_token_is_nowhere_after_the_flow(harness: Harness, tenant: str, idp: DevIdp,
                                                       spans, caplog) -> None:
    """Neither the user's token nor its signature part is stored, put in an event, a span or a log."""
    from tests import secrets_scan

    caplog.set_level("DEBUG")
    orch, parent, _ = await _setup(harness, tenant, idp)
    child, _ = await harness.new_agent(orch, parent_agent_id=parent.agent_id)
    user_token = idp.mint("alice", audience=AUDIENCE, groups=["tellers"])
    first = await orch.token_for(parent.agent_id, user_token, [ledger(["read", "pay"], path="/accounts/*")],
                                 "https://ledger.example")
    await parent.hand_on(first.access_token, child.agent_id, [ledger()], "https://ledger.example")
    with pytest.raises(InvalidScope):  # a refusal is recorded too: it must not carry the token either
        await orch.token_for(parent.agent_id, user_token, [ledger(["write"])], "https://ledger.example")
    await harness.next_events(sub.TOKEN_DENIED.subject(tenant, harness.root))
    needles = [user_token, user_token.split(".")[2], user_token.split(".")[1]]
    found = await secrets_scan.in_database(harness, needles)
    found += await secrets_scan.in_events(harness, needles, tenant)
    found += secrets_scan.in_spans(spans, needles)
    found += secrets_scan.in_logs(caplog.records, needles)
    assert found == []
    # The scan does see what is meant to be there: the user's subject, in events and in the token index.
    assert await secrets_scan.in_events(harness, ["alice"], tenant)
    assert await secrets_scan.in_database(harness, ["alice"])
    for a in (parent, child):
        await a.close()
    await orch.close()


async def test_idp_commands(harness: Harness, tenant: str, idp: DevIdp, tmp_path) -> None:
    import asyncio
    import json
    import os
    import sys

    await harness.token_rules(tenant, policy=POLICY)
    grants = tmp_path / "grants.json"
    grants.write_text(json.dumps({"scope_grants": {"ledger.read": [ledger(["read"], path="/accounts/*")]}}))
    env = {k: v for k, v in os.environ.items() if not k.startswith("AGENTID_")}
    env.update(AGENTID_DATA_DIR=str(harness.settings.data_dir), OTEL_SDK_DISABLED="true", AGENTID_TENANT=tenant)

    async def cli(*args: str) -> tuple[int, str]:
        proc = await asyncio.create_subprocess_exec(sys.executable, "-m", "agentid.cli", *args, env=env,
                                                    stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
        out, err = await asyncio.wait_for(proc.communicate(), 60)
        return proc.returncode or 0, out.decode() + err.decode()

    code, out = await cli("idp", "add", "--issuer", idp.issuer, "--discovery", idp.discovery_url,
                          "--audience", AUDIENCE, "--grants", str(grants))
    assert code == 0 and idp.issuer in out, out
    code, out = await cli("idp", "list")
    assert code == 0 and json.loads(out)[0]["scope_grants"]["ledger.read"][0]["actions"] == ["read"]
    orch, _, _ = await harness.new_orchestrator(tenant)
    agent, _ = await harness.new_agent(orch)
    await orch.token_for(agent.agent_id, idp.mint("alice", audience=AUDIENCE, scopes=["ledger.read"]), [ledger()],
                         "https://ledger.example")
    code, out = await cli("idp", "remove", idp.issuer)
    assert code == 0
    code, out = await cli("idp", "remove", idp.issuer)
    assert code == 1 and "not_found" in out
    await agent.close()
    await orch.close()
