"""The tenants and parties the hostile suite's valid examples are made from.

Two tenants: `tenant`, where every example runs, and `other`, with its own orchestrator and agent,
for cross-tenant variants. Parties are signers over the harness's one connection: a test can sign
as any of them, over the real bus, without opening a connection per party.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from typing import Any

from agentid.devidp import DevIdp
from agentid.keys import AgentKey
from contracts import attestation as att
from contracts import delegation as dlg
from contracts import gateway as gw
from contracts import issuance as iss
from contracts import registration as reg
from contracts import subjects as sub
from contracts import tokens as tok
from services.attestation.appraisal import UnsafeTestAnchors
from services.attestation.worker import AttestationWorker
from shared.bus import Bus, Signer
from shared.errors import NotFound
from shared.keys import PrivateKey
from tests.attestation_factory import GOOD_PCRS, nitro_pki
from tests.helpers import PERMIT_STANDARD, SPAWN_FIELDS, TOKEN_CONFIG, Harness, eventually, ledger

AUDIENCE = "https://ledger.example"
USER_AUDIENCE = "https://agents.hostile.example"
# Standard agents read the ledger, for themselves or on a user's behalf.
POLICY = PERMIT_STANDARD + """
@id("agents-read-for-their-users")
permit(principal is Agent, action == Action::"read", resource) when { context.onBehalfOf };
"""
RECORDS = {"type": "records", "locations": ["https://api.hostile.example/records/*"], "actions": ["read", "write"]}
DELEGATION = dlg.DelegationConfig(max_depth=5, base=[dlg.BaseCapabilities(tiers=["standard"], capabilities=[RECORDS])])
REFERENCE: dict[str, Any] = {"nitro_pcrs": {str(i): [GOOD_PCRS[i].hex()] for i in (0, 1, 2)}}


@dataclass(frozen=True)
class Party:
    """Someone who signs: `tenant` None for deployment-wide senders (services, operators)."""

    signer: Signer
    kind: str
    tenant: str | None
    subject_id: str

    @property
    def sender(self) -> str:
        return self.signer.sender


@dataclass(frozen=True)
class Spawned:
    """An agent's identity and key, without a connection of its own."""

    identity: reg.AgentIdentity
    key: AgentKey
    party: Party

    @property
    def agent_id(self) -> str:
        return self.identity.agent_id


