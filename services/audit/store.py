"""The audit worker's SQL. Functions take the connection (or pool) of the caller."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime
from typing import Any, TypeAlias

import asyncpg

from services.audit.describe import AgentFacts
from services.audit.leaf import Terms
from services.audit.signing import NewLog
from shared import merkle

S = "audit"
Conn: TypeAlias = asyncpg.Connection | asyncpg.Pool


# ---- logs -----------------------------------------------------------------------------------


async def get_log(conn: Conn, log: str) -> asyncpg.Record | None:
    return await conn.fetchrow(f"SELECT * FROM {S}.logs WHERE log = $1", log)


async def lock_log(conn: asyncpg.Connection, log: str) -> asyncpg.Record | None:
    return await conn.fetchrow(f"SELECT * FROM {S}.logs WHERE log = $1 FOR UPDATE", log)


async def known_logs(conn: Conn, logs: Iterable[str]) -> set[str]:
    rows = await conn.fetch(f"SELECT log FROM {S}.logs WHERE log = ANY($1::text[])", list(set(logs)))
    return {r["log"] for r in rows}


async def create_log(conn: Conn, log: str, new: NewLog) -> None:
    """Create the log unless it exists (a replica racing us may have created it first)."""
    await conn.execute(
        f"INSERT INTO {S}.logs(log, origin, public_key, sealed_key, root) VALUES ($1, $2, $3, $4, $5)"
        " ON CONFLICT DO NOTHING", log, new.origin, new.public_key, new.sealed_key, merkle.EMPTY_ROOT)


async def replace_key(conn: asyncpg.Connection, log: str, old_public: bytes, until_size: int, new: NewLog) -> None:
    await conn.execute(f"INSERT INTO {S}.retired_keys(log, public_key, until_size) VALUES ($1, $2, $3)",
                       log, old_public, until_size)
    await conn.execute(f"UPDATE {S}.logs SET public_key = $2, sealed_key = $3 WHERE log = $1",
                       log, new.public_key, new.sealed_key)


async def retired_keys(conn: Conn, log: str) -> list[asyncpg.Record]:
    return await conn.fetch(f"SELECT * FROM {S}.retired_keys WHERE log = $1 ORDER BY until_size, retired_at", log)


async def set_head(conn: asyncpg.Connection, log: str, size: int, root: bytes) -> None:
    await conn.execute(f"UPDATE {S}.logs SET size = $2, root = $3 WHERE log = $1", log, size, root)


# ---- appends --------------------------------------------------------------------------------


async def already_logged(conn: asyncpg.Connection, keys: Sequence[bytes]) -> dict[bytes, tuple[str, int]]:
    rows = await conn.fetch(f"SELECT dedup_key, log, seq FROM {S}.entries WHERE dedup_key = ANY($1::bytea[])",
                            list(keys))
    return {bytes(r["dedup_key"]): (r["log"], r["seq"]) for r in rows}


async def agent_facts(conn: asyncpg.Connection, log: str, agent_ids: Iterable[str]) -> dict[str, AgentFacts]:
    rows = await conn.fetch(f"SELECT * FROM {S}.agents WHERE log = $1 AND agent_id = ANY($2::text[])",
                            log, list(set(agent_ids)))
    return {r["agent_id"]: AgentFacts(r["agent_id"], r["orchestrator_id"], r["controller"], r["parent_agent_id"])
            for r in rows}


def node_reader(conn: Conn, log: str) -> merkle.GetMany:
    """`get_many` for shared/merkle.py: every node a proof or append needs, in one query."""

    async def get_many(nodes: Sequence[merkle.Node]) -> dict[merkle.Node, bytes]:
        rows = await conn.fetch(
            f"SELECT n.level, n.idx, n.hash FROM {S}.nodes n"
            " JOIN unnest($2::smallint[], $3::bigint[]) AS want(level, idx)"
            " ON n.level = want.level AND n.idx = want.idx WHERE n.log = $1",
            log, [lv for lv, _ in nodes], [ix for _, ix in nodes])
        return {(r["level"], r["idx"]): bytes(r["hash"]) for r in rows}

    return get_many


async def insert_nodes(conn: asyncpg.Connection, log: str, nodes: Mapping[merkle.Node, bytes]) -> None:
    # Plain INSERT: a node that exists already means a second append at the same place.
    await conn.execute(
        f"INSERT INTO {S}.nodes(log, level, idx, hash)"
        " SELECT $1, * FROM unnest($2::smallint[], $3::bigint[], $4::bytea[])",
        log, [lv for lv, _ in nodes], [ix for _, ix in nodes], list(nodes.values()))


async def insert_entries(conn: asyncpg.Connection, log: str,
                         rows: Sequence[tuple[int, bytes, bytes, Terms]]) -> None:
    await conn.executemany(
        f"INSERT INTO {S}.entries(log, seq, leaf, dedup_key, event, at, trace_id, agents, users, orchestrators)"
        " VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)",
        [(log, seq, leaf, key, t.event, t.at, t.trace_id, t.agents, t.users, t.orchestrators)
         for seq, leaf, key, t in rows])


async def insert_agents(conn: asyncpg.Connection, log: str, agents: Sequence[AgentFacts]) -> None:
    if agents:
        await conn.executemany(
            f"INSERT INTO {S}.agents(log, agent_id, orchestrator_id, controller, parent_agent_id)"
            " VALUES ($1, $2, $3, $4, $5) ON CONFLICT DO NOTHING",
            [(log, a.agent_id, a.orchestrator_id, a.controller, a.parent_agent_id) for a in agents])


# ---- checkpoints ----------------------------------------------------------------------------


async def insert_checkpoint(conn: asyncpg.Connection, log: str, size: int, root: bytes, note: str) -> None:
    await conn.execute(f"INSERT INTO {S}.checkpoints(log, size, root, note) VALUES ($1, $2, $3, $4)",
                       log, size, root, note)
    await conn.execute(f"UPDATE {S}.logs SET checkpoint_size = $2, checkpoint_at = now() WHERE log = $1",
                       log, size)


async def put_handover(conn: asyncpg.Connection, log: str, size: int, root: bytes, note: str) -> None:
    """The checkpoint at `size`, now signed by both keys. The same tree head may have been signed
    by the old key alone already: the note gains a signature, its text (and every copy readers
    hold) stays valid."""
    await conn.execute(
        f"INSERT INTO {S}.checkpoints(log, size, root, note) VALUES ($1, $2, $3, $4)"
        " ON CONFLICT (log, size) DO UPDATE SET note = EXCLUDED.note, signed_at = now()"
        f" WHERE {S}.checkpoints.root = EXCLUDED.root", log, size, root, note)
    await conn.execute(f"UPDATE {S}.logs SET checkpoint_size = $2, checkpoint_at = now() WHERE log = $1",
                       log, size)


async def due_for_checkpoint(conn: Conn, interval_s: float) -> list[str]:
    rows = await conn.fetch(
        f"SELECT log FROM {S}.logs WHERE size > checkpoint_size"
        " AND (checkpoint_at IS NULL OR checkpoint_at <= now() - make_interval(secs => $1))", interval_s)
    return [r["log"] for r in rows]


async def get_checkpoint(conn: Conn, log: str, size: int | None) -> asyncpg.Record | None:
    if size is None:
        return await conn.fetchrow(
            f"SELECT * FROM {S}.checkpoints WHERE log = $1 ORDER BY size DESC LIMIT 1", log)
    return await conn.fetchrow(f"SELECT * FROM {S}.checkpoints WHERE log = $1 AND size = $2", log, size)


async def list_checkpoints(conn: Conn, log: str, after: int | None, limit: int) -> list[asyncpg.Record]:
    return await conn.fetch(
        f"SELECT * FROM {S}.checkpoints WHERE log = $1 AND size > $2 ORDER BY size LIMIT $3",
        log, -1 if after is None else after, limit)


# ---- reads ----------------------------------------------------------------------------------


async def get_entry(conn: Conn, log: str, seq: int) -> asyncpg.Record | None:
    return await conn.fetchrow(f"SELECT * FROM {S}.entries WHERE log = $1 AND seq = $2", log, seq)


async def query(conn: Conn, log: str, *, agent_id: str | None = None, user: str | None = None,
                trace_id: str | None = None, event: str | None = None, since: datetime | None = None,
                until: datetime | None = None, scope: tuple[str, str] | None = None,
                after: int | None = None, limit: int = 100) -> list[asyncpg.Record]:
    """Entries matching every filter, by sequence, with the leaf hash the tree holds for each.

    `scope` is (column, value) for callers that may see only their own entries.
    """
    where = ["e.log = $1"]
    args: list[Any] = [log]

    def add(clause: str, value: Any) -> None:
        args.append(value)
        where.append(clause.format(f"${len(args)}"))

    if agent_id is not None:
        add("e.agents @> ARRAY[{}]::text[]", agent_id)
    if user is not None:
        add("e.users @> ARRAY[{}]::text[]", user)
    if trace_id is not None:
        add("e.trace_id = {}", trace_id)
    if event is not None:
        add("e.event = {}", event)
    if since is not None:
        add("e.at >= {}", since)
    if until is not None:
        add("e.at < {}", until)
    if scope is not None:
        column, value = scope
        assert column in ("agents", "orchestrators")
        add(f"e.{column} @> ARRAY[{{}}]::text[]", value)
    if after is not None:
        add("e.seq > {}", after)
    args.append(limit)
    return await conn.fetch(
        f"SELECT e.seq, e.leaf, n.hash AS leaf_hash FROM {S}.entries e"
        f" LEFT JOIN {S}.nodes n ON n.log = e.log AND n.level = 0 AND n.idx = e.seq"
        f" WHERE {' AND '.join(where)} ORDER BY e.seq LIMIT ${len(args)}", *args)


def in_scope(row: asyncpg.Record, scope: tuple[str, str] | None) -> bool:
    return scope is None or scope[1] in (row[scope[0]] or ())
