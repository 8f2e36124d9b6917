"""`agentid demo`: the whole story against a running stack, or an embedded one, told step by step.

The JSON report (DESIGN section 9) holds every artifact exactly as an outside verifier needs it.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import tempfile
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import msgspec

from agentid.agent import Agent
from agentid.artifacts import trust_for
from agentid.artifacts import verify as verify_artifact
from agentid.credentials import BusFetcher, CredentialError, verify_credential, verify_presentation
from agentid.demo_attestation import attestation_step
from agentid.demo_audit import audit_step
from agentid.demo_delegation import delegation_step
from agentid.deployment import Deployment
from agentid.devidp import DevIdp
from agentid.keys import AgentKey
from agentid.operator import Target, locate, operator_bus
from agentid.jwks import StaticJwks
from agentid.orchestrator import Orchestrator
from agentid.verifier import Verifier
from contracts import issuance as iss
from contracts import registration as reg
from contracts import subjects as sub
from contracts import tokens as tok
from shared import jose
from shared.bus import Bus
from shared.config import Settings
from shared.errors import AgentidError, Unavailable
from shared.ids import new_id
from shared.keyring import Keyring
from shared.keys import PrivateKey

TENANT = "demo"
LEDGER = "https://ledger.bank.example"
LEDGER_TYPE = {"type": "object", "required": ["type", "locations", "actions"],
               "properties": {"type": {"const": "ledger"},
                              "locations": {"type": "array", "items": {"type": "string", "pattern": "^https://ledger\\.bank\\.example/"}},
                              "actions": {"type": "array", "items": {"enum": ["read", "write", "pay"]}}}}
DEMO_TOKEN_CONFIG = tok.TokenConfig(detail_types={"ledger": LEDGER_TYPE}, audiences=[LEDGER])
DEMO_POLICY = """
@id("loan-agents-work-on-loans")
permit(principal is Agent, action in [Action::"read", Action::"write"], resource)
when { principal.purpose == "loan-decisions" && resource.type == "ledger" };
@id("research-agents-read")
permit(principal is Agent, action == Action::"read", resource)
when { principal.purpose == "document-research" && resource.type == "ledger" };
@id("no-writes-without-a-user")
forbid(principal, action == Action::"write", resource) unless { context.onBehalfOf };
"""


def ledger_detail(actions: list[str], path: str) -> dict[str, Any]:
    return {"type": "ledger", "locations": [f"https://ledger.bank.example{path}"], "actions": actions}


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
    cleanups: list[Callable[[], Awaitable[None]]] = field(default_factory=list)
    obo_token: str | None = None  # the loan agent's on-behalf-of token for Alice

    @property
    def deployment(self) -> Deployment:
        return Deployment.from_json({
            "nats_url": self.target.nats_url, "nats_prefix": self.target.nats_prefix,
            "http_url": self.target.http_url, "keyring": self.keyring.public()},
            nats_nkey_seed=self.settings.nkey_seed)  # the demo acts for everyone: the operator's user


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
            yield local, Target(stack.nats_url, local.nats_prefix, stack.database_url, stack.http_url)


async def run(settings: Settings, say: Callable[[str], None] = print) -> dict[str, Any]:
    async with _deployment(settings, say) as (local, target):
        keyring = Keyring.load(local.keyring_path)
        operator = await operator_bus(local, target=target, keyring=keyring)
        ctx = DemoContext(local, target, keyring, operator, say)
        try:
            await spawn_agents(ctx)
            await workload_identity(ctx)
            await attestation_step(ctx)
            await credentials(ctx)
            await on_behalf_of(ctx)
            await access_token(ctx)
            await delegation_step(ctx, mint=_mint_delegated, after_revocation=_after_revocation(ctx))
            await artifact(ctx)
            await audit_step(ctx)
            return ctx.report
        finally:
            for cleanup in ctx.cleanups:
                await cleanup()
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


async def access_token(ctx: DemoContext) -> None:
    """The research agent asks for a token for one precise action, at the gateway's OAuth token
    endpoint (private_key_jwt + DPoP, over HTTP) when the stack runs one, else on the bus; then it
    calls the ledger with it and a DPoP proof made with its own key; the ledger's Verifier checks
    both offline, with the token keys from the gateway's jwks_uri."""
    agent = ctx.agents[1]
    detail = ledger_detail(["read"], "/loans/L-1001")
    if ctx.target.http_url:
        import httpx

        from agentid.oauth_client import client_credentials

        async with httpx.AsyncClient(timeout=10) as http:
            issued = await client_credentials(http, ctx.target.http_url, TENANT, agent.key.private, agent.spiffe_id,
                                              [detail], LEDGER)
            jwks = (await http.get(issued.metadata["jwks_uri"])).json()
        ctx.say(f"{agent.agent_id}: POST {issued.metadata['token_endpoint']} (client_credentials, "
                "private_key_jwt, DPoP)")
    else:
        issued = await agent.token([detail], LEDGER)  # type: ignore[assignment]
        jwks = msgspec.to_builtins(await ctx.operator.request(sub.TOKEN_JWKS, TENANT, tok.GetJwks()))
    htm, htu = "GET", f"{LEDGER}/loans/L-1001"
    proof = agent.dpop_proof(htm, htu, issued.access_token)
    iss_url = jose.split(issued.access_token)[1]["iss"]
    verifier = Verifier(issuer=iss_url, audience=LEDGER, jwks=StaticJwks(jwks))
    await verifier.start()
    try:
        checked = await verifier.verify(htm, htu, f"DPoP {issued.access_token}", proof, action="read", resource=htu)
    finally:
        await verifier.aclose()
    ctx.report["access_token"] = {"token": issued.access_token, "iss": iss_url, "jwks": jwks, "dpop_proof": proof,
                                  "htm": htm, "htu": htu,
                                  "verified": {"agent": checked.agent_spiffe_id, "jti": checked.jti,
                                               "jkt": checked.jkt, "action": "read", "resource": htu}}
    ctx.say(f"{agent.agent_id}: token {checked.jti} for read on {htu}, DPoP-bound (cnf.jkt {checked.jkt[:12]}...), "
            f"{issued.expires_in}s; the ledger verified token + proof + details")


