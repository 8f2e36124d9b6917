"""Shared fixtures: real NATS and Postgres, a per-session database and subject prefix, the workers.

With `AGENTID_TEST_NATS_URL` / `AGENTID_TEST_DATABASE_URL` set, the tests use those servers;
otherwise they start embedded ones (never on the standard ports). Each session gets its own
database and its own subject prefix (so its own JetStream stream), and each test its own tenant,
so runs and tests never see each other's data.
"""

from __future__ import annotations

import asyncio
import os
import secrets
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from opentelemetry import trace
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from shared.config import Settings
from shared.embedded import EmbeddedNats, EmbeddedPostgres
from shared.keyring import Keyring
from tests.helpers import Harness, scratch_database

# One in-memory exporter for the whole session: tests read the spans the workers produce.
SPANS = InMemorySpanExporter()
_provider = TracerProvider()
_provider.add_span_processor(SimpleSpanProcessor(SPANS))
trace.set_tracer_provider(_provider)


@pytest.fixture(scope="session")
def spans() -> InMemorySpanExporter:
    return SPANS


@pytest.fixture(scope="session")
async def servers(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[tuple[str, str]]:
    """(nats_url, postgres admin url): from the environment, or embedded for this session."""
    nats_url = os.environ.get("AGENTID_TEST_NATS_URL")
    pg_url = os.environ.get("AGENTID_TEST_DATABASE_URL")
    started: list[EmbeddedNats | EmbeddedPostgres] = []
    base = tmp_path_factory.mktemp("servers")
    if not nats_url:
        nats = EmbeddedNats(base / "nats")
        started.append(nats)
        nats_url = nats.url
    if not pg_url:
        pg = EmbeddedPostgres(base / "pg", durable=False)
        started.append(pg)
        pg_url = pg.admin_url
    await asyncio.gather(*(s.start() for s in started))
    yield nats_url, pg_url
    await asyncio.gather(*(s.stop() for s in started))


@pytest.fixture(scope="session")
async def database_url(servers: tuple[str, str]) -> AsyncIterator[str]:
    """A fresh database for this session on the test server, dropped afterwards."""
    async with scratch_database(servers[1], "agentid_test_") as url:
        yield url


@pytest.fixture(scope="session")
def settings(servers: tuple[str, str], database_url: str, tmp_path_factory: pytest.TempPathFactory) -> Settings:
    data_dir: Path = tmp_path_factory.mktemp("agentid")
    return Settings(
        nats_url=servers[0], database_url=database_url, data_dir=data_dir,
        nats_prefix=f"agentid_t{secrets.token_hex(4)}", outbox_poll_s=0.2, ack_wait_s=2.0,
        shutdown_grace_s=5.0, stream_max_age_s=3600, expiry_sweep_s=0.2,
        idp_insecure_hosts=["127.0.0.1"], idp_refetch_interval_s=0,
    )


@pytest.fixture(scope="session")
def keyring(settings: Settings) -> Keyring:
    ring = Keyring.generate()
    ring.save(settings.keyring_path)
    return ring


@pytest.fixture(scope="session")
async def harness(settings: Settings, keyring: Keyring) -> AsyncIterator[Harness]:
    """Every worker running in this process against the session's servers."""
    async with Harness(settings, keyring) as h:
        yield h


@pytest.fixture
async def tenant(harness: Harness) -> str:
    return await harness.new_tenant()
