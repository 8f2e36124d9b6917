"""The transactional outbox: state and the events it causes commit together, then get relayed.

A handler changes state inside `UnitOfWork`; every `emit` is signed there and written to the
worker's `outbox` table in the same transaction. `OutboxRelay` publishes committed rows to JetStream
with `Nats-Msg-Id` = the row id and deletes them once the stream has acknowledged. A crash between
commit and publish only delays the event; a crash between publish and delete makes JetStream (by
message id) and consumers (by their inbox) drop the second copy.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import asyncpg

from contracts import headers as H
from contracts.subjects import Topic, template_of
from shared import failpoints, telemetry
from shared.bus.client import Bus, encode
from shared.db import CONNECTION_ERRORS, unavailable_on_disconnect
from shared.errors import AgentidError, ReplayError
from shared.ids import new_id

log = logging.getLogger(__name__)


def outbox_row(bus: Bus, topic: Topic[Any], tenant: str, body: Any) -> tuple[str, str, bytes, dict[str, str]]:
    """(id, subject, payload, signed headers) of one event, ready for `insert_rows`."""
    subject = topic.subject(tenant, bus.root)
    payload = encode(body)
    headers = bus.envelope(subject, payload, msg_id=new_id())
    return headers[H.MSG_ID], subject, payload, headers


async def insert_rows(conn: asyncpg.Connection, schema: str,
                      rows: list[tuple[str, str, bytes, dict[str, str]]]) -> None:
    await conn.executemany(
        f'INSERT INTO "{schema}".outbox(id, subject, payload, headers) VALUES ($1, $2, $3, $4)', rows)


class UnitOfWork:
    """One transaction: the connection to write with, and the events to emit with it."""

    def __init__(self, conn: asyncpg.Connection, bus: Bus, schema: str) -> None:
        self.conn = conn
        self._bus = bus
        self._schema = schema
        self.emitted: list[tuple[str, str]] = []  # (subject, msg id), for callers that report them

    async def emit(self, topic: Topic[Any], tenant: str, body: Any) -> str:
        """Sign `body` as `topic`'s event and queue it in this transaction. Returns its id."""
        row = outbox_row(self._bus, topic, tenant, body)
        await insert_rows(self.conn, self._schema, [row])
        self.emitted.append((row[1], row[0]))
        return row[0]


class Outbox:
    """A worker's outbox: opens units of work and wakes the relay after each commit."""

    def __init__(self, pool: asyncpg.Pool, bus: Bus, schema: str) -> None:
        self.pool = pool
        self.bus = bus
        self.schema = schema
        self.committed = asyncio.Event()

    def wake(self) -> None:
        """Tell the relay that rows committed outside a unit of work are waiting."""
        self.committed.set()

    @asynccontextmanager
    async def unit_of_work(self, *, sender: str | None = None, msg_id: str | None = None,
                           subject: str = "", consumer: str = "") -> AsyncIterator[UnitOfWork]:
        """A transaction. With `msg_id`, the message is recorded in the inbox first and a second
        delivery of it raises `ReplayError` before any state is touched."""
        with unavailable_on_disconnect():
            async with self.pool.acquire() as conn:
                async with conn.transaction():
                    if msg_id is not None:
                        fresh = await conn.fetchval(
                            f'INSERT INTO "{self.schema}".inbox(consumer, sender, msg_id, subject)'
                            " VALUES ($1, $2, $3, $4) ON CONFLICT DO NOTHING RETURNING true",
                            consumer, sender or "", msg_id, subject,
                        )
                        if not fresh:
                            raise ReplayError("message already processed")
                    uow = UnitOfWork(conn, self.bus, self.schema)
                    yield uow
        if uow.emitted:
            failpoints.hit("after_commit")  # committed, not yet relayed: the window a crash must survive
            self.committed.set()


class OutboxRelay:
    """Publishes committed outbox rows to JetStream, in id order, and deletes them once acked.

    Several replicas may run it: `FOR UPDATE SKIP LOCKED` gives each row to one relay at a time.
    """

    def __init__(self, outbox: Outbox, *, batch: int = 256, poll_s: float = 0.5) -> None:
        self._outbox = outbox
        self._batch = batch
        self._poll_s = poll_s
        self.published = 0

    async def run(self, stop: asyncio.Event) -> None:
        backoff = self._poll_s
        while not stop.is_set():
            try:
                sent = await self.flush_once()
                backoff = self._poll_s
            except (AgentidError, *CONNECTION_ERRORS) as exc:
                log.warning("outbox relay of %s paused: %s", self._outbox.schema, type(exc).__name__)
                sent, backoff = 0, min(backoff * 2, 5.0)
            if sent < self._batch:  # drained as of the select: wait for the next commit (or the poll)
                await _wait_any(stop, self._outbox.committed, timeout=backoff)
                self._outbox.committed.clear()
        # Last flush so a clean shutdown leaves nothing behind (a crash leaves it for the next start).
        try:
            await self.flush_once()
        except (AgentidError, *CONNECTION_ERRORS):
            pass

    async def flush_once(self) -> int:
        schema = self._outbox.schema
        async with self._outbox.pool.acquire() as conn:
            async with conn.transaction():
                rows = await conn.fetch(
                    f'SELECT id, subject, payload, headers FROM "{schema}".outbox'
                    " ORDER BY id LIMIT $1 FOR UPDATE SKIP LOCKED", self._batch)
                if not rows:
                    return 0
                with contextlib.ExitStack() as spans:
                    for row in rows:  # a producer span per event, in the trace of the request that made it
                        spans.enter_context(telemetry.messaging_span(
                            "publish", template_of(row["subject"]), row["subject"], kind=telemetry.SpanKind.PRODUCER,
                            msg_id=row["id"], parent=telemetry.extract(row["headers"])))
                    # Pipelined, in id order; if any ack is missing the rows stay and are sent again
                    # (JetStream drops the copies by Nats-Msg-Id).
                    await self._outbox.bus.publish_signed_many(
                        [(row["subject"], bytes(row["payload"]), dict(row["headers"])) for row in rows])
                await conn.execute(f'DELETE FROM "{schema}".outbox WHERE id = ANY($1::text[])',
                                   [r["id"] for r in rows])
        self.published += len(rows)
        return len(rows)


async def _wait_any(stop: asyncio.Event, wake: asyncio.Event, *, timeout: float) -> None:
    waiters = [asyncio.ensure_future(stop.wait()), asyncio.ensure_future(wake.wait())]
    try:
        await asyncio.wait(waiters, timeout=timeout, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for w in waiters:
            w.cancel()
