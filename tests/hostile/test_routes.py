"""Every route of the catalogue, attacked with its whole corpus over real NATS, answered by the real
workers: each variant gets its typed error, nothing is written, and the worker still answers a
valid request afterwards.

One test per route: its valid example is sent once (the seed the replayed variant repeats), the
writes of the set-up are let settle, a snapshot is taken, every variant is sent, a second snapshot
must equal the first (but for the decisions `ALLOWED_WRITES` names), and a fresh valid example
must still get its answer.
"""

from __future__ import annotations

import asyncio
import secrets
import time
from dataclasses import dataclass
from typing import Any

import msgspec
import pytest

from contracts import headers as H
from contracts import subjects as sub
from contracts.types import MAX_PAYLOAD_BYTES
from shared.b64 import b64u_decode, b64u_encode
from shared.bus import Signer
from shared.bus.signing import sign, signing_input
from shared.keys import PrivateKey
from tests.helpers import Harness
from tests.hostile.corpus import ENVELOPES, body_cases
from tests.hostile.examples import ALLOWED_WRITES, EXAMPLES, Example
from tests.hostile.world import World
from tests.hostile.writes import quiesce, snapshot

pytestmark = pytest.mark.integration

# Answers an attack must never get: a bug (`internal`) or a worker that stopped answering.
NEVER = {"internal", "unavailable"}
CONCURRENCY = 64


@dataclass(frozen=True)
class Sent:
    case: str
    subject: str
    payload: bytes
    headers: dict[str, str] | None
    expect: str | None  # None: any answer but NEVER (the variant reaches the handler)


def _flip(signature: str) -> str:
    raw = bytearray(b64u_decode(signature))
    raw[0] ^= 0x01
    return b64u_encode(bytes(raw))


def _impostor_with_legit_key_id(signer: Signer, subject: str, payload: bytes) -> dict[str, str]:
    """Signed by another key, claiming the legitimate sender's key id: a forgery, not a new sender."""
    other = PrivateKey.generate()
    msg_id, ts = secrets.token_hex(12), int(time.time() * 1000)
    sig = other.sign(signing_input(subject, signer.sender, signer.key_id, msg_id, ts, payload))
    return {H.SENDER: signer.sender, H.KEY_ID: signer.key_id, H.TIMESTAMP: str(ts), H.MSG_ID: msg_id,
            H.SIGNATURE: b64u_encode(sig)}


def envelope_variants(w: World, route: sub.Route[Any, Any], ex: Example, payload: bytes,
                      seed: tuple[str, bytes, dict[str, str]]) -> list[Sent]:
    """The valid body in a broken envelope, for every variant that applies to this route."""
    subject = route.subject(ex.tenant, w.root)
    signer = ex.sender.signer
    now = int(time.time() * 1000)
    out: dict[str, tuple[str, bytes, dict[str, str] | None]] = {
        "unsigned": (subject, payload, None),
        "bad_signature": (subject, payload, {**(h := sign(signer, subject, payload)), H.SIGNATURE: _flip(h[H.SIGNATURE])}),
        "body_changed_after_signing": (subject, payload + b" ", sign(signer, subject, payload)),
        "signed_for_another_subject": (subject, payload, sign(signer, subject + "_elsewhere", payload)),
        "oversized_header": (subject, payload, {**sign(signer, subject, payload), H.SENDER: "s" * 600}),
        "non_numeric_timestamp": (subject, payload, {**sign(signer, subject, payload), H.TIMESTAMP: "17e11"}),
        "stale_timestamp": (subject, payload, sign(signer, subject, payload, ts_ms=now - 120_000)),
        "future_timestamp": (subject, payload, sign(signer, subject, payload, ts_ms=now + 120_000)),
        "replayed_message_id": seed,
        "resigned_with_own_key_id": (subject, payload, sign(Signer(signer.sender, PrivateKey.generate()), subject, payload)),
        "resigned_under_legit_key_id": (subject, payload, _impostor_with_legit_key_id(signer, subject, payload)),
        "unknown_sender": (subject, payload, sign(Signer(f"{signer.sender.rsplit('/', 1)[0]}/hostile{secrets.token_hex(4)}",
                                                         PrivateKey.generate()), subject, payload)),
        "oversized_unsigned_body": (subject, b" " * (MAX_PAYLOAD_BYTES + 1), None),
    }
    if ex.sender.tenant is not None:  # services and operators are deployment-wide: no other tenant
        other = route.subject(w.other, w.root)
        out["cross_tenant"] = (other, payload, sign(signer, other, payload))
    refused_kinds = [k for k in ("agent", "orchestrator", "service", "operator") if k not in route.senders]
    if refused_kinds:
        intruder = w.party_of_kind(refused_kinds[0]).signer
        out["wrong_sender_kind"] = (subject, payload, sign(intruder, subject, payload))
    return [Sent(name, s, p, h, ENVELOPES[name]) for name, (s, p, h) in out.items()]


