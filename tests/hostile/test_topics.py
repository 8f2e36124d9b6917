"""Every topic of the catalogue, attacked in JetStream itself: unsigned, forged, altered, stale,
malformed, wrongly typed, wrong-producer and cross-tenant events published straight onto the
topic's subject, past every client.

Each must be refused by every consumer: terminated by each business consumer whose filter takes it
(seen in JetStream's MSG_TERMINATED advisories, so neither acknowledged as done nor left to
redeliver), logged by the audit as `rejected` with the reason, and no consumer state may change.
Then a genuine event on the same subject, caused by its owner, must still be applied.

The audit's log is the one exception to "nothing written", by design: every message that reaches the
stream is evidence, refused or not (services/audit/intake.py).
"""

from __future__ import annotations

import json
import secrets
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import msgspec
import pytest

from contracts import headers as H
from contracts import subjects as sub
from services.audit.intake import Raw, dedup_key
from shared.b64 import b64u_encode
from shared.bus.client import stream_name
from shared.bus.signing import sign, signing_input
from shared.keys import PrivateKey
from tests.helpers import Harness, eventually, subject_matches
from tests.hostile.corpus import body_cases
from tests.hostile.sources import TRIGGERS
from tests.hostile.world import Party, World
from tests.hostile.writes import quiesce, snapshot

pytestmark = pytest.mark.integration

AUDIT_DURABLE = "audit-log"


@dataclass(frozen=True)
class Garbage:
    case: str
    subject: str
    payload: bytes
    headers: dict[str, str] | None
    reason: str  # the code the audit records


@dataclass
class Terminations:
    """(consumer, stream sequence) of every message a consumer terminated, from the advisories."""

    seen: set[tuple[str, int]]


@pytest.fixture(scope="module")
async def terminations(harness: Harness) -> AsyncIterator[Terminations]:
    found = Terminations(set())

    async def on_advisory(msg: Any) -> None:
        doc = json.loads(msg.data)
        found.seen.add((doc["consumer"], int(doc["stream_seq"])))

    advisories = await harness.nc.subscribe(
        f"$JS.EVENT.ADVISORY.CONSUMER.MSG_TERMINATED.{stream_name(harness.root)}.*", cb=on_advisory)
    await harness.nc.flush()
    yield found
    await advisories.unsubscribe()


def producer(w: World, topic: sub.Topic[Any]) -> Party:
    return w.orch if topic.owner == "orchestrator" else w.service(topic.owner)


def impostor(w: World, topic: sub.Topic[Any]) -> Party:
    """A genuine, known sender that does not produce this topic."""
    return w.agent.party if topic.owner == "orchestrator" else w.service("audit")


def _forged(legit: Party, subject: str, payload: bytes) -> dict[str, str]:
    """The producer's name and key id, another key's signature."""
    msg_id, ts = secrets.token_hex(12), int(time.time() * 1000)
    signer = legit.signer
    sig = PrivateKey.generate().sign(signing_input(subject, signer.sender, signer.key_id, msg_id, ts, payload))
    return {H.SENDER: signer.sender, H.KEY_ID: signer.key_id, H.TIMESTAMP: str(ts), H.MSG_ID: msg_id,
            H.SIGNATURE: b64u_encode(sig)}


def garbage(w: World, topic: sub.Topic[Any], tenant: str, template: bytes) -> list[Garbage]:
    subject = topic.subject(tenant, w.root)
    legit = producer(w, topic)
    signed = lambda payload, **kw: sign(legit.signer, subject, payload, **kw)  # noqa: E731
    too_old = int(time.time() * 1000) - int((w.h.settings.stream_max_age_s + 60) * 1000)
    cases = [
        Garbage("unsigned", subject, template, None, "invalid_signature"),
        Garbage("forged_signature", subject, template, _forged(legit, subject, template), "invalid_signature"),
        Garbage("body_changed_after_signing", subject, template + b" ", signed(template), "invalid_signature"),
        Garbage("older_than_the_stream_keeps", subject, template, signed(template, ts_ms=too_old), "stale"),
        Garbage("wrong_producer", subject, template, sign(impostor(w, topic).signer, subject, template), "forbidden"),
    ]
    # Malformed and wrongly typed, signed by the genuine producer: only the body is wrong.
    wanted = ("not_json", "invalid_utf8", "json_array", "over_payload_limit", "unknown_member:$")
    variants, _ = body_cases(topic.event, msgspec.json.decode(template))
    picked = [c for c in variants if c.name in wanted]
    picked += [next(c for c in variants if c.name.startswith(prefix)) for prefix in ("missing:", "wrong_type_")]
    cases += [Garbage(c.name, subject, c.payload, signed(c.payload), "invalid_request") for c in picked]
    if topic.owner == "orchestrator":  # services act in every tenant; an orchestrator in its own only
        other = topic.subject(w.other, w.root)
        cases.append(Garbage("cross_tenant", other, template, sign(legit.signer, other, template), "forbidden"))
    return cases


