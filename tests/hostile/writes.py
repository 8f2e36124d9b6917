"""What "nothing was written" means, for a set of tenants: a digest of every row those tenants own in
every worker schema, and the count of their events on the stream, per subject.

Rows are found through the schema itself (`information_schema`): a table with a `tenant` column is
scoped by it, an audit table by its `log` (one log per tenant), an outbox or inbox by its subject's
tenant token; the two tables that hold only ids are scoped through the tables those ids come from. A
table none of these rules covers fails the suite (`Unscoped`) until a rule is added here, so a new
table cannot silently escape the check.

A handler commits before it replies, and the outbox relay publishes an event before deleting its
row, so a write caused by a request is visible (as a row, an outbox row or an event) the moment its
reply arrives: a snapshot taken right after the replies is enough. Before the first snapshot, the
writes of earlier work must have settled (`quiesce`): outboxes empty and every durable consumer of
the stream idle.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from services.audit.consumer import DURABLE as AUDIT_DURABLE
from shared.bus.client import stream_name
from tests.helpers import Harness, eventually

# Ids without a tenant column, scoped through the table each id comes from.
_BY_ID = {
    "senders_ended": "subject_id IN (SELECT id FROM registration.agents WHERE tenant = ANY($1))",
    "revoked_links": "cid IN (SELECT cid FROM delegation.links WHERE tenant = ANY($1))",
}
# Deployment-wide tables, compared whole: no request may touch them.
_WHOLE = {"schema_migrations"}
# Written on a timer, not by any input: the audit signs a checkpoint when entries have waited long
# enough. The entries themselves are compared; their checkpoints are not.
_TIMERS = {"audit.checkpoints"}
_TIMER_COLUMNS = {"audit.logs": ["checkpoint_size", "checkpoint_at"]}


class Unscoped(AssertionError):
    """A table no rule scopes to a tenant."""


@dataclass(frozen=True)
class Snapshot:
    rows: dict[str, tuple[int, str]]            # schema.table -> (rows, digest of the rows)
    events: Counter[str] = field(default_factory=Counter)  # stream subject -> messages

    def changes(self, after: Snapshot) -> dict[str, Any]:
        """What differs in `after`: tables by name, events by subject."""
        out: dict[str, Any] = {t: (self.rows.get(t), v) for t, v in after.rows.items() if self.rows.get(t) != v}
        for subject in set(self.events) | set(after.events):
            if self.events[subject] != after.events[subject]:
                out[subject] = (self.events[subject], after.events[subject])
        return out


def schemas(harness: Harness) -> list[str]:
    """Every worker schema (the gateway keeps no state and opens no database)."""
    return sorted({w.schema for w in harness.stack.workers if w.name != "gateway"})


async def _tables(harness: Harness) -> dict[str, set[str]]:
    rows = await harness.db.fetch(
        "SELECT c.table_schema, c.table_name, c.column_name FROM information_schema.columns c"
        " JOIN information_schema.tables t USING (table_schema, table_name)"
        " WHERE c.table_schema = ANY($1) AND t.table_type = 'BASE TABLE'", schemas(harness))
    tables: dict[str, set[str]] = {}
    for r in rows:
        tables.setdefault(f"{r['table_schema']}.{r['table_name']}", set()).add(r["column_name"])
    return tables


def _scope(table: str, columns: set[str]) -> str:
    name = table.split(".", 1)[1]
    if "tenant" in columns:
        return "tenant = ANY($1)"
    if "log" in columns:
        return "log = ANY($1)"
    if "subject" in columns:  # outbox, inbox: <root>.v1.<tenant>.<...>
        return "split_part(subject, '.', 3) = ANY($1)"
    if name in _BY_ID:
        return _BY_ID[name]
    if name in _WHOLE:
        return "$1::text[] IS NOT NULL"
    raise Unscoped(f"{table} has no tenant, log or subject column and no rule in tests/hostile/writes.py")


_QUERIES: dict[int, str] = {}


async def _snapshot_query(harness: Harness) -> str:
    """One statement for every table (the schema does not change while the stack runs)."""
    if id(harness) not in _QUERIES:
        parts = []
        for table, columns in sorted((await _tables(harness)).items()):
            if table in _TIMERS:
                continue
            drop = "".join(f" - '{c}'" for c in _TIMER_COLUMNS.get(table, []))
            schema, name = table.split(".", 1)
            parts.append(
                f"SELECT '{table}' AS t, count(*) AS n, md5(coalesce(string_agg(x, ',' ORDER BY x), '')) AS digest"
                f' FROM (SELECT (to_jsonb(r){drop})::text AS x FROM "{schema}"."{name}" r'
                f" WHERE {_scope(table, columns)}) q")
        _QUERIES[id(harness)] = " UNION ALL ".join(parts)
    return _QUERIES[id(harness)]


async def snapshot(harness: Harness, tenants: list[str]) -> Snapshot:
    found = await harness.db.fetch(await _snapshot_query(harness), tenants)
    rows = {r["t"]: (r["n"], r["digest"]) for r in found}
    events: Counter[str] = Counter()
    js = harness.nc.jetstream()
    for tenant in tenants:
        info = await js.stream_info(stream_name(harness.root), subjects_filter=f"{harness.root}.v1.{tenant}.evt.>")
        events.update(info.state.subjects or {})
    return Snapshot(rows, events)


async def quiesce(harness: Harness, tenants: list[str], timeout: float = 20.0) -> None:
    """Wait until the writes of earlier work have settled: no event waiting in any outbox of these
    tenants, the audit log holding every event of the stream, and every durable consumer of the
    stream with nothing pending or unacknowledged."""
    js = harness.nc.jetstream()
    stream = stream_name(harness.root)
    outboxes = [f'"{s}".outbox' for s in schemas(harness)]

    async def idle() -> bool:
        infos = await js.consumers_info(stream)
        return not any(i.num_pending or i.num_ack_pending for i in infos)

    async def logged_up_to_the_last_event() -> bool:
        # The server counts a stored message as pending for its consumers a moment after it acks the
        # publish (it signals consumers from a separate loop), so an event just relayed can be in
        # no consumer's figures yet. The audit consumer takes every subject of the stream: once it
        # has acknowledged the stream's last message, every consumer has been told of it.
        last = (await js.stream_info(stream)).state.last_seq
        audit = await js.consumer_info(stream, AUDIT_DURABLE)
        return audit.ack_floor is not None and (audit.ack_floor.stream_seq or 0) >= last

    async def settled() -> bool:
        # Consumers, outboxes, the log, consumers again: an event relayed between two looks is
        # pending at the last, and a consumer's own outbox row is written before it acknowledges.
        if not await idle():
            return False
        for outbox in outboxes:
            if await harness.count(f"SELECT count(*) FROM {outbox} WHERE split_part(subject, '.', 3) = ANY($1)",
                                   tenants):
                return False
        return await logged_up_to_the_last_event() and await idle()

    await eventually(settled, timeout=timeout, interval=0.02)
