"""The token worker: RFC 9068 tokens bound to the agent's key, RAR details, Cedar policy (default
deny, permits, forbids), refusals with their codes, introspection, revocation and key rotation."""

from __future__ import annotations

import asyncio
import json
import os
import sys

import jwt
import msgspec
import pytest

from contracts import subjects as sub
from contracts import tokens as tok
from shared.errors import (
    AgentInactive, AttestationRequired, Forbidden, InvalidAuthorizationDetails, InvalidRequest, InvalidTarget,
    NotFound, PolicyDenied,
)
from tests.helpers import TOKEN_CONFIG, Harness, ledger

pytestmark = pytest.mark.integration


async def _agent(harness: Harness, tenant: str, policy: str | None = None, **fields: object):
    if policy is None:
        await harness.token_rules(tenant)
    else:
        await harness.token_rules(tenant, policy=policy)
    orch, _, _ = await harness.new_orchestrator(tenant)
    agent, key = await harness.new_agent(orch, **fields)
    return orch, agent, key


def _pyjwt_keys(jwks: dict) -> dict[str, object]:
    return {k["kid"]: jwt.PyJWK(k).key for k in jwks["keys"]}


async def test_token_verifies_with_plain_pyjwt_and_the_jwks(harness: Harness, tenant: str) -> None:
    orch, agent, key = await _agent(harness, tenant)
    issued = await agent.token([ledger()], "https://ledger.example")
    assert issued.token_type == "DPoP" and issued.expires_in == 300
    jwks = msgspec.to_builtins(await harness.operator.request(sub.TOKEN_JWKS, tenant, tok.GetJwks()))
    header = jwt.get_unverified_header(issued.access_token)
    assert header["typ"] == "at+jwt" and header["alg"] == "EdDSA"
    claims = jwt.decode(issued.access_token, _pyjwt_keys(jwks)[header["kid"]], algorithms=["EdDSA"],
                        audience="https://ledger.example", issuer=f"{harness.stack.settings.base_url()}/tenants/{tenant}",
                        options={"require": ["exp", "iat", "jti", "sub", "client_id"]})
    assert claims["sub"] == claims["client_id"] == agent.spiffe_id
    assert claims["cnf"] == {"jkt": key.thumbprint}
    assert claims["agent_did"] == agent.did and claims["tenant"] == tenant
    assert claims["authorization_details"] == [{"type": "ledger", "locations": ["https://ledger.example/accounts/42"],
                                                "actions": ["read"]}]
    assert claims["exp"] - claims["iat"] == 300
    assert issued.jti == claims["jti"]
    # The same request again is served from the SDK's cache.
    assert (await agent.token([ledger()], "https://ledger.example")).jti == issued.jti
    [msg] = await harness.next_events(sub.TOKEN_ISSUED.subject(tenant, harness.root))
    event = msgspec.json.decode(msg.data, type=tok.TokenIssued)
    assert event.jti == issued.jti and event.determining_policies == ["standard-agents-read-the-ledger"]
    await agent.close()
    await orch.close()


async def test_credential_id_is_carried(harness: Harness, tenant: str) -> None:
    orch, agent, _ = await _agent(harness, tenant)
    credential = await agent.credential()

    async def carried() -> bool:
        agent._tokens.clear()
        claims = jwt.decode((await agent.token([ledger()], "https://ledger.example")).access_token,
                            options={"verify_signature": False})
        return claims.get("credential_id") == credential.credential_id

    from tests.helpers import eventually

    await eventually(carried)
    await agent.close()
    await orch.close()


# -- policy ---------------------------------------------------------------------------------------
async def test_default_deny_without_a_policy(harness: Harness, tenant: str) -> None:
    await harness.operator.request(sub.TOKEN_CONFIG_SET, tenant, tok.SetTokenConfig(config=TOKEN_CONFIG))
    orch, _, _ = await harness.new_orchestrator(tenant)
    agent, _ = await harness.new_agent(orch)
    with pytest.raises(PolicyDenied, match="default deny"):
        await agent.token([ledger()], "https://ledger.example")
    [msg] = await harness.next_events(sub.TOKEN_DENIED.subject(tenant, harness.root))
    denied = msgspec.json.decode(msg.data, type=tok.TokenDenied)
    assert denied.code == "policy_denied" and denied.agent_id == agent.agent_id and "default deny" in denied.reason
    await agent.close()
    await orch.close()


