"""`Orchestrator`: spawns and ends agents, as a registered orchestrator of one tenant."""

from __future__ import annotations

import asyncio
from collections.abc import Mapping, Sequence
from typing import Any

from agentid.deployment import Deployment
from agentid.keys import AgentKey
from contracts import registration as reg
from contracts import subjects as sub
from contracts import tokens as tok
from shared.bus import Bus, Signer
from shared.bus.client import decode
from shared.bus.inbox import party_inbox
from shared.bus.signing import authenticate
from shared.errors import AgentidError, Unavailable
from shared.ids import new_id
from shared.keys import PrivateKey


class Orchestrator:
    """An orchestrator's session with agentid.

    Use `await Orchestrator.connect(...)` (or `async with`), then `await spawn(...)`. Every request
    is signed with the orchestrator's key; every reply is checked against the deployment's service
    keys. Errors are raised as `agentid.errors.AgentidError` subclasses with stable codes.
    """

    def __init__(self, bus: Bus, *, tenant: str, orchestrator_id: str, spiffe_id: str) -> None:
        self.bus = bus
        self.tenant = tenant
        self.orchestrator_id = orchestrator_id
        self.spiffe_id = spiffe_id

    @classmethod
    async def connect(cls, *, tenant: str, orchestrator_id: str, spiffe_id: str,
                      key: PrivateKey | AgentKey, deployment: Deployment | None = None) -> Orchestrator:
        """Connect to the deployment's NATS as this orchestrator. Raises Unavailable."""
        deployment = deployment or Deployment.load()
        private = key.private if isinstance(key, AgentKey) else key
        bus = await Bus.connect(deployment.nats_url, name=f"orchestrator-{orchestrator_id}",
                                signer=Signer(spiffe_id, private), registry=deployment.services(),
                                root=deployment.nats_prefix, nkey_seed=deployment.nats_nkey_seed,
                                inbox_prefix=party_inbox(deployment.nats_prefix, tenant, "orchestrator",
                                                         orchestrator_id))
        return cls(bus, tenant=tenant, orchestrator_id=orchestrator_id, spiffe_id=spiffe_id)

    async def __aenter__(self) -> Orchestrator:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def close(self) -> None:
        await self.bus.drain()

    def spawn_request(self, agent_key: AgentKey, *, purpose: str, model: reg.Model | Mapping[str, Any],
                      tier: str, data_class: str, controller: reg.Controller | Mapping[str, Any],
                      tools: Sequence[reg.Tool | Mapping[str, Any]] = (), lifetime_s: int | None = None,
                      parent_agent_id: str | None = None, spawn_id: str | None = None) -> reg.SpawnAgent:
        """The signed-by-the-agent spawn request (proof of possession included)."""
        import msgspec

        spawn_id = spawn_id or new_id()
        return reg.SpawnAgent(
            spawn_id=spawn_id, public_jwk=agent_key.public_jwk,
            proof=agent_key.spawn_proof(spawn_id=spawn_id, orchestrator=self.spiffe_id, tenant=self.tenant),
            purpose=purpose, model=msgspec.convert(model, reg.Model),
            tools=msgspec.convert(list(tools), list[reg.Tool]), tier=tier, data_class=data_class,
            controller=msgspec.convert(controller, reg.Controller), lifetime_s=lifetime_s,
            parent_agent_id=parent_agent_id,
        )

    async def spawn(self, agent_key: AgentKey, **fields: Any) -> reg.AgentIdentity:
        """Spawn an agent for `agent_key` and wait for its identity (request-reply).

        Fields: purpose, model {name, version, digest}, tier, data_class, controller {type, id},
        tools, lifetime_s, parent_agent_id, spawn_id. Raises AuthorityExceeded, QuotaExceeded,
        InvalidProof, KeyInUse, InvalidRequest, Unavailable...
        """
        return await self.submit(self.spawn_request(agent_key, **fields))

    async def submit(self, request: reg.SpawnAgent) -> reg.AgentIdentity:
        """Send a spawn request prepared elsewhere (by the agent runtime, which holds the key)."""
        return await self.bus.request(sub.SPAWN, self.tenant, request)

    async def spawn_via_event(self, request: reg.SpawnAgent, *, timeout: float = 10.0) -> reg.AgentIdentity:
        """Publish `agent.spawn_requested` to JetStream and wait for the matching
        `agent.registered` (or `agent.spawn_rejected`) event."""
        registered = sub.AGENT_REGISTERED.subject(self.tenant, self.bus.root)
        rejected = sub.AGENT_SPAWN_REJECTED.subject(self.tenant, self.bus.root)
        done: asyncio.Future[reg.AgentIdentity] = asyncio.get_running_loop().create_future()

        async def on_event(msg: Any) -> None:
            try:
                await authenticate(msg.subject, msg.headers, msg.data, self.bus.registry,
                                   max_age_ms=3_600_000)
            except AgentidError:
                return  # not signed by a service we trust: ignore
            if msg.subject == registered:
                event = decode(msg.data, reg.AgentRegistered)
                if event.spawn_id == request.spawn_id and not done.done():
                    done.set_result(event.agent)
            else:
                refusal = decode(msg.data, reg.AgentSpawnRejected)
                if refusal.spawn_id == request.spawn_id and not done.done():
                    from contracts.errors import Error

                    done.set_exception(AgentidError.from_error(Error(code=refusal.code, message=refusal.message)))

        subs = [await self.bus.nc.subscribe(s, cb=on_event) for s in (registered, rejected)]
        try:
            await self.bus.publish_event(sub.SPAWN_REQUESTED, self.tenant, request, msg_id=request.spawn_id)
            return await asyncio.wait_for(done, timeout)
        except asyncio.TimeoutError as exc:
            raise Unavailable("no answer to the spawn request in time") from exc
        finally:
            for s in subs:
                await s.unsubscribe()

    async def get(self, agent_id: str) -> reg.AgentIdentity:
        return await self.bus.request(sub.GET_AGENT, self.tenant, reg.GetAgent(agent_id=agent_id))

    async def exit(self, agent_id: str, reason: str = "exited") -> reg.AgentIdentity:
        """Retire an agent this orchestrator spawned (and its sub-agents)."""
        return await self.bus.request(sub.EXIT_AGENT, self.tenant, reg.ExitAgent(agent_id=agent_id, reason=reason))

    async def revoke(self, agent_id: str, reason: str = "revoked") -> list[str]:
        """Kill switch: revoke an agent and every sub-agent below it; returns the ids revoked."""
        result = await self.bus.request(sub.REVOKE_AGENT, self.tenant, reg.RevokeAgent(agent_id=agent_id, reason=reason))
        return list(result.revoked)

    async def list(self, *, status: str | None = None, limit: int = 100, after: str | None = None) -> reg.AgentList:
        return await self.bus.request(sub.LIST_AGENTS, self.tenant,
                                      reg.ListAgents(status=status, limit=limit, after=after))  # type: ignore[arg-type]

    async def token_for(self, agent_id: str, user_token: str, authorization_details: Sequence[Mapping[str, Any]],
                        audience: str, *, user_token_type: str = "urn:ietf:params:oauth:token-type:id_token",
                        lifetime_s: int | None = None) -> tok.IssuedToken:
        """Exchange a signed-in user's token (RFC 8693) for a token the agent uses with its own key:
        `sub` = the user, `act` = the agent. Hand the agent the result, never the user's token."""
        return await self.bus.request(sub.TOKEN_EXCHANGE, self.tenant, tok.ExchangeToken(
            subject_token=user_token, subject_token_type=user_token_type, actor_agent_id=agent_id,  # type: ignore[arg-type]
            audience=audience, authorization_details=[dict(d) for d in authorization_details], lifetime_s=lifetime_s))

    async def bundle(self) -> reg.TrustBundle:
        """The tenant's SPIFFE trust bundle (X.509 CAs and JWT-SVID keys)."""
        return await self.bus.request(sub.GET_BUNDLE, self.tenant, reg.GetBundle())