async def artifact(ctx: DemoContext) -> None:
    """The loan agent signs its decision report for Alice; anyone can later check who signed it,
    for whom, with which credential, and that it was logged when it says, without calling us."""
    loan_agent = ctx.agents[0]
    content = json.dumps({"loan": "L-1001", "applicant": "A-7731", "decision": "approve", "amount": "25000.00",
                          "currency": "EUR", "reasons": ["income verified", "debt ratio 0.21"]}, indent=2)
    bundle = await loan_agent.sign(content.encode(), "application/json", purpose="loan decision",
                                   name="decision-L-1001.json", on_behalf_of=ctx.obo_token)
    result = await verify_artifact(bundle, content.encode(), await trust_for(ctx.operator, TENANT))
    full = bundle.to_json()
    ctx.report["artifact"] = {"content": content, "bundle": {
        k: full[k] for k in ("dsse_envelope", "statement", "credential_vc_jwt", "leaf", "inclusion_proof",
                             "checkpoint", "log_public_key")}}
    ctx.say(f"{loan_agent.agent_id} signed decision-L-1001.json for {result.on_behalf_of}; logged at index "
            f"{result.log_index}; verified offline against the issuer and the log key")


async def _mint_delegated(agent: Agent, link: Any) -> str:
    """The research agent's token for the one loan file the loan agent delegated to it."""
    detail = ledger_detail(["read"], "/loans/L-1001")
    return (await agent.token([detail], LEDGER, delegation=list(link.chain))).access_token


def _after_revocation(ctx: DemoContext) -> Callable[[Agent, Any, str | None], Awaitable[dict[str, Any]]]:
    async def after(agent: Agent, link: Any, token: str | None) -> dict[str, Any]:
        """What failed once the link was revoked: the token (introspection) and a new token request."""
        out: dict[str, Any] = {}
        if token is not None:
            info = await ctx.operator.request(sub.TOKEN_INTROSPECT, TENANT, tok.Introspect(token=token))
            out["token_introspection_active"] = info.active
        agent._tokens.clear()
        try:
            await _mint_delegated(agent, link)
            out["new_token"] = "issued (unexpected)"
        except AgentidError as exc:
            out["new_token"] = (exc.detail or {}).get("reason", exc.code.value)
        ctx.say(f"After the revocation: token active {out.get('token_introspection_active')}, "
                f"a new token from the chain is refused ({out['new_token']})")
        return out
    return after