async def test_permit_matches_only_what_it_names(harness: Harness, tenant: str) -> None:
    orch, agent, _ = await _agent(harness, tenant)
    await agent.token([ledger(["read"])], "https://ledger.example")
    with pytest.raises(PolicyDenied):
        await agent.token([ledger(["write"])], "https://ledger.example")
    with pytest.raises(PolicyDenied):  # one denied action denies the whole request
        await agent.token([ledger(["read", "write"])], "https://ledger.example")
    await agent.close()
    await orch.close()


async def test_forbid_overrides_permit(harness: Harness, tenant: str) -> None:
    policy = """
    @id("read-anything")
    permit(principal is Agent, action == Action::"read", resource);
    @id("no-ledger-on-behalf-of-testing")
    forbid(principal is Agent, action, resource) when { principal.purpose == "testing" && resource.type == "ledger" };
    """
    orch, agent, _ = await _agent(harness, tenant, policy=policy)
    with pytest.raises(PolicyDenied) as err:
        await agent.token([ledger()], "https://ledger.example")
    assert err.value.detail == {"determining_policies": ["no-ledger-on-behalf-of-testing"]}
    await agent.close()
    await orch.close()


async def test_data_class_above_the_agents_is_refused(harness: Harness, tenant: str) -> None:
    policy = 'permit(principal, action, resource);'
    orch, agent, _ = await _agent(harness, tenant, policy=policy)  # the agent is "internal"
    await agent.token([ledger(data_class="internal")], "https://ledger.example")
    with pytest.raises(PolicyDenied, match="above the agent"):
        await agent.token([ledger(data_class="confidential")], "https://ledger.example")
    await agent.close()
    await orch.close()


async def test_lifetime_above_300_seconds_is_capped(harness: Harness, tenant: str) -> None:
    orch, agent, _ = await _agent(harness, tenant)
    issued = await agent.token([ledger()], "https://ledger.example", lifetime_s=3600)
    claims = jwt.decode(issued.access_token, options={"verify_signature": False})
    assert issued.expires_in == 300 and claims["exp"] - claims["iat"] == 300
    shorter = await agent.token([ledger()], "https://ledger.example", lifetime_s=60)
    assert shorter.expires_in == 60
    with pytest.raises(InvalidRequest):  # outside the contract's bounds: refused before anything else
        await agent.bus.request(sub.TOKEN_ISSUE, tenant, {"authorization_details": [ledger()],
                                                          "audience": "https://ledger.example", "lifetime_s": 10**9})
    await agent.close()
    await orch.close()


async def test_policy_sees_lifetime_and_model(harness: Harness, tenant: str) -> None:
    policy = """
    permit(principal is Agent, action == Action::"read", resource)
    when { context.lifetime <= 120 && principal.model.name == "test-llm" && principal.tools.contains("calculator") };
    """
    orch, agent, _ = await _agent(harness, tenant, policy=policy)
    await agent.token([ledger()], "https://ledger.example", lifetime_s=100)
    with pytest.raises(PolicyDenied):
        await agent.token([ledger()], "https://ledger.example", lifetime_s=200)
    await agent.close()
    await orch.close()


async def test_bad_policies_are_refused_on_upload(harness: Harness, tenant: str) -> None:
    await harness.token_rules(tenant)
    before = await harness.operator.request(sub.POLICY_GET, tenant, tok.GetPolicy())
    with pytest.raises(InvalidRequest, match="does not parse"):
        await harness.operator.request(sub.POLICY_SET, tenant, tok.SetPolicy(policies="permit(principal, action"))
    schema = 'entity Agent { tier: String }; entity Resource; action read appliesTo { principal: Agent, resource: Resource };'
    with pytest.raises(InvalidRequest, match="validate"):
        await harness.operator.request(sub.POLICY_SET, tenant, tok.SetPolicy(
            policies='permit(principal, action, resource) when { principal.nosuch == 1 };', schema=schema))
    long_id = "x" * 1025  # ids travel in every decision and audit entry: bounded like the contract says
    with pytest.raises(InvalidRequest, match="at most 1024 characters"):
        await harness.operator.request(sub.POLICY_SET, tenant, tok.SetPolicy(
            policies=f'@id("{long_id}")\npermit(principal, action, resource);'))
    after = await harness.operator.request(sub.POLICY_GET, tenant, tok.GetPolicy())
    assert after.version == before.version  # nothing was stored


