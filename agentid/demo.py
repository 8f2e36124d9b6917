"""`agentid demo`: the whole story against a running stack, or an embedded one, told step by step.

The JSON report (DESIGN section 9) holds every artifact exactly as an outside verifier needs it.
"""

from __future__ import annotations

import asyncio
import contextlib
import tempfile
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import msgspec

from agentid.agent import Agent
from agentid.credentials import BusFetcher, CredentialError, verify_credential, verify_presentation
from agentid.deployment import Deployment
from agentid.keys import AgentKey
from agentid.operator import Target, locate, operator_bus
from agentid.orchestrator import Orchestrator
from contracts import issuance as iss
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
            await credentials(ctx)
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


async def credentials(ctx: DemoContext) -> None:
    """Each agent's passport, checked like an outside verifier would; one agent revoked."""
    say = ctx.say
    fetcher = BusFetcher(ctx.operator)
    issuer = await ctx.operator.request(sub.GET_ISSUER, TENANT, iss.GetIssuer())
    ctx.report["issuer"] = {"did": issuer.did, "did_document": issuer.did_document, "jwks": issuer.jwks}
    say(f"Credential issuer {issuer.did}")
    for agent, entry in zip(ctx.agents, ctx.report["agents"]):
        record = await agent.credential()
        entry["credential_vc_jwt"] = record.vc_jwt
        verified = await verify_credential(record.vc_jwt, trusted_issuers=issuer.dids, fetcher=fetcher)
        subject = verified.claims["credentialSubject"]
        say(f"{agent.agent_id}: credential verified (purpose {subject['purpose']}, tier {subject['policyTier']}, "
            f"data class {subject['dataAccessClass']}, status index {record.status_index})")
    nonce = new_id()
    vp = await ctx.agents[0].present(audience="https://ledger.bank.example", nonce=nonce)
    presented = await verify_presentation(vp, audience="https://ledger.bank.example", nonce=nonce,
                                          trusted_issuers=issuer.dids, fetcher=fetcher)
    say(f"{ctx.agents[0].agent_id} presented its credential to https://ledger.bank.example: holder {presented.holder}")

    # A short-lived helper agent is spawned and then revoked: its status bit flips.
    assert ctx.orchestrator is not None
    key = AgentKey.generate("ES256")
    helper = await ctx.orchestrator.spawn(key, purpose="document-research", tier="standard", data_class="internal",
                                          model={"name": "research-llm", "version": "1.4"},
                                          controller={"type": "service", "id": "loan-desk"})
    scratch = await Agent.connect(helper, key, deployment=ctx.deployment, renew=False)
    ctx.agents.append(scratch)
    record = await scratch.credential()
    revoked = asyncio.Event()

    async def on_revoked(msg: Any) -> None:
        if msgspec.json.decode(msg.data, type=iss.CredentialRevoked).agent_id == helper.agent_id:
            revoked.set()

    watch = await ctx.operator.nc.subscribe(sub.CREDENTIAL_REVOKED.subject(TENANT, ctx.target.nats_prefix), cb=on_revoked)
    await ctx.orchestrator.revoke(helper.agent_id, reason="demo: task abandoned")
    await asyncio.wait_for(revoked.wait(), 10)
    await watch.unsubscribe()
    list_url = record.status_list_credential
    ctx.report["status_list"] = {"vc_jwt": await fetcher.status_list(list_url), "revoked_index": record.status_index}
    try:
        await verify_credential(record.vc_jwt, trusted_issuers=issuer.dids, fetcher=fetcher)
    except CredentialError as exc:
        say(f"{helper.agent_id} revoked: its credential now fails with {exc.reason!r} (status index {record.status_index})")


def to_json(report: dict[str, Any]) -> bytes:
    return msgspec.json.format(msgspec.json.encode(report), indent=2)
