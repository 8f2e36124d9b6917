"""`agentid demo`: the whole story against a running stack, or an embedded one, told step by step.

The JSON report (DESIGN section 9) holds every artifact exactly as an outside verifier needs it.
"""

from __future__ import annotations

import contextlib
import tempfile
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import msgspec

from agentid.agent import Agent
from agentid.deployment import Deployment
from agentid.keys import AgentKey
from agentid.operator import Target, locate, operator_bus
from agentid.orchestrator import Orchestrator
from contracts import registration as reg
from contracts import subjects as sub
from shared.bus import Bus
from shared.config import Settings
from shared.errors import Unavailable
from shared.keyring import Keyring
from shared.keys import PrivateKey
from shared.ids import new_id

TENANT = "demo"


@dataclass
class DemoContext:
    settings: Settings
    target: Target
    keyring: Keyring
    operator: Bus
    say: Callable[[str], None]
    report: dict[str, Any] = field(default_factory=dict)
    agents: list[Agent] = field(default_factory=list)
    orchestrator: Orchestrator | None = None

    @property
    def deployment(self) -> Deployment:
        return Deployment.from_json({
            "nats_url": self.target.nats_url, "nats_prefix": self.target.nats_prefix,
            "http_url": self.target.http_url, "keyring": self.keyring.public()})


@contextlib.asynccontextmanager
async def _deployment(settings: Settings, say: Callable[[str], None]) -> AsyncIterator[tuple[Settings, Target]]:
    """The running stack if there is one, else an embedded stack for the length of the demo."""
    try:
        yield settings, locate(settings)
        return
    except Unavailable:
        pass
    from services.stack import Stack

    with tempfile.TemporaryDirectory(prefix="agentid-demo-") as tmp:
        local = settings.model_copy(update={"data_dir": Path(tmp)})
        say("No running stack found: starting an embedded one (nats-server + Postgres + workers)...")
        async with Stack(local) as stack:
            say(f"  NATS {stack.nats_url}  Postgres {stack.database_url}")
            yield local, Target(stack.nats_url, local.nats_prefix, stack.database_url, None)


async def run(settings: Settings, say: Callable[[str], None] = print) -> dict[str, Any]:
    async with _deployment(settings, say) as (local, target):
        keyring = Keyring.load(local.keyring_path)
        operator = await operator_bus(local, target=target, keyring=keyring)
        ctx = DemoContext(local, target, keyring, operator, say)
        try:
            await spawn_agents(ctx)
            await workload_identity(ctx)
            return ctx.report
        finally:
            for agent in ctx.agents:
                await agent.close()
            if ctx.orchestrator is not None:
                await ctx.orchestrator.close()
            await operator.drain()


async def spawn_agents(ctx: DemoContext) -> None:
    say = ctx.say
    tenant = await ctx.operator.request(sub.CREATE_TENANT, TENANT, reg.CreateTenant())
    say(f"Tenant {tenant.tenant!r}, trust domain {tenant.trust_domain}")
    orch_key = PrivateKey.generate()
    orch = await ctx.operator.request(sub.ADD_ORCHESTRATOR, TENANT, reg.AddOrchestrator(
        name=f"lending-orchestrator-{new_id()[-6:].lower()}", public_jwk=orch_key.public.jwk(),
        authority=reg.Authority(tiers=["standard", "high"], purposes=["loan-decisions", "document-research"],
                                data_classes=["internal", "confidential"], max_lifetime_s=3600,
                                max_live_agents=10)))
    say(f"Orchestrator {orch.orchestrator_id}\n  {orch.spiffe_id}")
    ctx.report.update({
        "tenant": tenant.tenant, "trust_domain": tenant.trust_domain,
        "orchestrator": {"id": orch.orchestrator_id, "spiffe_id": orch.spiffe_id},
        "agents": [],
    })
    orchestrator = await Orchestrator.connect(tenant=TENANT, orchestrator_id=orch.orchestrator_id,
                                              spiffe_id=orch.spiffe_id, key=orch_key, deployment=ctx.deployment)
    ctx.orchestrator = orchestrator
    specs = [
        dict(purpose="loan-decisions", tier="high", data_class="confidential",
             model={"name": "credit-llm", "version": "2026.10", "digest": "sha256:" + "ab" * 32},
             tools=[{"name": "credit-bureau", "version": "3.2"}],
             controller={"type": "user", "id": "alice@bank.example", "display_name": "Alice"}),
        dict(purpose="document-research", tier="standard", data_class="internal",
             model={"name": "research-llm", "version": "1.4"},
             tools=[{"name": "search", "version": "1.0"}],
             controller={"type": "service", "id": "loan-desk"}),
    ]
    for spec in specs:
        # ES256 keys: their SVIDs also work with AWS IAM Roles Anywhere (which signs with ECDSA or RSA).
        key = AgentKey.generate("ES256")
        identity = await orchestrator.spawn(key, **spec)
        say(f"Spawned {identity.agent_id} ({identity.purpose}, tier {identity.tier})\n"
            f"  SPIFFE ID {identity.spiffe_id}\n  DID       {identity.did}")
        ctx.agents.append(await Agent.connect(identity, key, deployment=ctx.deployment, renew=False))
        ctx.report["agents"].append({
            "id": identity.agent_id, "spiffe_id": identity.spiffe_id, "did": identity.did,
            "public_jwk": identity.public_jwk,
        })


async def workload_identity(ctx: DemoContext) -> None:
    """Each agent's X.509-SVID and a JWT-SVID, and the bundle that verifies them."""
    bundle = await ctx.agents[0].bundle()
    ctx.report["trust_bundle"] = bundle.jwks
    for agent, entry in zip(ctx.agents, ctx.report["agents"]):
        assert agent.svid is not None
        audience = f"spiffe://{agent.identity.trust_domain}/tool/ledger"
        entry["x509_svid_pem"] = agent.svid.cert_pem
        entry["x509_chain_pem"] = "".join(agent.svid.chain_pem)
        entry["jwt_svid"] = await agent.jwt_svid(audience)
        ctx.say(f"{agent.agent_id}: X.509-SVID serial {agent.svid.serial} until {agent.svid.not_after:%H:%M:%S}Z, "
                f"JWT-SVID for {audience}")
    ctx.say(f"Trust bundle: {len(bundle.jwks['keys'])} keys, sequence {bundle.sequence}")


def to_json(report: dict[str, Any]) -> bytes:
    return msgspec.json.format(msgspec.json.encode(report), indent=2)