def body_variants(w: World, route: sub.Route[Any, Any], ex: Example) -> tuple[list[Sent], int]:
    subject = route.subject(ex.tenant, w.root)
    cases, dropped = body_cases(route.request, msgspec.to_builtins(ex.body))
    return [Sent(c.name, subject, c.payload, sign(ex.sender.signer, subject, c.payload), c.expect)
            for c in cases], dropped


async def answer(h: Harness, sent: Sent) -> str | None:
    code, _ = await h.raw_request(sent.subject, sent.payload, sent.headers, timeout=10.0)
    return code


async def send_valid(w: World, route: sub.Route[Any, Any], ex: Example) -> tuple[str, bytes, dict[str, str]]:
    subject = route.subject(ex.tenant, w.root)
    payload = msgspec.json.encode(ex.body)
    headers = sign(ex.sender.signer, subject, payload)
    code, body = await w.h.raw_request(subject, payload, headers, timeout=10.0)
    assert code == ex.expect, f"the valid example of {route.name} got {code}: {body}"
    return subject, payload, headers


def mismatch(sent: Sent, code: str | None) -> bool:
    return code in NEVER if sent.expect is None else code != sent.expect


@pytest.mark.parametrize("route", sub.ROUTES, ids=lambda r: r.name)
async def test_route_refuses_its_corpus(harness: Harness, world: World, route: sub.Route[Any, Any]) -> None:
    builder = EXAMPLES.get(route.name)
    assert builder is not None, f"{route.name} has no valid example: add one to tests/hostile/examples.py"
    seed_example, template, final = [await builder(world) for _ in range(3)]
    seed = await send_valid(world, route, seed_example)
    tenants = sorted({world.tenant, world.other, seed_example.tenant, template.tenant})
    payload = msgspec.json.encode(template.body)
    bodies, _ = body_variants(world, route, template)
    envelopes = envelope_variants(world, route, template, payload, seed)
    decoded = [s for s in bodies if s.expect is not None]
    opaque = [s for s in bodies if s.expect is None]

    await quiesce(harness, tenants)
    before = await snapshot(harness, tenants)
    answers: list[tuple[Sent, str | None]] = []
    gate = asyncio.Semaphore(CONCURRENCY)

    async def one(sent: Sent) -> None:
        async with gate:
            answers.append((sent, await answer(harness, sent)))

    await asyncio.gather(*(one(s) for s in envelopes + decoded))
    for sent in opaque:  # these reach the handler: one at a time, as a client would
        answers.append((sent, await answer(harness, sent)))
    allowed = ALLOWED_WRITES.get(route.name)
    if allowed is not None:  # decisions were recorded: let their consumers finish before comparing
        await quiesce(harness, tenants)
    after = await snapshot(harness, tenants)

    wrong = sorted(f"{s.case}: expected {s.expect or 'a typed answer'}, got {code}"
                   for s, code in answers if mismatch(s, code))
    assert not wrong, f"{route.name}: {len(wrong)} of {len(answers)} variants answered wrongly:\n" + "\n".join(wrong)
    changes = before.changes(after)
    if allowed is not None:
        changes = {k: v for k, v in changes.items() if not allowed.covers(k)}
    assert not changes, f"{route.name}: refused input was written: {sorted(changes)}"
    await send_valid(world, route, final)  # the worker still answers


async def test_the_snapshot_sees_what_a_valid_request_writes(harness: Harness, world: World) -> None:
    """The check above is only as good as its eyes: a request that writes must show up."""
    ex = await EXAMPLES[sub.ADD_ORCHESTRATOR.name](world)
    tenants = [world.tenant]
    await quiesce(harness, tenants)
    before = await snapshot(harness, tenants)
    await send_valid(world, sub.ADD_ORCHESTRATOR, ex)
    changes = before.changes(await snapshot(harness, tenants))
    assert "registration.orchestrators" in changes
    assert "registration.outbox" in changes or any(k.endswith(".evt.orchestrator.added") for k in changes)
