"""Group commit for the hot path: token records and their events, many requests per transaction.

A handler hands its rows to the recorder and waits; the recorder writes whatever has queued up in
one transaction (the token index rows with executemany, the signed events into the outbox) and
then releases every waiter. No token is returned before its record and its event are durable, yet
a busy worker commits once per batch rather than once per token. When idle, a single request is
committed at once (no timer), so latency at one request in flight is one small transaction.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import asyncpg

from shared.db import CONNECTION_ERRORS
from shared.errors import Unavailable
from shared.outbox import Outbox, insert_rows

log = logging.getLogger(__name__)

TOKEN_COLUMNS = ("jti", "tenant", "agent_id", "sub", "aud", "iat", "exp", "cnf", "details", "act", "delegation",
                 "user_sub")
_INSERT_TOKEN = (f"INSERT INTO token.tokens({', '.join(TOKEN_COLUMNS)})"
                 f" VALUES ({', '.join(f'${i}' for i in range(1, len(TOKEN_COLUMNS) + 1))})")

Row = tuple[Any, ...]
OutboxRow = tuple[str, str, bytes, dict[str, str]]


class Recorder:
    def __init__(self, outbox: Outbox, *, max_batch: int = 512) -> None:
        self._outbox = outbox
        self._max = max_batch
        self._queue: list[tuple[Row | None, OutboxRow, asyncio.Future[None]]] = []
        self._wake = asyncio.Event()
        self.batches = 0

    async def record(self, token: Row | None, event: OutboxRow) -> None:
        """Queue a token row (or none, for a denial) and its event; return once both are committed."""
        done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._queue.append((token, event, done))
        self._wake.set()
        await done

    async def run(self, stop: asyncio.Event) -> None:
        while not (stop.is_set() and not self._queue):
            if not self._queue:
                self._wake.clear()
                waiters = [asyncio.ensure_future(self._wake.wait()), asyncio.ensure_future(stop.wait())]
                await asyncio.wait(waiters, return_when=asyncio.FIRST_COMPLETED)
                for w in waiters:
                    w.cancel()
                continue
            batch, self._queue = self._queue[: self._max], self._queue[self._max:]
            try:
                await self._commit(batch)
            except (*CONNECTION_ERRORS, asyncpg.PostgresError) as exc:
                log.warning("token records not committed: %s", type(exc).__name__)
                for _, _, done in batch:
                    if not done.done():
                        done.set_exception(Unavailable("token records could not be stored"))
                continue
            for _, _, done in batch:
                if not done.done():
                    done.set_result(None)

    async def _commit(self, batch: list[tuple[Row | None, OutboxRow, asyncio.Future[None]]]) -> None:
        tokens = [t for t, _, _ in batch if t is not None]
        async with self._outbox.pool.acquire() as conn:
            async with conn.transaction():
                if tokens:
                    await conn.executemany(_INSERT_TOKEN, tokens)
                await insert_rows(conn, self._outbox.schema, [e for _, e, _ in batch])
        self.batches += 1
        self._outbox.wake()