async def _next_credential(ctx: DemoContext, agent: Agent) -> iss.CredentialRecord:
    """The agent's credential once a newer one (stating its attested posture) has been issued."""
    issued = asyncio.Event()

    async def on_issued(msg: Any) -> None:
        if msgspec.json.decode(msg.data, type=iss.CredentialIssued).agent_id == agent.agent_id:
            issued.set()

    watch = await ctx.operator.nc.subscribe(sub.CREDENTIAL_ISSUED.subject(TENANT, ctx.target.nats_prefix), cb=on_issued)
    try:
        record = await agent.credential()
        if not record.attested:
            await asyncio.wait_for(issued.wait(), 10)
            record = await agent.credential()
        return record
    finally:
        await watch.unsubscribe()


async def on_behalf_of(ctx: DemoContext) -> None:
    """Alice signs in at the bank's identity provider (here a local test provider, over real HTTP);
    the orchestrator exchanges her token for one the loan agent uses with its own key, and the loan
    agent hands a narrower slice to a sub-agent. Her token never reaches an agent."""
    assert ctx.orchestrator is not None
    idp = DevIdp()
    await idp.start()
    ctx.cleanups.append(idp.stop)
    audience = "https://agents.bank.example"
    await ctx.operator.request(sub.TOKEN_CONFIG_SET, TENANT, tok.SetTokenConfig(config=DEMO_TOKEN_CONFIG))
    await ctx.operator.request(sub.POLICY_SET, TENANT, tok.SetPolicy(policies=DEMO_POLICY))
    await ctx.operator.request(sub.IDP_ADD, TENANT, tok.AddIdp(idp=tok.IdentityProvider(
        issuer=idp.issuer, discovery_url=idp.discovery_url, audiences=[audience],
        group_grants={"loan-officers": [ledger_detail(["read", "write"], "/loans/*")]})))
    ctx.say(f"Trusting identity provider {idp.issuer} (a local test provider) for tenant {TENANT}")
    user_token = idp.mint("alice@bank.example", audience=audience, groups=["loan-officers"])
    loan_agent = ctx.agents[0]
    obo = await ctx.orchestrator.token_for(loan_agent.agent_id, user_token, [ledger_detail(["read", "write"], "/loans/*")],
                                           LEDGER)
    ctx.obo_token = obo.access_token
    key = AgentKey.generate("ES256")
    helper = await ctx.orchestrator.spawn(key, purpose="loan-decisions", tier="standard", data_class="confidential",
                                          model={"name": "credit-llm", "version": "2026.10"},
                                          controller={"type": "user", "id": "alice@bank.example"},
                                          parent_agent_id=loan_agent.agent_id)
    sub_agent = await Agent.connect(helper, key, deployment=ctx.deployment, renew=False)
    ctx.agents.append(sub_agent)
    nested = await loan_agent.hand_on(obo.access_token, sub_agent.agent_id, [ledger_detail(["read"], "/loans/L-1001")],
                                      LEDGER)
    claims = jose.split(nested.access_token)[1]
    ctx.report["obo"] = {"subject_token_issuer": idp.issuer, "token": nested.access_token}
    ctx.say(f"On behalf of {claims['sub']}: {sub_agent.agent_id} acts (act.sub), "
            f"after {claims['act']['act']['sub'].rsplit('/', 1)[-1]}; bound to the sub-agent's key")


async def credentials(ctx: DemoContext) -> None:
    """Each agent's passport, checked like an outside verifier would; one agent revoked."""
    say = ctx.say
    fetcher = BusFetcher(ctx.operator)
    issuer = await ctx.operator.request(sub.GET_ISSUER, TENANT, iss.GetIssuer())
    ctx.report["issuer"] = {"did": issuer.did, "did_document": issuer.did_document, "jwks": issuer.jwks}
    say(f"Credential issuer {issuer.did}")
    attested = ctx.report.get("attestation", {}).get("agent_id")
    for agent, entry in zip(ctx.agents, ctx.report["agents"]):
        record = await agent.credential()
        while agent.agent_id == attested and not record.attested:
            record = await _next_credential(ctx, agent)
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
