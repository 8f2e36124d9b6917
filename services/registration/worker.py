"""The registration worker: tenants, orchestrators and agents, and the agent lifecycle."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import msgspec

from contracts import registration as reg
from contracts import subjects as sub
from services.registration import store
from services.registration.authorities import Authorities
from services.registration.senders import RegisteredSenders
from shared import telemetry
from shared.directory import agent_attributes
from shared.errors import (
    AgentidError,
    AgentInactive,
    AuthorityExceeded,
    Conflict,
    Forbidden,
    InvalidRequest,
    KeyInUse,
    NotFound,
    QuotaExceeded,
    ReplayError,
    Unavailable,
)
from shared.ids import agent_id as new_agent_id
from shared.ids import orchestrator_id as new_orchestrator_id
from shared.keys import InvalidKey, PublicKey
from shared.ratelimit import RateLimiter
from shared.possession import RENEW_TYP, SPAWN_TYP, check_proof
from shared.worker import Context, Subscription, Worker

log = logging.getLogger(__name__)


def _now() -> datetime:
    return datetime.now(UTC)


def _public_key(jwk: Mapping[str, str]) -> PublicKey:
    try:
        return PublicKey.from_jwk(jwk)
    except InvalidKey as exc:
        raise InvalidRequest(f"public_jwk: {exc}") from exc


class RegistrationWorker(Worker):
    name = "registration"
    schema = "registration"
    migrations = Path(__file__).parent / "migrations"

    def routes(self) -> Mapping[sub.Route[Any, Any], Any]:
        return {
            sub.CREATE_TENANT: self.create_tenant,
            sub.ADD_ORCHESTRATOR: self.add_orchestrator,
            sub.SPAWN: self.spawn,
            sub.GET_AGENT: self.get_agent,
            sub.EXIT_AGENT: self.exit_agent,
            sub.REVOKE_AGENT: self.revoke_agent,
            sub.LIST_AGENTS: self.list_agents,
            sub.RENEW_SVID: self.renew_svid,
            sub.ISSUE_JWT_SVID: self.issue_jwt_svid,
            sub.GET_BUNDLE: self.get_bundle,
            sub.ROTATE_AUTHORITIES: self.rotate_authorities,
            sub.LOOKUP_SENDER: self.lookup_sender,
            sub.REVOKE_ORCHESTRATOR: self.revoke_orchestrator,
        }

    def subscriptions(self) -> Sequence[Subscription]:
        return [Subscription("registration-spawn", {sub.SPAWN_REQUESTED: self.on_spawn_requested})]

    def senders(self) -> RegisteredSenders:
        return RegisteredSenders(self.pool)

    async def revoke_orchestrator(self, req: reg.RevokeOrchestrator, ctx: Context) -> reg.RevokedOrchestrator:
        """One command after a compromise: the orchestrator's key is refused from its next message,
        and every agent it spawned is revoked, each with its `agent.exited` (credentials, delegations
        and tokens follow from those events)."""
        async with self.unit_of_work(ctx) as uow:
            orch = await store.get_orchestrator(uow.conn, req.orchestrator_id, for_update=True)
            if orch is None or orch.tenant != ctx.tenant:
                raise NotFound("no such orchestrator")
            if orch.status == "revoked":  # done before: its key spawned nothing since, nothing to announce
                return reg.RevokedOrchestrator(orchestrator_id=orch.orchestrator_id, revoked_agents=[], count=0)
            now = _now()
            rows = await store.revoke_orchestrator(uow.conn, ctx.tenant, req.orchestrator_id, reason=req.reason, at=now)
            assert rows is not None
            for r in rows:
                await uow.emit(sub.AGENT_EXITED, ctx.tenant, reg.AgentExited(
                    agent_id=r["id"], spiffe_id=r["spiffe_id"], did=r["did"], status="revoked",
                    reason=f"orchestrator revoked: {req.reason}", by=ctx.sender.sender, at=now))
            ids = [r["id"] for r in rows]
            await uow.emit(sub.ORCHESTRATOR_REVOKED, ctx.tenant, reg.OrchestratorRevoked(
                orchestrator_id=orch.orchestrator_id, spiffe_id=orch.spiffe_id, reason=req.reason,
                revoked_agents=ids[:10_000], by=ctx.sender.sender, at=now))
        return reg.RevokedOrchestrator(orchestrator_id=orch.orchestrator_id, revoked_agents=ids[:10_000], count=len(ids))

    async def on_start(self) -> None:
        if self.keyring.kek is None:
            raise RuntimeError("the keyring has no key-encryption key: registration cannot seal CA keys")
        self.authorities = Authorities(self.keyring.kek, ca_lifetime_s=self.settings.ca_lifetime_s)
        self.spawn_limits = RateLimiter()

    async def background(self, stop: asyncio.Event) -> None:
        """Agents past their maximum lifetime expire by themselves, each with its event."""
        while not stop.is_set():
            try:
                while await self.expire_due():
                    pass
            except Exception as exc:  # an outage pauses expiry; the next sweep catches up
                log.warning("expiry sweep failed: %s", type(exc).__name__)
            try:
                await asyncio.wait_for(stop.wait(), timeout=self.settings.expiry_sweep_s)
            except asyncio.TimeoutError:
                pass

    async def expire_due(self) -> int:
        async with self.unit_of_work() as uow:
            rows = await store.expire_due(uow.conn, _now())
            for r in rows:
                await uow.emit(sub.AGENT_EXITED, r["tenant"], reg.AgentExited(
                    agent_id=r["id"], spiffe_id=r["spiffe_id"], did=r["did"], status="expired",
                    reason="lifetime ended", by=self.bus.signer.sender, at=r["ended_at"]))  # type: ignore[union-attr]
        return len(rows)

    # -- tenants and orchestrators ----------------------------------------------------------
    async def create_tenant(self, req: reg.CreateTenant, ctx: Context) -> reg.TenantRecord:
        trust_domain = req.trust_domain or f"{ctx.tenant.replace('_', '-')}.agentid.local"
        async with self.unit_of_work(ctx) as uow:
            created = await store.insert_tenant(uow.conn, ctx.tenant, trust_domain)
            if created is None:
                existing = await store.get_tenant(uow.conn, ctx.tenant)
                if existing is not None and existing.trust_domain == trust_domain:
                    return existing  # creating what exists is not an error
                raise Conflict("tenant or trust domain already exists")
            await self.authorities.create(uow.conn, ctx.tenant, trust_domain, created.created_at)
            await uow.emit(sub.TENANT_CREATED, ctx.tenant, reg.TenantCreated(
                tenant=created.tenant, trust_domain=created.trust_domain, at=created.created_at))
        return created

    async def add_orchestrator(self, req: reg.AddOrchestrator, ctx: Context) -> reg.OrchestratorRecord:
        key = _public_key(req.public_jwk)
        async with self.unit_of_work(ctx) as uow:
            tenant = await store.get_tenant(uow.conn, ctx.tenant)
            if tenant is None:
                raise NotFound("no such tenant")
            oid = new_orchestrator_id()
            record = reg.OrchestratorRecord(
                orchestrator_id=oid, tenant=ctx.tenant,
                spiffe_id=f"spiffe://{tenant.trust_domain}/orchestrator/{oid}", name=req.name,
                public_jwk=key.jwk(), key_id=key.thumbprint, authority=req.authority,
                status="active", created_at=_now(),
            )
            if await store.insert_orchestrator(uow.conn, record) is None:
                raise Conflict("an orchestrator of that name exists in this tenant")
            await uow.emit(sub.ORCHESTRATOR_ADDED, ctx.tenant, reg.OrchestratorAdded(orchestrator=record))
        return record

    # -- spawn ---------------------------------------------------------------------------------
    async def spawn(self, req: reg.SpawnAgent, ctx: Context) -> reg.AgentIdentity:
        return await self._spawn(req, ctx)

    async def on_spawn_requested(self, req: reg.SpawnAgent, ctx: Context) -> None:
        try:
            await self._spawn(req, ctx)
        except (ReplayError, Unavailable):
            raise
        except AgentidError as exc:
            # Nobody waits on an event for a reply: the refusal becomes an event of its own,
            # recorded once even if the request is redelivered.
            async with self.unit_of_work(ctx) as uow:
                await uow.emit(sub.AGENT_SPAWN_REJECTED, ctx.tenant, reg.AgentSpawnRejected(
                    spawn_id=req.spawn_id, orchestrator_id=ctx.sender.subject_id,
                    code=exc.code.value, message=exc.message))

    async def _spawn(self, req: reg.SpawnAgent, ctx: Context) -> reg.AgentIdentity:
        key = _public_key(req.public_jwk)
        check_proof(req.proof, key, typ=SPAWN_TYP, expect={
            "spawn_id": req.spawn_id, "orchestrator": ctx.sender.sender, "tenant": ctx.tenant})
        async with self.unit_of_work(ctx) as uow:
            existing = await store.agent_by_spawn(uow.conn, ctx.tenant, req.spawn_id)
            if existing is not None:
                if existing.key_id != key.thumbprint or existing.orchestrator_id != ctx.sender.subject_id:
                    raise Conflict("spawn id already used for another agent")
                return existing  # the same spawn again: same answer, no second agent
            tenant = await store.get_tenant(uow.conn, ctx.tenant)
            orch = await store.get_orchestrator(uow.conn, ctx.sender.subject_id, for_update=True)
            if tenant is None or orch is None or orch.tenant != ctx.tenant:
                raise Forbidden("orchestrator is not registered in this tenant")
            rate = orch.authority.spawns_per_minute
            self.spawn_limits.take(orch.orchestrator_id, rate_per_s=rate / 60, burst=max(1, rate // 10), what="spawns")
            lifetime = self._check_authority(req, orch.authority)
            if await store.live_agents_of(uow.conn, orch.orchestrator_id) >= orch.authority.max_live_agents:
                raise QuotaExceeded("the orchestrator has reached its quota of live agents")
            if await store.live_agent_with_key(uow.conn, key.thumbprint) is not None:
                raise KeyInUse("this key belongs to a live agent")
            now = _now()
            expires = now + timedelta(seconds=lifetime)
            if req.parent_agent_id is not None:
                parent = await store.get_agent(uow.conn, ctx.tenant, req.parent_agent_id)
                if parent is None or parent.status != "active" or parent.expires_at <= now:
                    raise Forbidden("parent agent is not an active agent of this tenant")
                if parent.orchestrator_id != orch.orchestrator_id:
                    raise Forbidden("parent agent belongs to another orchestrator")
                expires = min(expires, parent.expires_at)  # a sub-agent never outlives its parent
            aid = new_agent_id()
            agent = reg.AgentIdentity(
                agent_id=aid, tenant=ctx.tenant, trust_domain=tenant.trust_domain,
                spiffe_id=f"spiffe://{tenant.trust_domain}/agent/{aid}", did=key.did,
                public_jwk=key.jwk(), key_id=key.thumbprint, orchestrator_id=orch.orchestrator_id,
                parent_agent_id=req.parent_agent_id, spawn_id=req.spawn_id, purpose=req.purpose,
                model=req.model, tools=req.tools, tier=req.tier, data_class=req.data_class,
                controller=req.controller, status="active", created_at=now, expires_at=expires,
            )
            await store.insert_agent(uow.conn, agent)
            svid = await self.authorities.issue_svid(uow.conn, agent, self.settings.svid_lifetime_s, now)
            agent = msgspec.structs.replace(agent, svid=svid)
            await uow.emit(sub.AGENT_REGISTERED, ctx.tenant,
                           reg.AgentRegistered(spawn_id=req.spawn_id, agent=agent))
        telemetry.trace.get_current_span().set_attributes(telemetry.identity_attributes(
            tenant=ctx.tenant, agent_id=aid, spiffe_id=agent.spiffe_id, did=agent.did))
        return agent

    @staticmethod
    def _check_authority(req: reg.SpawnAgent, authority: reg.Authority) -> int:
        if req.tier not in authority.tiers:
            raise AuthorityExceeded(f"orchestrator may not spawn tier {req.tier!r}")
        if req.purpose not in authority.purposes:
            raise AuthorityExceeded("orchestrator may not spawn agents for this purpose")
        if req.data_class not in authority.data_classes:
            raise AuthorityExceeded(f"orchestrator may not spawn data class {req.data_class!r}")
        lifetime = req.lifetime_s or authority.max_lifetime_s
        if lifetime > authority.max_lifetime_s:
            raise AuthorityExceeded("requested lifetime exceeds the orchestrator's maximum")
        return lifetime

    # -- reads and exit ------------------------------------------------------------------------
    async def get_agent(self, req: reg.GetAgent, ctx: Context) -> reg.AgentIdentity:
        agent = await store.get_agent(self.pool, ctx.tenant, req.agent_id)
        if agent is None:
            raise NotFound("no such agent")
        return agent

    async def exit_agent(self, req: reg.ExitAgent, ctx: Context) -> reg.AgentIdentity:
        """Retire an agent; its sub-agents cannot outlive it and are retired with it."""
        await self._end(ctx, req.agent_id, status="exited", reason=req.reason, child_reason="parent exited")
        agent = await store.get_agent(self.pool, ctx.tenant, req.agent_id)
        assert agent is not None
        return agent

    async def revoke_agent(self, req: reg.RevokeAgent, ctx: Context) -> reg.RevokedAgents:
        """The kill switch: the agent and every active descendant, revoked in one transaction."""
        if ctx.sender.kind not in ("operator", "orchestrator"):
            raise Forbidden("only an operator or the agent's orchestrator may revoke it")
        ended = await self._end(ctx, req.agent_id, status="revoked", reason=req.reason,
                                child_reason=f"parent {req.agent_id} revoked")
        return reg.RevokedAgents(revoked=ended[:10_000], count=len(ended))

    async def _end(self, ctx: Context, agent_id: str, *, status: str, reason: str, child_reason: str) -> list[str]:
        async with self.unit_of_work(ctx) as uow:
            agent = await store.get_agent(uow.conn, ctx.tenant, agent_id)
            if agent is None:
                raise NotFound("no such agent")
            self._may_end(agent, ctx)
            now = _now()
            rows = await store.end_subtree(uow.conn, ctx.tenant, agent_id, status=status, reason=reason,
                                           child_reason=child_reason, at=now)
            for r in rows:
                await uow.emit(sub.AGENT_EXITED, ctx.tenant, reg.AgentExited(
                    agent_id=r["id"], spiffe_id=r["spiffe_id"], did=r["did"], status=status,  # type: ignore[arg-type]
                    reason=r["end_reason"], by=ctx.sender.sender, at=now))
        return [r["id"] for r in rows]

    async def list_agents(self, req: reg.ListAgents, ctx: Context) -> reg.AgentList:
        orchestrator = req.orchestrator_id
        if ctx.sender.kind == "orchestrator":
            if orchestrator not in (None, ctx.sender.subject_id):
                raise Forbidden("an orchestrator lists only its own agents")
            orchestrator = ctx.sender.subject_id
        agents = await store.list_agents(self.pool, ctx.tenant, status=req.status, orchestrator_id=orchestrator,
                                         after=req.after, limit=req.limit)
        return reg.AgentList(agents=agents, next_after=agents[-1].agent_id if len(agents) == req.limit else None)

    # -- SVIDs and the bundle --------------------------------------------------------------------
    async def renew_svid(self, req: reg.RenewSvid, ctx: Context) -> reg.X509Svid:
        async with self.unit_of_work(ctx) as uow:
            agent = await store.get_agent(uow.conn, ctx.tenant, req.agent_id)
            if agent is None:
                raise NotFound("no such agent")
            if not ((ctx.sender.kind == "agent" and ctx.sender.subject_id == agent.agent_id)
                    or (ctx.sender.kind == "orchestrator" and ctx.sender.subject_id == agent.orchestrator_id)):
                raise Forbidden("only the agent or its orchestrator may renew its SVID")
            now = _now()
            if agent.status != "active" or agent.expires_at <= now:
                raise AgentInactive(f"agent is {agent.status}")
            # A fresh proof by the agent's own key: a renewal never rests on the bus signature alone.
            check_proof(req.proof, PublicKey.from_jwk(agent.public_jwk), typ=RENEW_TYP,
                        expect={"agent_id": agent.agent_id, "tenant": ctx.tenant})
            svid = await self.authorities.issue_svid(uow.conn, agent, self.settings.svid_lifetime_s, now)
            await uow.emit(sub.AGENT_RENEWED, ctx.tenant, reg.AgentRenewed(
                agent_id=agent.agent_id, spiffe_id=agent.spiffe_id, serial=svid.serial, not_after=svid.not_after))
        return svid

    async def issue_jwt_svid(self, req: reg.IssueJwtSvid, ctx: Context) -> reg.JwtSvid:
        async with self.outbox.pool.acquire() as conn:
            agent = await store.get_agent(conn, ctx.tenant, ctx.sender.subject_id)
            now = _now()
            if agent is None or agent.status != "active" or agent.expires_at <= now:
                raise AgentInactive("agent is not active")
            token, expires = await self.authorities.mint_jwt_svid(conn, agent, list(req.audience), req.lifetime_s, now)
        return reg.JwtSvid(token=token, spiffe_id=agent.spiffe_id, audience=list(req.audience), expires_at=expires)

    async def get_bundle(self, req: reg.GetBundle, ctx: Context) -> reg.TrustBundle:
        tenant = await store.get_tenant(self.pool, ctx.tenant)
        if tenant is None:
            raise NotFound("no such tenant")
        return await self.authorities.bundle(self.pool, ctx.tenant, tenant.trust_domain)

    async def lookup_sender(self, req: reg.LookupSender, ctx: Context) -> reg.SenderRecord:
        found = await RegisteredSenders(self.pool).lookup(req.sender, req.key_id)
        if found is None or found.tenant != ctx.tenant:
            raise NotFound("no such sender in this tenant")
        attributes: dict[str, Any] = {}
        expires = None
        if found.kind == "agent":
            agent = await store.get_agent(self.pool, ctx.tenant, found.subject_id)
            assert agent is not None
            attributes = agent_attributes(agent)
            expires = agent.expires_at
        return reg.SenderRecord(sender=req.sender, key_id=req.key_id, kind=found.kind,  # type: ignore[arg-type]
                                subject_id=found.subject_id, tenant=ctx.tenant, orchestrator_id=found.orchestrator_id,
                                public_jwk=found.key.jwk(), active=found.active, expires_at=expires,
                                attributes=attributes)

    async def rotate_authorities(self, req: reg.RotateAuthorities, ctx: Context) -> reg.TrustBundle:
        async with self.unit_of_work(ctx) as uow:
            tenant = await store.get_tenant(uow.conn, ctx.tenant)
            if tenant is None:
                raise NotFound("no such tenant")
            now = _now()
            await store.retire_authorities(uow.conn, ctx.tenant, now)
            await self.authorities.create(uow.conn, ctx.tenant, tenant.trust_domain, now)
            sequence = await store.bump_bundle_sequence(uow.conn, ctx.tenant)
            await uow.emit(sub.AUTHORITIES_ROTATED, ctx.tenant, reg.AuthoritiesRotated(
                trust_domain=tenant.trust_domain, sequence=sequence, reason=req.reason, at=now))
        return await self.authorities.bundle(self.pool, ctx.tenant, tenant.trust_domain)

    @staticmethod
    def _may_end(agent: reg.AgentIdentity, ctx: Context) -> None:
        """An agent may end itself; an orchestrator the agents it spawned; an operator any agent."""
        sender = ctx.sender
        if sender.kind == "operator":
            return
        if sender.kind == "agent" and sender.subject_id == agent.agent_id:
            return
        if sender.kind == "orchestrator" and sender.subject_id == agent.orchestrator_id:
            return
        raise Forbidden("only the agent, its orchestrator or an operator may end it")
