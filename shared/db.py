"""Postgres: the connection pool, per-worker schema migrations, and driver errors mapped to ours.

Each worker owns one schema. Its migrations are `migrations/NNN_name.sql` files applied in order,
each once, each in its own transaction, under an advisory lock so replicas that start together
apply them exactly once. The shared tables every worker has (outbox, inbox) come first.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import re
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from pathlib import Path

import asyncpg

from shared.errors import Unavailable

SHARED_MIGRATIONS = Path(__file__).parent / "migrations"
_NAME = re.compile(r"(\d{3})_[a-z0-9_]+\.sql")
_SCHEMA = re.compile(r"[a-z][a-z0-9_]{0,62}")

# Errors that mean "the database is not there right now", as opposed to a bug or bad data.
CONNECTION_ERRORS: tuple[type[BaseException], ...] = (
    OSError,
    asyncio.TimeoutError,
    asyncpg.PostgresConnectionError,
    asyncpg.InterfaceError,
    asyncpg.CannotConnectNowError,
    asyncpg.TooManyConnectionsError,
    asyncpg.AdminShutdownError,
    # What a pooled connection raises when its server went away under it (a restart while it was
    # idle or busy): the protocol is left mid-operation and the connection is unusable.
    asyncpg.InternalClientError,
)


@contextmanager
def unavailable_on_disconnect() -> Iterator[None]:
    try:
        yield
    except CONNECTION_ERRORS as exc:
        raise Unavailable("database unavailable") from exc


async def _init_connection(conn: asyncpg.Connection) -> None:
    for type_ in ("json", "jsonb"):
        await conn.set_type_codec(type_, encoder=json.dumps, decoder=json.loads, schema="pg_catalog")


async def _keep_session(conn: asyncpg.Connection) -> None:
    """Nothing to reset on release: our code changes no session state (no LISTEN, no session SET,
    no cursors outside a transaction, the one session advisory lock released by its holder), and
    asyncpg still rolls back any transaction left open. The default reset costs a round trip
    after every pooled query, a seventh of a token grant's CPU."""


async def create_pool(dsn: str, *, min_size: int = 1, max_size: int = 10) -> asyncpg.Pool:
    with unavailable_on_disconnect():
        return await asyncpg.create_pool(
            dsn, min_size=min_size, max_size=max_size, init=_init_connection, reset=_keep_session,
            command_timeout=30, timeout=5,
        )


@asynccontextmanager
async def pool(dsn: str, **kwargs: int) -> AsyncIterator[asyncpg.Pool]:
    p = await create_pool(dsn, **kwargs)
    try:
        yield p
    finally:
        try:
            await asyncio.wait_for(p.close(), timeout=5)
        except (asyncio.TimeoutError, *CONNECTION_ERRORS):
            p.terminate()


def _migration_files(directory: Path, source: str) -> list[tuple[str, str, str]]:
    files = []
    for path in sorted(directory.glob("*.sql")):
        if not _NAME.fullmatch(path.name):
            raise ValueError(f"migration file name must be NNN_name.sql: {path}")
        files.append((f"{source}:{path.stem}", path.read_text(), path.name))
    return files


async def migrate(pool: asyncpg.Pool, schema: str, directory: Path | None) -> list[str]:
    """Apply the shared and the worker's pending migrations to `schema`; returns what was applied.

    Refuses to run when an applied migration's file has changed since (drift is a bug to fix,
    not something to paper over).
    """
    if not _SCHEMA.fullmatch(schema):
        raise ValueError(f"bad schema name {schema!r}")
    pending = _migration_files(SHARED_MIGRATIONS, "shared")
    if directory is not None:
        pending += _migration_files(directory, schema)
    applied: list[str] = []
    lock = int.from_bytes(hashlib.sha256(f"agentid.migrate.{schema}".encode()).digest()[:8], "big", signed=True)
    with unavailable_on_disconnect():
        async with pool.acquire() as conn:
            await conn.execute("SELECT pg_advisory_lock($1)", lock)
            try:
                await conn.execute(f'CREATE SCHEMA IF NOT EXISTS "{schema}"')
                await conn.execute(
                    f'CREATE TABLE IF NOT EXISTS "{schema}".schema_migrations ('
                    " name text PRIMARY KEY, checksum text NOT NULL,"
                    " applied_at timestamptz NOT NULL DEFAULT now())"
                )
                done = {r["name"]: r["checksum"] for r in await conn.fetch(
                    f'SELECT name, checksum FROM "{schema}".schema_migrations')}
                for name, sql, filename in pending:
                    checksum = hashlib.sha256(sql.encode()).hexdigest()
                    if name in done:
                        if done[name] != checksum:
                            raise RuntimeError(f"applied migration {filename} of {schema} has changed")
                        continue
                    async with conn.transaction():
                        await conn.execute(f'SET LOCAL search_path TO "{schema}"')
                        await conn.execute(sql)
                        await conn.execute(
                            f'INSERT INTO "{schema}".schema_migrations(name, checksum) VALUES ($1, $2)',
                            name, checksum)
                    applied.append(name)
            finally:
                await conn.execute("SELECT pg_advisory_unlock($1)", lock)
    return applied

