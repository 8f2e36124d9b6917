"""Appending to a tenant's log and signing its checkpoints, in Postgres.

An append runs in one transaction per log: lock the log's head row (appends to one log are
serialised; different logs proceed in parallel), drop messages already logged (the dedup key is
unique, so redelivery, a restart or a second replica can never log a message twice), build each
leaf at its sequence number, write the leaf and the O(log n) subtree nodes it completes, move the
head, and sign a checkpoint when one is due. Either all of that commits or none of it does.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from datetime import UTC, datetime

import asyncpg

from services.audit import store
from services.audit.leaf import Observed, build_leaf, terms_of
from services.audit.signing import DEPLOYMENT_LOG, LogKeys
from shared import merkle


class AuditLog:
    def __init__(self, pool: asyncpg.Pool, keys: LogKeys, *, checkpoint_every: int) -> None:
        self.pool = pool
        self.keys = keys
        self.checkpoint_every = checkpoint_every
        self._known: set[str] = set()

    async def route(self, observed: Sequence[Observed]) -> dict[str, list[Observed]]:
        """Group messages by the log they go to, in arrival order.

        A verified event goes to its tenant's log (created on first use). A rejected one goes
        there too if that log exists; otherwise to the deployment log, so that no unauthenticated
        message can make the audit create a log (or a key) for a name it chose.
        """
        verified = {ob.tenant for ob in observed if ob.verified}
        unknown = {ob.tenant for ob in observed if not ob.verified} - verified - self._known
        existing = await store.known_logs(self.pool, unknown) if unknown else set()
        self._known |= existing
        groups: dict[str, list[Observed]] = {}
        for ob in observed:
            log = ob.tenant if ob.verified or ob.tenant in verified or ob.tenant in self._known else DEPLOYMENT_LOG
            groups.setdefault(log, []).append(ob)
        return groups

    async def ensure(self, log: str) -> None:
        if log not in self._known:
            if await store.get_log(self.pool, log) is None:
                await store.create_log(self.pool, log, self.keys.create(log))
            self._known.add(log)

    async def append(self, log: str, observed: Sequence[Observed]) -> dict[bytes, int]:
        """Append the messages not logged yet; returns each message's sequence number (new or old)."""
        await self.ensure(log)
        seqs: dict[bytes, int] = {}
        async with self.pool.acquire() as conn, conn.transaction():
            head = await store.lock_log(conn, log)
            assert head is not None
            for key, (_, seq) in (await store.already_logged(conn, [ob.dedup_key for ob in observed])).items():
                seqs[key] = seq
            fresh: list[Observed] = []
            for ob in observed:
                if ob.dedup_key not in seqs:
                    seqs[ob.dedup_key] = -1  # placeholder: a second copy in this batch is skipped
                    fresh.append(ob)
            if not fresh:
                return seqs
            about = [str(ob.facts.subject.get("id")) for ob in fresh
                     if ob.facts is not None and ob.facts.subject.get("type") == "agent"]
            agents = await store.agent_facts(conn, log, about) if about else {}
            size = head["size"]
            rows, hashes, registered = [], [], []
            for offset, ob in enumerate(fresh):
                seq = size + offset
                leaf = build_leaf(seq, ob, agents)
                if ob.facts is not None and ob.facts.registers is not None:
                    registered.append(ob.facts.registers)
                    agents[ob.facts.registers.agent_id] = ob.facts.registers
                at = datetime.fromtimestamp(ob.time_ms / 1000, UTC)
                rows.append((seq, leaf, ob.dedup_key, terms_of(json.loads(leaf), at)))
                hashes.append(merkle.leaf_hash(leaf))
                seqs[ob.dedup_key] = seq
            appended = await merkle.append_leaves_async(size, hashes, store.node_reader(conn, log))
            await store.insert_nodes(conn, log, appended.nodes)
            await store.insert_entries(conn, log, rows)
            await store.insert_agents(conn, log, registered)
            await store.set_head(conn, log, appended.size, appended.root)
            # A new log signs its first tree head at once; then every `checkpoint_every` entries
            # (and the interval sweep signs whatever waited too long).
            if head["checkpoint_size"] == 0 or appended.size - head["checkpoint_size"] >= self.checkpoint_every:
                await self._sign(conn, head, appended.size, appended.root)
        return seqs

    async def checkpoint_due(self, interval_s: float) -> int:
        """Sign a checkpoint for every log whose newest entries waited `interval_s`."""
        signed = 0
        for log in await store.due_for_checkpoint(self.pool, interval_s):
            async with self.pool.acquire() as conn, conn.transaction():
                head = await store.lock_log(conn, log)
                # Another replica may have signed since we looked.
                if head is not None and head["size"] > head["checkpoint_size"]:
                    await self._sign(conn, head, head["size"], bytes(head["root"]))
                    signed += 1
        return signed

    async def _sign(self, conn: asyncpg.Connection, head: asyncpg.Record, size: int, root: bytes) -> None:
        signer = self.keys.signer(head["log"], head["origin"], bytes(head["public_key"]), bytes(head["sealed_key"]))
        await store.insert_checkpoint(conn, head["log"], size, root, self.keys.sign(signer, size, root))

    async def rotate(self, log: str) -> None:
        """Give `log` a new key: the current tree head is signed by the old key and the new one in
        the same transaction that retires the old key, so there is never a checkpoint that no
        trusted key links to the ones before it."""
        async with self.pool.acquire() as conn, conn.transaction():
            head = await store.lock_log(conn, log)
            if head is None:
                raise LookupError(log)
            old = self.keys.signer(log, head["origin"], bytes(head["public_key"]), bytes(head["sealed_key"]))
            new_key = self.keys.new_key(log, head["origin"])
            new = self.keys.signer(log, head["origin"], new_key.public_key, new_key.sealed_key)
            size, root = head["size"], bytes(head["root"])
            if size > 0:
                await store.put_handover(conn, log, size, root, self.keys.sign_handover(old, new, size, root))
            await store.replace_key(conn, log, bytes(head["public_key"]), size, new_key)

