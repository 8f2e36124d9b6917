"""Look for secrets where they must never be: every table of every worker schema, every event on
the stream, every span and every log record. Returns where each needle was found."""

from __future__ import annotations

import logging
from collections.abc import Iterable

from nats.js.api import DeliverPolicy
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from shared.bus.client import stream_name
from tests.helpers import Harness

SCHEMAS = ("registration", "issuance", "token", "delegation", "attestation", "audit")


async def in_database(harness: Harness, needles: Iterable[str]) -> list[str]:
    found = []
    tables = await harness.db.fetch(
        "SELECT table_schema, table_name FROM information_schema.tables"
        " WHERE table_schema = ANY($1::text[]) AND table_type = 'BASE TABLE'", list(SCHEMAS))
    for t in tables:
        rows = await harness.db.fetch(f'SELECT t::text AS row FROM "{t["table_schema"]}"."{t["table_name"]}" t')
        for row in rows:
            # bytea columns appear as hex in the row text: look for hex-encoded needles too
            for needle in needles:
                if needle in row["row"] or needle.encode().hex() in row["row"]:
                    found.append(f"db {t['table_schema']}.{t['table_name']}")
    return found


async def in_events(harness: Harness, needles: Iterable[str], tenant: str) -> list[str]:
    """Every event of `tenant` on the stream (a filter within the stream's own subjects, as every
    JetStream server version accepts)."""
    subject = f"{harness.root}.v1.{tenant}.evt.>"
    js = harness.nc.jetstream()
    info = await js.stream_info(stream_name(harness.root), subjects_filter=subject)
    total = sum((info.state.subjects or {}).values())
    found = []
    if not total:
        return found
    sub_ = await js.subscribe(subject, ordered_consumer=True, deliver_policy=DeliverPolicy.ALL)
    try:
        for _ in range(total):
            msg = await sub_.next_msg(timeout=10)
            text = msg.data.decode("utf-8", "replace") + repr(msg.headers)
            found += [f"event {msg.subject}" for n in needles if n in text]
    finally:
        await sub_.unsubscribe()
    return found


def in_spans(spans: InMemorySpanExporter, needles: Iterable[str]) -> list[str]:
    found = []
    for span in spans.get_finished_spans():
        text = repr(span.name) + repr(dict(span.attributes or {})) + repr([e.attributes for e in span.events])
        found += [f"span {span.name}" for n in needles if n in text]
    return found


def in_logs(records: Iterable[logging.LogRecord], needles: Iterable[str]) -> list[str]:
    found = []
    for record in records:
        text = record.getMessage() + repr(record.args) + (repr(record.exc_info[1]) if record.exc_info else "")
        found += [f"log {record.name}" for n in needles if n in text]
    return found
