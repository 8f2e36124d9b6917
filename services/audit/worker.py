"""The audit worker: every event on the stream, exactly once, in a verifiable per-tenant log.

It consumes the whole stream (services/audit/consumer.py), appends each message as a leaf of its
tenant's RFC 9162 Merkle log (services/audit/log.py), signs C2SP checkpoints every
`AGENTID_AUDIT_CHECKPOINT_EVERY` entries or `AGENTID_AUDIT_CHECKPOINT_INTERVAL_S` seconds, and
answers checkpoint, proof and query requests.

It emits no events of its own: it audits every event, so an `audit.checkpoint` event would be
logged, need a checkpoint of its own, and so on without end. Checkpoints are read with
`audit.checkpoint` / `audit.checkpoints` instead (witnesses and monitors poll).

Who may read what: checkpoints, their list and consistency proofs are hashes and signatures, open
to every party of the tenant. Inclusion proofs and queries return entries: operators see all, an
orchestrator the entries about itself and the agents it spawned, an agent those about itself.
"""

from __future__ import annotations

import asyncio
import base64
import logging
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import asyncpg

from contracts import audit as au
from contracts import subjects as sub
from services.audit import store
from services.audit.consumer import UNKNOWN_SENDER_ATTEMPTS, Consumer
from services.audit.intake import Intake
from services.audit.log import AuditLog
from services.audit.signing import LogKeys, load_witness, log_key, origin_for
from shared import merkle
from shared.errors import Forbidden, InternalError, InvalidRequest, NotFound
from shared.worker import Context, Worker

log = logging.getLogger(__name__)

# Query replies stay well under NATS's default 1 MiB payload limit.
REPLY_BUDGET = 512 * 1024


def _b64(raw: bytes) -> str:
    return base64.b64encode(bytes(raw)).decode("ascii")


def _signed(row: asyncpg.Record) -> au.SignedCheckpoint:
    return au.SignedCheckpoint(size=row["size"], root_hash=_b64(row["root"]), note=row["note"],
                               signed_at=row["signed_at"])


def _scope(ctx: Context) -> tuple[str, str] | None:
    """Which entries the caller may read: all (operators) or those naming it."""
    kind = ctx.sender.kind
    if kind == "operator":
        return None
    if kind == "orchestrator":
        return "orchestrators", ctx.sender.subject_id
    if kind == "agent":
        return "agents", ctx.sender.subject_id
    raise Forbidden(f"a {kind} may not read audit entries")


