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
        try:
            ctx = DemoContext(local, target, keyring, operator, say)
            await spawn_agents(ctx)
            return ctx.report
        finally:
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
    deployment = Deployment.from_json({
        "nats_url": ctx.target.nats_url, "nats_prefix": ctx.target.nats_prefix,
        "http_url": ctx.target.http_url, "keyring": ctx.keyring.public()})
    async with await Orchestrator.connect(tenant=TENANT, orchestrator_id=orch.orchestrator_id,
                                          spiffe_id=orch.spiffe_id, key=orch_key,
                                          deployment=deployment) as orchestrator:
        specs = [
            dict(purpose="loan-decisions", tier="high", data_class="confidential",
                 model={"name": "credit-llm", "version": "2026.10",
                        "digest": "sha256:" + "ab" * 32},
                 tools=[{"name": "credit-bureau", "version": "3.2"}],
                 controller={"type": "user", "id": "alice@bank.example", "display_name": "Alice"}),
            dict(purpose="document-research", tier="standard", data_class="internal",
                 model={"name": "research-llm", "version": "1.4"},
                 tools=[{"name": "search", "version": "1.0"}],
                 controller={"type": "service", "id": "loan-desk"}),
        ]
        for spec in specs:
            key = AgentKey.generate()
            agent = await orchestrator.spawn(key, **spec)
            say(f"Spawned {agent.agent_id} ({agent.purpose}, tier {agent.tier})\n"
                f"  SPIFFE ID {agent.spiffe_id}\n  DID       {agent.did}")
            ctx.report["agents"].append({
                "id": agent.agent_id, "spiffe_id": agent.spiffe_id, "did": agent.did,
                "public_jwk": agent.public_jwk,
            })


def to_json(report: dict[str, Any]) -> bytes:
    return msgspec.json.format(msgspec.json.encode(report), indent=2)
