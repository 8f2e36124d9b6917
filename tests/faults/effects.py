"""What the system kept: every accepted request's effects, every event's audit entry, counted.

Effects are read where they live: each worker's own tables and the JetStream stream. For every
accepted request the suite expects exactly one of each effect; none is a loss, more than one a
duplicate. For every event on the stream it expects exactly one audit entry (by message id).
"""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import dataclass
from typing import Any

import asyncpg
import msgspec
from nats.aio.client import Client as NATS
from nats.js.api import DeliverPolicy

from contracts import delegation as dlg
from contracts import headers as H
from contracts import issuance as iss
from contracts import registration as reg
from contracts import subjects as sub
from contracts import tokens as tok
from shared.bus.client import stream_name
from tests.faults.load import Tally


@dataclass(frozen=True)
class Event:
    topic: str    # "agent.registered"
    msg_id: str
    body: Any     # decoded, for the topics the checks read; None otherwise


_BODIES: dict[str, type] = {
    sub.AGENT_REGISTERED.name: reg.AgentRegistered, sub.CREDENTIAL_ISSUED.name: iss.CredentialIssued,
    sub.TOKEN_ISSUED.name: tok.TokenIssued, sub.DELEGATION_GRANTED.name: dlg.DelegationGranted,
}


async def tenant_events(nc: NATS, prefix: str, tenant: str) -> list[Event]:
    """Every event of `tenant` the stream holds, in stream order."""
    js = nc.jetstream()
    subject = f"{prefix}.v1.{tenant}.evt.>"
    info = await js.stream_info(stream_name(prefix), subjects_filter=subject)
    total = sum((info.state.subjects or {}).values())
    reader = await js.subscribe(subject, ordered_consumer=True, deliver_policy=DeliverPolicy.ALL)
    events = []
    try:
        for _ in range(total):
            msg = await reader.next_msg(timeout=10)
            topic = sub.topic_for(msg.subject)
            name = topic.name if topic else msg.subject
            body_type = _BODIES.get(name)
            body = msgspec.json.decode(msg.data, type=body_type) if body_type else None
            events.append(Event(name, (msg.headers or {})[H.MSG_ID], body))
    finally:
        await reader.unsubscribe()
    return events


@dataclass
class Check:
    """One kind of effect, expected once per accepted request."""

    name: str
    expected: int = 0
    once: int = 0
    lost: int = 0
    duplicated: int = 0

    def count(self, found: int) -> None:
        self.expected += 1
        if found == 0:
            self.lost += 1
        elif found == 1:
            self.once += 1
        else:
            self.duplicated += 1


async def effects(db: asyncpg.Pool, events: list[Event], tally: Tally, tenant: str) -> dict[str, Any]:
    checks = {name: Check(name) for name in (
        "agents row", "agent.registered event", "credential", "credential.issued event", "delegation root",
        "token record", "token.issued event", "delegation link", "delegation.granted event",
        "audit entry")}
    mismatched: list[str] = []

    by_topic: dict[str, list[Event]] = {}
    for e in events:
        by_topic.setdefault(e.topic, []).append(e)
    registered = Counter(e.body.spawn_id for e in by_topic.get(sub.AGENT_REGISTERED.name, []))
    credentialed = Counter(e.body.agent_id for e in by_topic.get(sub.CREDENTIAL_ISSUED.name, []))
    tokens_issued = Counter(e.body.jti for e in by_topic.get(sub.TOKEN_ISSUED.name, []))
    granted = Counter(e.body.cid for e in by_topic.get(sub.DELEGATION_GRANTED.name, []))

    # Spawns: one agent (the one the answer named), its registration event, one credential.
    rows = await db.fetch("SELECT spawn_id, array_agg(id) AS ids FROM registration.agents WHERE tenant = $1"
                          " GROUP BY spawn_id", tenant)
    agents = {r["spawn_id"]: list(r["ids"]) for r in rows}
    credentials = Counter({r["agent_id"]: r["n"] for r in await db.fetch(
        "SELECT agent_id, count(*) AS n FROM issuance.credentials WHERE tenant = $1 GROUP BY agent_id", tenant)})
    roots = Counter({r["audience_agent_id"]: r["n"] for r in await db.fetch(
        "SELECT audience_agent_id, count(*) AS n FROM delegation.links WHERE tenant = $1 AND depth = 1"
        " GROUP BY audience_agent_id", tenant)})
    for spawn_id, agent_id in tally.spawns.items():
        ids = agents.get(spawn_id, [])
        checks["agents row"].count(len(ids))
        if ids and agent_id not in ids:
            mismatched.append(f"spawn {spawn_id} answered {agent_id}, stored {ids}")
        checks["agent.registered event"].count(registered[spawn_id])
        checks["credential"].count(credentials[agent_id])
        checks["credential.issued event"].count(credentialed[agent_id])
        checks["delegation root"].count(roots[agent_id])  # every agent the load spawns is given one

    # Tokens: the record of the token handed back, and its event.
    token_rows = {r["jti"]: r["agent_id"] for r in await db.fetch(
        "SELECT jti, agent_id FROM token.tokens WHERE tenant = $1", tenant)}
    for jti, agent_id in tally.tokens.items():
        checks["token record"].count(1 if jti in token_rows else 0)
        if jti in token_rows and token_rows[jti] != agent_id:
            mismatched.append(f"token {jti} answered to {agent_id}, recorded for {token_rows[jti]}")
        checks["token.issued event"].count(tokens_issued[jti])

    # Delegations: the link granted (by its CID, the primary key) and its event.
    links = {r["cid"]: (r["issuer_agent_id"], r["audience_agent_id"]) for r in await db.fetch(
        "SELECT cid, issuer_agent_id, audience_agent_id FROM delegation.links WHERE tenant = $1", tenant)}
    for cid, parties in tally.delegations.items():
        checks["delegation link"].count(1 if cid in links else 0)
        if cid in links and links[cid] != parties:
            mismatched.append(f"link {cid} granted {parties}, recorded {links[cid]}")
        checks["delegation.granted event"].count(granted[cid])

    # The audit: each event on the stream is one entry of the tenant's log, verified.
    entries = [json.loads(bytes(r["leaf"])) for r in await db.fetch(
        "SELECT leaf FROM audit.entries WHERE log = $1 ORDER BY seq", tenant)]
    logged = Counter(e["msg_id"] for e in entries)
    on_stream = Counter(e.msg_id for e in events)
    for msg_id, copies in on_stream.items():
        checks["audit entry"].count(logged[msg_id])
        if copies > 1:
            checks["audit entry"].duplicated += 1  # the stream itself holds the event twice
    not_on_stream = [m for m in logged if m not in on_stream]
    unverified = [e["msg_id"] for e in entries if e["status"] != "verified"]

    return {
        "lost": sum(c.lost for c in checks.values()),
        "duplicated": sum(c.duplicated for c in checks.values()),
        "checks": {c.name: {"expected": c.expected, "once": c.once, "lost": c.lost, "duplicated": c.duplicated}
                   for c in checks.values()},
        "events_on_stream": len(events),
        "events_by_topic": {t: len(v) for t, v in sorted(by_topic.items())},
        "audit_entries": len(entries),
        "audit_entries_not_on_stream": len(not_on_stream),
        "audit_entries_unverified": len(unverified),
        # Tokens minted for requests whose answer was lost in an outage: the client saw
        # `unavailable` and asked again; the record exists but no one holds the token.
        "tokens_unacknowledged": len(set(token_rows) - set(tally.tokens)),
        "mismatched_answers": mismatched,
    }
