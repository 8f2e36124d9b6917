"""Who the load acts as: one tenant with its rules, an orchestrator, and a pool of agents.

Also the fresh requests made after the faults: one new piece of work for each worker, each of
which must be accepted at its first attempt (a worker that only seems up would fail them).
"""

from __future__ import annotations

from functools import partial

from agentid import delegation
from agentid.agent import Agent
from agentid.audit import AuditClient
from agentid.deployment import Deployment
from agentid.keys import AgentKey
from agentid.orchestrator import Orchestrator
from contracts import attestation as att
from contracts import delegation as dlg
from contracts import registration as reg
from contracts import subjects as sub
from contracts import tokens as tok
from shared.keys import PrivateKey
from tests.faults.cluster import Cluster
from tests.faults.load import AUDIENCE, DELEGATED, ROOT_RECORDS, Parties, Tally
from tests.helpers import PERMIT_STANDARD, SPAWN_FIELDS, TOKEN_CONFIG, ledger

POOL_AGENTS = 4  # agents that ask for tokens and delegate to each other
# Limits far above what the load asks for: a refusal for rate or quota would be a wrong answer.
AUTHORITY = reg.Authority(tiers=["standard"], purposes=["testing"], data_classes=["public", "internal"],
                          max_lifetime_s=3600, max_live_agents=1_000_000, spawns_per_minute=1_000_000)
DELEGATION_RULES = dlg.DelegationConfig(max_depth=5, base=[dlg.BaseCapabilities(tiers=["standard"],
                                                                                capabilities=[ROOT_RECORDS])])


def deployment(c: Cluster) -> Deployment:
    return Deployment.from_json({"nats_url": c.nats.url, "nats_prefix": c.prefix, "keyring": c.keyring.public()})


async def set_up(c: Cluster, tally: Tally) -> Parties:
    """The tenant, its token, policy and delegation rules, the orchestrator, the agent pool and
    each pool agent's root (before any fault, so these are plain requests)."""
    op, tenant = c.operator, c.tenant
    await op.request(sub.CREATE_TENANT, tenant, reg.CreateTenant())
    await op.request(sub.TOKEN_CONFIG_SET, tenant, tok.SetTokenConfig(config=TOKEN_CONFIG))
    await op.request(sub.POLICY_SET, tenant, tok.SetPolicy(policies=PERMIT_STANDARD))
    await op.request(sub.DELEGATION_CONFIG_SET, tenant, dlg.SetDelegationConfig(config=DELEGATION_RULES))
    key = PrivateKey.generate()
    record = await op.request(sub.ADD_ORCHESTRATOR, tenant, reg.AddOrchestrator(
        name="load", public_jwk=key.public.jwk(), authority=AUTHORITY))
    orch = await Orchestrator.connect(tenant=tenant, orchestrator_id=record.orchestrator_id,
                                      spiffe_id=record.spiffe_id, key=key, deployment=deployment(c))
    parties = Parties(orch, [], {})
    for _ in range(POOL_AGENTS):
        agent_key = AgentKey.generate()
        request = orch.spawn_request(agent_key, **SPAWN_FIELDS)
        identity = await tally.attempt("spawn", partial(orch.submit, request))
        tally.spawns[request.spawn_id] = identity.agent_id
        agent = await Agent.connect(identity, agent_key, deployment=deployment(c), renew=False)
        parties.agents.append(agent)
        parties.roots[agent.agent_id] = await delegation.root(agent)
    return parties


async def close(parties: Parties) -> None:
    for agent in parties.agents:
        await agent.close()
    await parties.orchestrator.close()


async def fresh_requests(c: Cluster, parties: Parties, tally: Tally) -> None:
    """One new piece of work for every worker. The caller checks that none was refused, even once;
    spawns, tokens and delegations are tallied with the load's, so their effects are checked too."""
    tenant, orch = c.tenant, parties.orchestrator
    giver = parties.agents[0]
    key = AgentKey.generate()
    request = orch.spawn_request(key, **SPAWN_FIELDS)
    identity = await tally.attempt("spawn", lambda: orch.submit(request))                  # registration
    tally.spawns[request.spawn_id] = identity.agent_id
    agent = await Agent.connect(identity, key, deployment=deployment(c), renew=False)
    try:
        assert (await agent.credential()).agent_id == agent.agent_id                       # issuance
        issued = await tally.attempt("token", lambda: agent.bus.request(                   # token
            sub.TOKEN_ISSUE, tenant, tok.IssueToken(authorization_details=[ledger(["read"])], audience=AUDIENCE)))
        tally.tokens[issued.jti] = agent.agent_id
        await delegation.root(agent)                                                       # delegation
        link = await tally.attempt("delegation", lambda: delegation.delegate(
            giver, agent.did, [DELEGATED], 600, parent=parties.roots[giver.agent_id]))
        assert link.record.audience_agent_id == agent.agent_id
        tally.delegations[link.cid] = (giver.agent_id, agent.agent_id)
        challenge = await agent.bus.request(sub.ATTESTATION_CHALLENGE, tenant, att.RequestChallenge())  # attestation
        assert challenge.nonce
        head = await AuditClient(agent.bus, tenant).checkpoint()                           # audit
        assert head.checkpoint.size > 0
    finally:
        await agent.close()