async def business_consumers(h: Harness) -> dict[str, list[str]]:
    """Every durable consumer other than the audit, with its filter subjects."""
    out = {}
    for info in await h.nc.jetstream().consumers_info(stream_name(h.root)):
        if info.name != AUDIT_DURABLE:
            c = info.config
            out[info.name] = c.filter_subjects or ([c.filter_subject] if c.filter_subject else [])
    return out


async def audit_verdict(h: Harness, subject: str, headers: dict[str, str] | None, payload: bytes) -> dict[str, Any] | None:
    key = dedup_key(Raw(subject, headers or {}, payload, 0))
    leaf = await h.db.fetchval("SELECT leaf FROM audit.entries WHERE dedup_key = $1", key)
    return None if leaf is None else json.loads(bytes(leaf))


async def genuine(h: Harness, w: World, topic: sub.Topic[Any]) -> tuple[str, Any]:
    """Have the owner emit one event of `topic`; its tenant and the message as stored."""
    js = h.nc.jetstream()
    counts = {t: await h.event_count(topic.subject(t, w.root)) for t in (w.tenant, w.other)}
    tenant = await TRIGGERS[topic.name](w)
    subject = topic.subject(tenant, w.root)
    before = counts.get(tenant, 0)

    async def emitted() -> bool:  # some events follow their cause through a consumer
        return await h.event_count(subject) > before

    await eventually(emitted)
    return tenant, await js.get_last_msg(stream_name(h.root), subject)


@pytest.mark.parametrize("topic", sub.TOPICS, ids=lambda t: t.name)
async def test_topic_refuses_forged_and_malformed_events(harness: Harness, world: World, terminations: Terminations,
                                                         topic: sub.Topic[Any]) -> None:
    assert topic.name in TRIGGERS, f"{topic.name} has no trigger: add one to tests/hostile/sources.py"
    h, js = harness, harness.nc.jetstream()
    tenant, first = await genuine(h, world, topic)
    tenants = sorted({tenant, world.tenant, world.other})
    await quiesce(h, tenants)
    before = await snapshot(h, tenants)

    sent: list[tuple[Garbage, int]] = []
    for g in garbage(world, topic, tenant, bytes(first.data)):
        ack = await js.publish(g.subject, g.payload, headers=g.headers)
        sent.append((g, ack.seq))
    consumers = await business_consumers(h)
    expected = {(name, seq) for g, seq in sent for name, filters in consumers.items()
                if any(subject_matches(f, g.subject) for f in filters)}

    async def judged() -> bool:
        if not expected <= terminations.seen:
            return False
        for g, _ in sent:
            if await audit_verdict(h, g.subject, g.headers, g.payload) is None:
                return False
        return True

    await eventually(judged, timeout=20.0)
    wrong = []
    for g, _ in sent:
        leaf = await audit_verdict(h, g.subject, g.headers, g.payload)
        assert leaf is not None
        if leaf["status"] != "rejected" or leaf["reasons"][0] != g.reason:
            wrong.append(f"{g.case}: audit logged {leaf['status']} {leaf.get('reasons')}, expected {g.reason}")
    assert not wrong, f"{topic.name}:\n" + "\n".join(wrong)

    # Every consumer has settled each piece of garbage (terminated, or the audit logged it), so the
    # consumers' tables are final: nothing left in flight could still change them.
    changes = before.changes(await snapshot(h, tenants))
    garbage_subjects = {g.subject for g, _ in sent}
    # The audit's log holds the refused events (by design); the stream holds what was published.
    written = sorted(k for k in changes if not k.startswith("audit.") and k not in garbage_subjects)
    assert not written, f"{topic.name}: refused events changed consumer state: {written}"

    # A genuine event after the garbage is still applied by every consumer that takes it.
    _, after = await genuine(h, world, topic)
    assert after.seq > max(seq for _, seq in sent)
    await quiesce(h, tenants)
    leaf = await audit_verdict(h, after.subject, after.headers, bytes(after.data))
    assert leaf is not None and leaf["status"] == "verified", leaf
    refused = [c for c, seq in terminations.seen if seq == after.seq]
    assert not refused, f"{topic.name}: the genuine event was terminated by {refused}"