async def test_policy_is_hot_reloaded(harness: Harness, tenant: str) -> None:
    orch, agent, _ = await _agent(harness, tenant)
    await agent.token([ledger()], "https://ledger.example")
    await harness.operator.request(sub.POLICY_SET, tenant, tok.SetPolicy(policies='forbid(principal, action, resource);'))
    agent._tokens.clear()
    with pytest.raises(PolicyDenied):
        await agent.token([ledger()], "https://ledger.example")
    await agent.close()
    await orch.close()


# -- refusals before policy -----------------------------------------------------------------------
@pytest.mark.parametrize("detail", [
    {"type": "payments", "locations": ["https://ledger.example/x"], "actions": ["read"]},   # type not registered
    ledger(["delete"]),                                                                      # fails its schema
    {"type": "ledger", "locations": ["https://evil.example/x"], "actions": ["read"]},       # fails its schema
    {"type": "ledger", "locations": ["https://ledger.example/x"], "actions": []},           # malformed
    ledger(privileges=["admin"]),                                                           # unknown field
])
async def test_bad_authorization_details_are_refused(harness: Harness, tenant: str, detail: dict) -> None:
    orch, agent, _ = await _agent(harness, tenant)
    with pytest.raises(InvalidAuthorizationDetails):
        await agent.token([detail], "https://ledger.example")
    await agent.close()
    await orch.close()


async def test_audience_must_be_allowed(harness: Harness, tenant: str) -> None:
    orch, agent, _ = await _agent(harness, tenant)
    await agent.token([ledger()], "https://tools.example/search")  # prefix pattern
    for audience in ("https://evil.example", "https://tools.example", "https://ledger.example.evil"):
        with pytest.raises(InvalidTarget):
            await agent.token([ledger()], audience)
    await agent.close()
    await orch.close()


async def test_inactive_agent_gets_nothing(harness: Harness, tenant: str) -> None:
    orch, agent, _ = await _agent(harness, tenant)
    await orch.exit(agent.agent_id)

    async def exit_applied() -> bool:  # the token worker learns of the exit from its event
        return not await harness.db.fetchval("SELECT active FROM token.senders WHERE subject_id = $1", agent.agent_id)

    from tests.helpers import eventually

    await eventually(exit_applied)
    with pytest.raises(AgentInactive):
        await agent.token([ledger()], "https://ledger.example")
    await agent.close()
    await orch.close()


async def test_tier_requiring_attestation_is_refused_without_it(harness: Harness, tenant: str) -> None:
    config = msgspec.structs.replace(TOKEN_CONFIG, attestation_required_tiers=["high"])
    await harness.token_rules(tenant, policy='permit(principal, action, resource);', config=config)
    orch, _, _ = await harness.new_orchestrator(tenant)
    high, _ = await harness.new_agent(orch, tier="high")
    standard, _ = await harness.new_agent(orch)
    with pytest.raises(AttestationRequired):
        await high.token([ledger()], "https://ledger.example")
    await standard.token([ledger()], "https://ledger.example")
    for a in (high, standard):
        await a.close()
    await orch.close()


# -- introspection, revocation, rotation -----------------------------------------------------------
async def test_introspection_and_revocation(harness: Harness, tenant: str) -> None:
    orch, agent, _ = await _agent(harness, tenant)
    other, _ = await harness.new_agent(orch)
    issued = await agent.token([ledger()], "https://ledger.example")
    info = await harness.operator.request(sub.TOKEN_INTROSPECT, tenant, tok.Introspect(token=issued.access_token))
    assert info.active and info.claims["sub"] == agent.spiffe_id and info.claims["token_type"] == "DPoP"
    with pytest.raises(Forbidden):
        await other.bus.request(sub.TOKEN_REVOKE, tenant, tok.RevokeToken(jti=issued.jti))
    await agent.bus.request(sub.TOKEN_REVOKE, tenant, tok.RevokeToken(jti=issued.jti, reason="done"))
    info = await harness.operator.request(sub.TOKEN_INTROSPECT, tenant, tok.Introspect(token=issued.access_token))
    assert info.active is False and info.claims is None
    [msg] = await harness.next_events(sub.TOKEN_REVOKED.subject(tenant, harness.root))
    assert msgspec.json.decode(msg.data, type=tok.TokenRevoked).jti == issued.jti
    # A token of an agent that has since exited is inactive too.
    second = await other.token([ledger()], "https://ledger.example")
    await orch.exit(other.agent_id)

    async def inactive() -> bool:
        r = await harness.operator.request(sub.TOKEN_INTROSPECT, tenant, tok.Introspect(token=second.access_token))
        return r.active is False

    from tests.helpers import eventually

    await eventually(inactive)
    # Garbage, and a token of another tenant, are simply inactive.
    for token in ("not-a-token", issued.access_token[:-4] + "AAAA"):
        assert not (await harness.operator.request(sub.TOKEN_INTROSPECT, tenant, tok.Introspect(token=token))).active
    await agent.close()
    await other.close()
    await orch.close()