class World:
    def __init__(self, harness: Harness) -> None:
        self.h = harness
        self.root = harness.root
        self._idps: list[DevIdp] = []

    # -- parties ---------------------------------------------------------------------------------
    def operator(self) -> Party:
        return Party(self.h.keyring.signer("operator", "admin"), "operator", None, "admin")

    def service(self, name: str) -> Party:
        return Party(self.h.keyring.signer("service", name), "service", None, name)

    def bus(self, party: Party) -> Bus:
        """A signed client over the harness's connection, as `party`."""
        return Bus(self.h.nc, signer=party.signer, registry=self.h.keyring.registry(), root=self.root)

    async def call(self, party: Party, route: sub.Route[Any, Any], body: Any, tenant: str | None = None) -> Any:
        return await self.bus(party).request(route, tenant or self.tenant, body, timeout=10.0)

    async def orchestrator(self, tenant: str) -> tuple[Party, reg.OrchestratorRecord]:
        key = PrivateKey.generate()
        record = await self.call(self.operator(), sub.ADD_ORCHESTRATOR, reg.AddOrchestrator(
            name=f"hostile-{secrets.token_hex(3)}", public_jwk=key.public.jwk(),
            authority=reg.Authority(tiers=["standard"], purposes=["testing"], data_classes=["internal"],
                                    max_lifetime_s=3600, max_live_agents=1000)), tenant)
        return Party(Signer(record.spiffe_id, key), "orchestrator", tenant, record.orchestrator_id), record

    def spawn_request(self, orch: Party, tenant: str, key: AgentKey, **fields: Any) -> reg.SpawnAgent:
        spawn_id = secrets.token_hex(8)
        spec = {**SPAWN_FIELDS, **fields}
        return reg.SpawnAgent(
            spawn_id=spawn_id, public_jwk=key.public_jwk,
            proof=key.spawn_proof(spawn_id=spawn_id, orchestrator=orch.sender, tenant=tenant),
            purpose=spec["purpose"], model=reg.Model(**spec["model"]),
            tools=[reg.Tool(**t) for t in spec["tools"]], tier=spec["tier"], data_class=spec["data_class"],
            controller=reg.Controller(**spec["controller"]))

    async def spawn(self, orch: Party | None = None, tenant: str | None = None) -> Spawned:
        orch, tenant = orch or self.orch, tenant or self.tenant
        key = AgentKey.generate()
        identity = await self.call(orch, sub.SPAWN, self.spawn_request(orch, tenant, key), tenant)
        party = Party(Signer(identity.spiffe_id, key.private), "agent", tenant, identity.agent_id)
        return Spawned(identity, key, party)

    async def credential(self, agent: Spawned) -> iss.CredentialRecord:
        """The agent's credential, once issuance has issued it (it follows registration by an event)."""
        found: list[iss.CredentialRecord] = []

        async def issued() -> bool:
            try:
                found.append(await self.call(agent.party, sub.GET_CREDENTIAL, iss.GetCredential(agent_id=agent.agent_id)))
            except NotFound:
                return False
            return True

        await eventually(issued)
        return found[-1]

    async def token(self, agent: Spawned | None = None) -> tok.IssuedToken:
        agent = agent or self.agent
        return await self.call(agent.party, sub.TOKEN_ISSUE, tok.IssueToken(
            authorization_details=[ledger()], audience=AUDIENCE))

    def issuer(self, tenant: str | None = None) -> str:
        return f"{self.h.stack.settings.base_url()}/tenants/{tenant or self.tenant}"

    async def idp(self) -> DevIdp:
        provider = DevIdp()
        await provider.start()
        self._idps.append(provider)
        return provider

    def identity_provider(self, idp: DevIdp) -> tok.IdentityProvider:
        return tok.IdentityProvider(issuer=idp.issuer, discovery_url=idp.discovery_url, audiences=[USER_AUDIENCE],
                                    scope_grants={"ledger.read": [ledger(["read"], path="/accounts/*")]})

    # -- set-up ----------------------------------------------------------------------------------
    async def setup(self) -> World:
        h, op = self.h, self.operator()
        self.tenant, self.other = await h.new_tenant(), await h.new_tenant()
        await self.call(op, sub.TOKEN_CONFIG_SET, tok.SetTokenConfig(config=TOKEN_CONFIG))
        await self.call(op, sub.POLICY_SET, tok.SetPolicy(policies=POLICY))
        await self.call(op, sub.DELEGATION_CONFIG_SET, dlg.SetDelegationConfig(config=DELEGATION))
        await self.call(op, sub.SET_REFERENCE_VALUES, att.SetReferenceValues(document=REFERENCE))
        self.attestation = next(w for w in h.stack.workers if isinstance(w, AttestationWorker))
        self.attestation.use_unsafe_test_anchors(UnsafeTestAnchors(nitro_roots=[nitro_pki().root]))
        self.user_idp = await self.idp()
        await self.call(op, sub.IDP_ADD, tok.AddIdp(idp=self.identity_provider(self.user_idp)))
        self.resource_server = await self.call(op, sub.RS_ADD, gw.AddResourceServer(
            name="hostile-rs", audiences=[AUDIENCE]))
        self.orch, self.orch_record = await self.orchestrator(self.tenant)
        self.other_orch, _ = await self.orchestrator(self.other)
        self.agent = await self.spawn()
        self.peer = await self.spawn()
        self.other_agent = await self.spawn(self.other_orch, self.other)
        await self.credential(self.agent)
        # Each agent's root from the tenant authority: delegation examples build on them.
        self.root_link = await self.call(self.agent.party, sub.DELEGATION_ROOT, dlg.GetRoot())
        self.peer_root = await self.call(self.peer.party, sub.DELEGATION_ROOT, dlg.GetRoot())
        return self

    async def close(self) -> None:
        self.attestation.use_unsafe_test_anchors(None)
        for idp in self._idps:
            await idp.stop()

    def party_of_kind(self, kind: str) -> Party:
        """A party of `kind` in the examples' tenant (for wrong-kind variants)."""
        return {"agent": self.agent.party, "orchestrator": self.orch, "operator": self.operator(),
                "service": self.service("audit")}[kind]
