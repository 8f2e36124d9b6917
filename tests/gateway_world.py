"""The gateway tests' world: a tenant as an outside OAuth client sees it."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass

import httpx
from joserfc.jwk import ECKey

from agentid.agent import Agent
from agentid.devidp import DevIdp
from agentid.keys import AgentKey
from agentid.orchestrator import Orchestrator
from contracts import gateway as gw
from contracts import registration as reg
from contracts import subjects as sub
from contracts import tokens as tok
from shared.keys import PrivateKey
from tests import oauth_client as oc
from tests.helpers import DEFAULT_AUTHORITY, SPAWN_FIELDS, Harness, ledger

LEDGER = "https://ledger.example"
USERS = "https://agents.bank.example"


@dataclass
class World:
    """A tenant as an outside client sees it: its metadata, an orchestrator and an agent whose keys
    live in joserfc, a trusted identity provider and a registered resource server."""

    harness: Harness
    tenant: str
    base: str
    metadata: dict
    http: httpx.AsyncClient
    orch: Orchestrator
    orch_key: ECKey
    agent: Agent
    agent_key: ECKey
    idp: DevIdp
    rs: gw.ResourceServerCredentials

    @property
    def issuer(self) -> str:
        return self.metadata["issuer"]

    @property
    def token_url(self) -> str:
        return self.metadata["token_endpoint"]

    async def spawn(self, key: ECKey, **fields: object) -> Agent:
        identity = await self.orch.spawn(AgentKey.from_jwk(key.as_dict(private=True)), **{**SPAWN_FIELDS, **fields})
        return await Agent.connect(identity, AgentKey.from_jwk(key.as_dict(private=True)),
                                   deployment=self.harness.deployment, renew=False)

    def basic(self, client_id: str | None = None, secret: str | None = None) -> httpx.BasicAuth:
        return httpx.BasicAuth(client_id or self.rs.client_id, secret or self.rs.client_secret)

    async def client_credentials(self, details: list[dict], *, key: ECKey | None = None,
                                 dpop_key: ECKey | None = None, url: str | None = None) -> httpx.Response:
        assertion = oc.client_assertion(key or self.agent_key, self.agent.spiffe_id, self.token_url)
        proof = oc.dpop_proof(dpop_key or self.agent_key, "POST", self.token_url)
        return await oc.token_request(self.http, url or self.token_url,
                                      oc.client_credentials_form(assertion, details, LEDGER), proof)


async def make_world(harness: Harness) -> AsyncIterator[World]:
    tenant = await harness.new_tenant()
    await harness.token_rules(tenant)
    idp = DevIdp()
    await idp.start()
    await harness.operator.request(sub.IDP_ADD, tenant, tok.AddIdp(idp=tok.IdentityProvider(
        issuer=idp.issuer, discovery_url=idp.discovery_url, audiences=[USERS],
        scope_grants={"ledger.read": [ledger(["read"], path="/accounts/*")]})))
    orch_key = oc.new_key()
    record = await harness.operator.request(sub.ADD_ORCHESTRATOR, tenant, reg.AddOrchestrator(
        name="edge-orchestrator", public_jwk=orch_key.as_dict(private=False), authority=DEFAULT_AUTHORITY))
    orch = await Orchestrator.connect(tenant=tenant, orchestrator_id=record.orchestrator_id, spiffe_id=record.spiffe_id,
                                      key=PrivateKey.from_jwk(orch_key.as_dict(private=True)),
                                      deployment=harness.deployment)
    rs = await harness.operator.request(sub.RS_ADD, tenant, gw.AddResourceServer(name="ledger", audiences=[LEDGER]))
    base = harness.stack.settings.base_url()
    async with httpx.AsyncClient(timeout=10) as http:
        world = World(harness, tenant, base, await oc.discover(http, base, tenant), http, orch, orch_key,
                      None, oc.new_key(), idp, rs)  # type: ignore[arg-type]
        world.agent = await world.spawn(world.agent_key)
        try:
            yield world
        finally:
            await world.agent.close()
            await orch.close()
            await idp.stop()