class AuditWorker(Worker):
    name = "audit"
    schema = "audit"
    migrations = Path(__file__).parent / "migrations"
    uses_directory = True

    def routes(self) -> Mapping[sub.Route[Any, Any], Any]:
        return {
            sub.AUDIT_CHECKPOINT: self.checkpoint,
            sub.AUDIT_CHECKPOINTS: self.checkpoints,
            sub.AUDIT_PROOF: self.proof,
            sub.AUDIT_CONSISTENCY: self.consistency,
            sub.AUDIT_QUERY: self.query,
            sub.AUDIT_ROTATE_KEY: self.rotate_key,
        }

    async def on_start(self) -> None:
        s = self.settings
        if self.keyring.kek is None:
            raise RuntimeError("the keyring has no key-encryption key: audit cannot seal log keys")
        origin_for(s.base_url(), "probe")  # a public URL that makes no valid origin fails now, not later
        self.keys = LogKeys(self.keyring.kek, s.base_url(), load_witness(s.audit_witness_key, s.audit_witness_name))
        self.audit_log = AuditLog(self.pool, self.keys, checkpoint_every=s.audit_checkpoint_every)
        intake = Intake(self.bus.registry, max_skew_ms=self.bus.max_skew_ms,
                        max_age_ms=int(s.stream_max_age_s * 1000), max_attempts=UNKNOWN_SENDER_ATTEMPTS)
        self.consumer = Consumer(self.bus, intake, self.audit_log, ack_wait_s=s.ack_wait_s)

    async def background(self, stop: asyncio.Event) -> None:
        async with asyncio.TaskGroup() as tg:
            tg.create_task(self.consumer.run(stop))
            tg.create_task(self._sweep(stop))

    async def _sweep(self, stop: asyncio.Event) -> None:
        """Sign checkpoints for logs whose newest entries have waited the interval."""
        interval = self.settings.audit_checkpoint_interval_s
        period = min(max(interval / 4, 0.05), 5.0)
        while not stop.is_set():
            try:
                await self.audit_log.checkpoint_due(interval)
            except Exception as exc:  # an outage pauses signing; the next sweep catches up
                log.warning("audit: checkpoint sweep failed: %s", type(exc).__name__)
            try:
                await asyncio.wait_for(stop.wait(), timeout=period)
            except TimeoutError:
                pass

    # -- checkpoints -----------------------------------------------------------------------------
    async def _head(self, tenant: str) -> asyncpg.Record:
        head = await store.get_log(self.pool, tenant)
        if head is None:
            raise NotFound("this tenant's audit log has no entries yet")
        return head

    async def _checkpoint(self, tenant: str, size: int | None) -> asyncpg.Record:
        row = await store.get_checkpoint(self.pool, tenant, size)
        if row is None:
            raise NotFound("no checkpoint was signed at that size" if size is not None else "no checkpoint yet")
        return row

    async def _retired(self, head: asyncpg.Record) -> list[au.RetiredLogKey]:
        return [au.RetiredLogKey(key=log_key(head["origin"], r["public_key"]), until_size=r["until_size"],
                                 retired_at=r["retired_at"]) for r in await store.retired_keys(self.pool, head["log"])]

    async def checkpoint(self, req: au.GetCheckpoint, ctx: Context) -> au.CheckpointRecord:
        head = await self._head(ctx.tenant)
        row = await self._checkpoint(ctx.tenant, req.size)
        return au.CheckpointRecord(origin=head["origin"], log_public_key=log_key(head["origin"], head["public_key"]),
                                   witness_keys=self.keys.witness_keys(), entries=head["size"],
                                   checkpoint=_signed(row), retired_log_keys=await self._retired(head))

    async def checkpoints(self, req: au.ListCheckpoints, ctx: Context) -> au.CheckpointList:
        head = await self._head(ctx.tenant)
        rows = await store.list_checkpoints(self.pool, ctx.tenant, req.after, req.limit)
        return au.CheckpointList(origin=head["origin"], log_public_key=log_key(head["origin"], head["public_key"]),
                                 witness_keys=self.keys.witness_keys(), checkpoints=[_signed(r) for r in rows],
                                 next_after=rows[-1]["size"] if len(rows) == req.limit else None,
                                 retired_log_keys=await self._retired(head))

    async def rotate_key(self, req: au.RotateLogKey, ctx: Context) -> au.CheckpointRecord:
        """A new key for the tenant's log (scheduled, or the old one is suspected): see AuditLog.rotate.
        The reason is in the worker's log; the log itself records events, and this is not one."""
        await self._head(ctx.tenant)
        await self.audit_log.rotate(ctx.tenant)
        log.info("audit: log %s has a new key (%s, by %s)", ctx.tenant, req.reason, ctx.sender.sender)
        return await self.checkpoint(au.GetCheckpoint(), ctx)

    # -- proofs ----------------------------------------------------------------------------------
    async def proof(self, req: au.GetInclusionProof, ctx: Context) -> au.InclusionProof:
        scope = _scope(ctx)
        await self._head(ctx.tenant)
        cp = await self._checkpoint(ctx.tenant, req.tree_size)
        if req.seq >= cp["size"]:
            if req.tree_size is None:
                raise NotFound("no checkpoint covers that entry yet")
            raise InvalidRequest("seq must be below tree_size")
        entry = await store.get_entry(self.pool, ctx.tenant, req.seq)
        if entry is None:
            raise NotFound("no such entry")
        if not store.in_scope(entry, scope):
            raise Forbidden("that entry is not about the caller")
        hashes = await self._proof(merkle.inclusion_proof_async(req.seq, cp["size"], self._reader(ctx.tenant)))
        return au.InclusionProof(leaf_index=req.seq, tree_size=cp["size"], leaf=_text(entry["leaf"]),
                                 hashes=[_b64(h) for h in hashes], checkpoint=cp["note"])

    async def consistency(self, req: au.GetConsistencyProof, ctx: Context) -> au.ConsistencyProof:
        await self._head(ctx.tenant)
        new = await self._checkpoint(ctx.tenant, req.second)
        if req.first > new["size"]:
            raise InvalidRequest("first must not exceed second")
        old = await self._checkpoint(ctx.tenant, req.first)
        hashes = await self._proof(merkle.consistency_proof_async(old["size"], new["size"], self._reader(ctx.tenant)))
        return au.ConsistencyProof(first=old["size"], second=new["size"], hashes=[_b64(h) for h in hashes],
                                   old_checkpoint=old["note"], checkpoint=new["note"])

    def _reader(self, tenant: str) -> merkle.GetMany:
        return store.node_reader(self.pool, tenant)

    @staticmethod
    async def _proof(making: Any) -> list[bytes]:
        try:
            return await making
        except merkle.MissingNode as exc:
            # The tree lacks a node a signed checkpoint needs: the database was damaged or edited.
            log.error("audit: %s", exc)
            raise InternalError("the log is missing data it must hold") from exc

    # -- queries ---------------------------------------------------------------------------------
    async def query(self, req: au.QueryLog, ctx: Context) -> au.QueryPage:
        scope = _scope(ctx)
        if req.since is not None and req.until is not None and req.since >= req.until:
            raise InvalidRequest("since must be before until")
        rows = await store.query(self.pool, ctx.tenant, agent_id=req.agent_id, user=req.user,
                                 trace_id=req.trace_id, event=req.event, since=req.since, until=req.until,
                                 scope=scope, after=req.after, limit=req.limit)
        entries: list[au.AuditEntry] = []
        spent = 0
        for row in rows:
            leaf = _text(row["leaf"])
            spent += len(leaf) + 100
            if entries and spent > REPLY_BUDGET:
                break
            entries.append(au.AuditEntry(seq=row["seq"], leaf=leaf,
                                         leaf_hash=_b64(row["leaf_hash"]) if row["leaf_hash"] is not None else None))
        more = len(entries) < len(rows) or len(rows) == req.limit
        return au.QueryPage(entries=entries, next_after=entries[-1].seq if more and entries else None)


def _text(leaf: bytes) -> str:
    # Leaves are UTF-8 by construction; an edited row that is not must still be shown (and fail to verify).
    return bytes(leaf).decode("utf-8", "replace")