async def test_token_of_another_tenant_is_inactive(harness: Harness, tenant: str) -> None:
    orch, agent, _ = await _agent(harness, tenant)
    issued = await agent.token([ledger()], "https://ledger.example")
    other = await harness.new_tenant()
    assert not (await harness.operator.request(sub.TOKEN_INTROSPECT, other, tok.Introspect(token=issued.access_token))).active
    await agent.close()
    await orch.close()


async def test_key_rotation_keeps_issued_tokens_verifiable(harness: Harness, tenant: str) -> None:
    orch, agent, _ = await _agent(harness, tenant)
    old = await agent.token([ledger()], "https://ledger.example")
    jwks = await harness.operator.request(sub.TOKEN_ROTATE_KEY, tenant, tok.RotateSigningKey())
    keys = _pyjwt_keys(msgspec.to_builtins(jwks))
    assert len(keys) == 2
    new = await agent.token([ledger(path="/accounts/7")], "https://ledger.example")
    old_kid, new_kid = jwt.get_unverified_header(old.access_token)["kid"], jwt.get_unverified_header(new.access_token)["kid"]
    assert old_kid != new_kid
    for issued in (old, new):
        kid = jwt.get_unverified_header(issued.access_token)["kid"]
        jwt.decode(issued.access_token, keys[kid], algorithms=["EdDSA"], audience="https://ledger.example")
    await agent.close()
    await orch.close()


async def test_policy_test_and_jwks_from_the_cli(harness: Harness, tenant: str, tmp_path) -> None:
    await harness.token_rules(tenant)
    request = {"agent": {"id": "agt_x", "tier": "standard", "purpose": "testing", "data_class": "internal"},
               "authorization_details": [ledger()], "audience": "https://ledger.example"}
    path = tmp_path / "request.json"
    path.write_text(json.dumps(request))
    env = {k: v for k, v in os.environ.items() if not k.startswith("AGENTID_")}
    env.update(AGENTID_DATA_DIR=str(harness.settings.data_dir), OTEL_SDK_DISABLED="true", AGENTID_TENANT=tenant)

    async def cli(*args: str) -> tuple[int, str]:
        proc = await asyncio.create_subprocess_exec(sys.executable, "-m", "agentid.cli", *args, env=env,
                                                    stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
        out, err = await asyncio.wait_for(proc.communicate(), 60)
        return proc.returncode or 0, out.decode() + err.decode()

    code, out = await cli("policy", "test", str(path))
    assert code == 0 and "allow" in out and "standard-agents-read-the-ledger" in out, out
    request["authorization_details"] = [ledger(["write"])]
    path.write_text(json.dumps(request))
    code, out = await cli("policy", "test", str(path))
    assert code == 1 and "deny" in out, out
    code, out = await cli("jwks", "--tenant", tenant)
    assert code == 0 and json.loads(out)["keys"][0]["use"] == "sig"


async def test_registering_and_removing_a_resource_server_are_events(harness: Harness, tenant: str) -> None:
    from contracts import gateway as gw

    added = await harness.operator.request(sub.RS_ADD, tenant, gw.AddResourceServer(
        name="ledger", audiences=["https://ledger.example"]))
    await harness.operator.request(sub.RS_REMOVE, tenant, gw.RemoveResourceServer(client_id=added.client_id))
    with pytest.raises(NotFound):
        await harness.operator.request(sub.RS_REMOVE, tenant, gw.RemoveResourceServer(client_id=added.client_id))
    events = await harness.next_events(sub.RESOURCE_SERVER_CHANGED.subject(tenant, harness.root), n=2)
    decoded = [msgspec.json.decode(m.data, type=gw.ResourceServerChanged) for m in events]
    assert [(e.client_id, e.change, e.audiences) for e in decoded] == [
        (added.client_id, "added", ["https://ledger.example"]), (added.client_id, "removed", ["https://ledger.example"])]
    assert added.client_secret not in b"".join(m.data for m in events).decode()  # the secret is shown once, only
    assert await harness.event_count(sub.RESOURCE_SERVER_CHANGED.subject(tenant, harness.root)) == 2
