"""The delegation worker: UCAN chains between agents, recorded as a graph, checked, revoked.

- Roots: when an agent registers, the tenant authority (a did:key this worker holds) issues it a
  root UCAN for its base capabilities (`services/delegation/rules.py`), valid for the agent's life.
- `delegation.grant`: the delegating agent submits the chain ending with the link it signed; every
  link is checked (`services/delegation/chains.py`) and the new one recorded.
- `delegation.check`: the token worker (or an agent) asks whether a chain is valid now.
- `delegation.revoke` and `agent.exited`: a link and all its descendants are revoked at once
  (`services/delegation/revocation.py`), announced by one `delegation.revoked` event.
- `delegation.chain`, `.root`, `.graph`, `.revocations`, `.authority`: reading.

Depth is the number of links (the root link is depth 1); the tenant's `max_depth` (default 5)
bounds it at grant and at every check. It is the one source of truth for delegation depth.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import asyncpg
import msgspec

from contracts import delegation as dlg
from contracts import registration as reg
from contracts import subjects as sub
from services.delegation import chains, revocation, rules, store, views
from services.delegation.authority import Authorities
from shared import telemetry, ucan
from shared.directory import attributes
from shared.errors import (
    AgentInactive,
    DelegationInvalid,
    Forbidden,
    InvalidRequest,
    NotFound,
)
from shared.outbox import UnitOfWork
from shared.worker import Context, Subscription, Worker


def _now() -> datetime:
    return datetime.now(UTC)


class DelegationWorker(Worker):
    name = "delegation"
    schema = "delegation"
    migrations = Path(__file__).parent / "migrations"
    uses_directory = True

    def routes(self) -> Mapping[sub.Route[Any, Any], Any]:
        return {
            sub.DELEGATION_GRANT: self.grant,
            sub.DELEGATION_CHECK: self.check,
            sub.DELEGATION_CHAIN: self.chain,
            sub.DELEGATION_ROOT: self.root,
            sub.DELEGATION_REVOKE: self.revoke,
            sub.DELEGATION_REVOCATIONS: self.revocations,
            sub.DELEGATION_GRAPH: self.graph,
            sub.DELEGATION_CONFIG_SET: self.set_config,
            sub.DELEGATION_CONFIG_GET: self.get_config,
            sub.DELEGATION_AUTHORITY: self.authority,
            sub.DELEGATION_ROTATE_AUTHORITY: self.rotate_authority,
        }

    def subscriptions(self) -> Sequence[Subscription]:
        # One consumer, so an agent's exit is never applied before its registration.
        return [Subscription("delegation-agents", {
            sub.AGENT_REGISTERED: self.on_agent_registered,
            sub.AGENT_EXITED: self.on_agent_exited,
        })]

    async def on_start(self) -> None:
        if self.keyring.kek is None:
            raise RuntimeError("the keyring has no key-encryption key: delegation cannot seal authority keys")
        self.authorities = Authorities(self.keyring.kek)
        self.me = self.keyring.sender("service", self.name)

    async def config(self, conn: asyncpg.Connection | asyncpg.Pool, tenant: str) -> tuple[int, dlg.DelegationConfig]:
        row = await store.current_config(conn, tenant)
        if row is None:
            return 0, dlg.DelegationConfig()
        return row["version"], msgspec.convert(row["config"], dlg.DelegationConfig)

    async def _verify(self, conn: asyncpg.Connection, tenant: str, chain: Sequence[str], holder_did: str, *,
                      new_leaf: bool) -> chains.Checked:
        """`chains.verify` with the tenant's rules; the decision and depth go on the current span."""
        span = telemetry.trace.get_current_span()
        _, config = await self.config(conn, tenant)
        try:
            checked = await chains.verify(conn, self.directory, tenant=tenant, chain=chain, holder_did=holder_did,
                                          trusted_roots=await self.authorities.trusted_roots(conn, tenant),
                                          max_depth=rules.max_depth(config), new_leaf=new_leaf)
        except DelegationInvalid as exc:
            span.set_attributes(telemetry.identity_attributes(
                tenant=tenant, did=holder_did, decision="deny", reason=(exc.detail or {}).get("reason")))
            raise
        span.set_attributes(telemetry.identity_attributes(
            tenant=tenant, did=holder_did, agent_id=checked.agent_ids[-1], delegation_depth=checked.verified.depth,
            decision="allow"))
        return checked

    # -- roots -----------------------------------------------------------------------------------
    async def on_agent_registered(self, event: reg.AgentRegistered, ctx: Context) -> None:
        a = event.agent
        async with self.unit_of_work(ctx) as uow:
            await store.insert_agent(uow.conn, agent_id=a.agent_id, tenant=ctx.tenant, did=a.did, tier=a.tier,
                                     purpose=a.purpose, expires_at=a.expires_at)
            await self._issue_root(uow, ctx.tenant, a.agent_id)

    async def _issue_root(self, uow: UnitOfWork, tenant: str, agent_id: str) -> None:
        """The agent's root from the tenant authority, unless it has one, is not live, or the tenant's
        rules grant it nothing."""
        agent = await store.agent(uow.conn, tenant, agent_id)
        if agent is None or agent["ended_at"] is not None or agent["expires_at"] <= _now():
            return
        _, config = await self.config(uow.conn, tenant)
        granted = rules.base_capabilities(config, tier=agent["tier"], purpose=agent["purpose"])
        if not granted:
            return
        await store.lock_graph(uow.conn, tenant, exclusive=False)
        # Registration's event and the agent's own first request may both get here: one root only.
        await store.lock_root(uow.conn, tenant, agent_id)
        if await store.root_of(uow.conn, tenant, agent_id) is not None:
            return
        key_row, key = await self.authorities.active(uow.conn, tenant)
        expires = int(agent["expires_at"].timestamp())
        # No `nbf`: a root is valid from the start and bounded by the agent's life (`exp`), so the
        # agents below may date their links freely inside that window.
        not_before = None
        jwt = ucan.issue(key, agent["did"], granted, expires=expires, not_before=not_before)
        new = store.NewLink(cid=ucan.cid(jwt), parent=None, depth=1, root_did=key_row["did"],
                            issuer_did=key_row["did"], audience_did=agent["did"], issuer_agent_id=None,
                            audience_agent_id=agent_id, capabilities=rules.rar(granted), not_before=not_before,
                            expires=expires)
        await store.insert_link(uow.conn, tenant, new, jwt=jwt, granted_by=self.me)
        await store.insert_root(uow.conn, tenant, agent_id, new.cid)
        await store.extend_key_use(uow.conn, key_row["id"], agent["expires_at"])
        await uow.emit(sub.DELEGATION_GRANTED, tenant, views.granted(new))

    async def root(self, req: dlg.GetRoot, ctx: Context) -> dlg.DelegationRecord:
        agent_id = req.agent_id
        if ctx.sender.kind == "agent":
            if agent_id not in (None, ctx.sender.subject_id):
                raise Forbidden("an agent may read only its own root")
            agent_id = ctx.sender.subject_id
        elif agent_id is None:
            raise InvalidRequest("name the agent")
        row = await store.root_of(self.pool, ctx.tenant, agent_id)
        if row is None:
            # Registration's event may not have reached us yet, or the agent registered before the
            # tenant's rules were set: issue the root now, from what the directory knows.
            async with self.unit_of_work() as uow:
                await self._know_agent(uow.conn, ctx.tenant, agent_id)
                await self._issue_root(uow, ctx.tenant, agent_id)
            row = await store.root_of(self.pool, ctx.tenant, agent_id)
        if row is None:
            raise NotFound("the tenant's delegation rules grant this agent no base capabilities")
        return views.record(row, [row["jwt"]])

    async def _know_agent(self, conn: asyncpg.Connection, tenant: str, agent_id: str) -> None:
        if await store.agent(conn, tenant, agent_id) is not None:
            return
        sender = await self.directory.get(conn, agent_id)
        if sender is None or sender["tenant"] != tenant or sender["kind"] != "agent":
            raise NotFound("no such agent")
        if not sender["active"]:
            raise AgentInactive("agent is no longer active")
        attrs = attributes(sender)
        await store.insert_agent(conn, agent_id=agent_id, tenant=tenant, did=str(attrs.get("did", "")),
                                 tier=str(attrs.get("tier", "")), purpose=str(attrs.get("purpose", "")),
                                 expires_at=sender["expires_at"])

    # -- granting and checking -------------------------------------------------------------------
    async def grant(self, req: dlg.GrantDelegation, ctx: Context) -> dlg.DelegationRecord:
        try:
            leaf = ucan.parse(req.chain[-1])
        except ucan.DelegationError as exc:
            raise chains.invalid(exc.code, str(exc)) from exc
        if ctx.sender.kind == "agent" and leaf.iss != ctx.sender.key.did:
            raise Forbidden("an agent records only links it signed itself")
        async with self.unit_of_work(ctx) as uow:
            await store.lock_graph(uow.conn, ctx.tenant, exclusive=False)
            checked = await self._verify(uow.conn, ctx.tenant, req.chain, leaf.aud, new_leaf=True)
            parent = checked.verified.links[-2] if len(req.chain) > 1 else None
            issuer_agent_id = checked.agent_ids[-2] if parent is not None else None
            if ctx.sender.kind == "agent" and issuer_agent_id != ctx.sender.subject_id:
                raise Forbidden("the parent link was delegated to another agent")
            existing = checked.recorded.get(leaf.cid)
            if existing is None:
                new = store.NewLink(
                    cid=leaf.cid, parent=parent.cid if parent else None, depth=len(req.chain),
                    root_did=checked.verified.root, issuer_did=leaf.iss, audience_did=leaf.aud,
                    issuer_agent_id=issuer_agent_id, audience_agent_id=checked.agent_ids[-1],
                    capabilities=rules.rar(leaf.capabilities), not_before=leaf.nbf, expires=leaf.exp)
                await store.insert_link(uow.conn, ctx.tenant, new, jwt=leaf.jwt, granted_by=ctx.sender.sender)
                await uow.emit(sub.DELEGATION_GRANTED, ctx.tenant, views.granted(new))
        return views.record(await store.link(self.pool, ctx.tenant, leaf.cid), req.chain)

    async def check(self, req: dlg.CheckChain, ctx: Context) -> dlg.ChainCheck:
        if (req.chain is None) == (req.leaf_cid is None):
            raise InvalidRequest("give the chain or the leaf CID, not both")
        if ctx.sender.kind == "agent" and req.holder_did != ctx.sender.key.did:
            raise Forbidden("an agent may check only chains it holds")
        async with self.pool.acquire() as conn:
            chain = req.chain
            if chain is None:
                chain = [r["jwt"] for r in await store.ancestry(conn, ctx.tenant, req.leaf_cid or "")]
                if not chain:
                    raise chains.invalid("not_recorded", "no link with that CID was granted here")
            checked = await self._verify(conn, ctx.tenant, chain, req.holder_did, new_leaf=False)
        v = checked.verified
        return dlg.ChainCheck(
            depth=v.depth, max_depth=checked.max_depth, root=v.root, holder=v.holder,
            capabilities=rules.rar(v.capabilities), cids=list(v.cids), path=list(v.path),
            agent_ids=checked.agent_ids, not_before=v.not_before, expires=v.expires)

    async def chain(self, req: dlg.GetChain, ctx: Context) -> dlg.DelegationRecord:
        rows = await store.ancestry(self.pool, ctx.tenant, req.cid)
        if ctx.sender.kind == "agent" and not any(
                ctx.sender.subject_id in (r["issuer_agent_id"], r["audience_agent_id"]) for r in rows):
            rows = []  # not on this chain: as if it did not exist
        if not rows:
            raise NotFound("no such delegation")
        return views.record(rows[-1], [r["jwt"] for r in rows])

    # -- revoking --------------------------------------------------------------------------------
    async def revoke(self, req: dlg.RevokeDelegation, ctx: Context) -> dlg.DelegationRevocation:
        if req.record is not None and req.record.revoke != req.cid:
            raise InvalidRequest("the record revokes another CID")
        if req.record is None and ctx.sender.kind != "operator":
            raise Forbidden("only an operator may revoke without a signed revocation record")
        async with self.unit_of_work(ctx) as uow:
            await store.lock_graph(uow.conn, ctx.tenant, exclusive=True)
            rows = await store.ancestry(uow.conn, ctx.tenant, req.cid)
            if not rows:
                raise NotFound("no such delegation")
            link = rows[-1]
            if req.record is not None:
                record = msgspec.to_builtins(req.record)
                try:
                    ucan.verify_revocation(record, frozenset(r["issuer_did"] for r in rows))
                except ucan.DelegationError as exc:
                    raise chains.invalid(exc.code, str(exc)) from exc
                by = req.record.iss
            else:
                record = await revocation.authority_record(uow.conn, self.authorities, ctx.tenant, link)
                by = ctx.sender.sender
            cids = await revocation.cascade(uow, ctx.tenant, [req.cid], {req.cid: record}, by=by, reason=req.reason)
        return dlg.DelegationRevocation(cid=req.cid, cids=cids, already_revoked=link["revoked_at"] is not None)

    async def on_agent_exited(self, event: reg.AgentExited, ctx: Context) -> None:
        reason = f"agent {event.agent_id} {event.status}: {event.reason}"[:1024]
        async with self.unit_of_work(ctx) as uow:
            await store.lock_graph(uow.conn, ctx.tenant, exclusive=True)
            await store.end_agent(uow.conn, ctx.tenant, event.agent_id, event.at, reason)
            direct = await store.unrevoked_links_of_agent(uow.conn, ctx.tenant, event.agent_id)
            records = {r["cid"]: await revocation.authority_record(uow.conn, self.authorities, ctx.tenant, r)
                       for r in direct}
            await revocation.cascade(uow, ctx.tenant, [r["cid"] for r in direct], records, by=event.by,
                                     reason=reason)

    async def revocations(self, req: dlg.ListRevocations, ctx: Context) -> dlg.RevocationList:
        rows = await store.revocations_after(self.pool, ctx.tenant, req.after, req.limit)
        entries = [views.revocation_entry(r) for r in rows]
        return dlg.RevocationList(revocations=entries,
                                  next_after=entries[-1].seq if len(entries) == req.limit else None)

    # -- the graph -------------------------------------------------------------------------------
    async def graph(self, req: dlg.GetGraph, ctx: Context) -> dlg.DelegationGraph:
        rows = await store.graph_links(self.pool, ctx.tenant, agent_id=req.agent_id,
                                       include_revoked=req.include_revoked, limit=req.limit)
        truncated = len(rows) > req.limit
        edges = [views.edge(r) for r in rows[:req.limit]]
        dids = sorted({d for e in edges for d in (e.issuer, e.audience)})
        authorities = await store.key_dids(self.pool, ctx.tenant)
        agents = await store.agent_labels(self.pool, ctx.tenant, dids)
        return dlg.DelegationGraph(nodes=views.nodes(edges, authorities, agents), edges=edges, truncated=truncated)

    # -- configuration and the authority ---------------------------------------------------------
    async def set_config(self, req: dlg.SetDelegationConfig, ctx: Context) -> dlg.DelegationConfigRecord:
        rules.check(req.config)  # refused before anything is stored
        async with self.unit_of_work(ctx) as uow:
            version = await store.insert_config(uow.conn, ctx.tenant, msgspec.to_builtins(req.config))
            await uow.emit(sub.DELEGATION_CONFIG_UPDATED, ctx.tenant, dlg.DelegationConfigUpdated(
                version=version, max_depth=req.config.max_depth, at=_now()))
        return dlg.DelegationConfigRecord(version=version, config=req.config)

    async def get_config(self, req: dlg.GetDelegationConfig, ctx: Context) -> dlg.DelegationConfigRecord:
        version, config = await self.config(self.pool, ctx.tenant)
        return dlg.DelegationConfigRecord(version=version, config=config)

    async def authority(self, req: dlg.GetAuthority, ctx: Context) -> dlg.AuthorityRecord:
        async with self.unit_of_work() as uow:
            row, _ = await self.authorities.active(uow.conn, ctx.tenant)  # exists once asked for
        return dlg.AuthorityRecord(did=row["did"], trusted_roots=await self.authorities.trusted_roots(self.pool, ctx.tenant))

    async def rotate_authority(self, req: dlg.RotateAuthority, ctx: Context) -> dlg.AuthorityRecord:
        async with self.unit_of_work(ctx) as uow:
            await store.retire_key(uow.conn, ctx.tenant, _now())
            await self.authorities.create(uow.conn, ctx.tenant)
        return await self.authority(dlg.GetAuthority(), ctx)

