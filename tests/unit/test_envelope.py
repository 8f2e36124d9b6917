"""The message envelope: what the signature covers, and each refusal."""

from __future__ import annotations

import time

import pytest

from contracts import headers as H
from shared.bus import SenderKey, Signer, StaticRegistry
from shared.bus.replay import MemoryReplayGuard
from shared.bus.signing import authenticate, sign
from shared.errors import InvalidSignature, StaleMessage, Unavailable, UnknownSender
from shared.keys import PrivateKey

KEY = PrivateKey.generate()
SIGNER = Signer("spiffe://t.example/orchestrator/o1", KEY)
REGISTRY = StaticRegistry([SenderKey(sender=SIGNER.sender, kind="orchestrator", key=KEY.public,
                                     subject_id="o1", tenant="t")])


async def test_round_trip() -> None:
    headers = sign(SIGNER, "a.b", b"{}")
    verified = await authenticate("a.b", headers, b"{}", REGISTRY)
    assert verified.sender.subject_id == "o1" and verified.msg_id == headers[H.MSG_ID]


@pytest.mark.parametrize("field", [H.SENDER, H.KEY_ID, H.TIMESTAMP, H.MSG_ID, H.SIGNATURE])
async def test_each_covered_field(field: str) -> None:
    headers = sign(SIGNER, "a.b", b"{}")
    changed = dict(headers)
    changed[field] = {H.TIMESTAMP: str(int(headers[H.TIMESTAMP]) + 1)}.get(field, headers[field] + "x")
    with pytest.raises((InvalidSignature, UnknownSender)):
        await authenticate("a.b", changed, b"{}", REGISTRY)
    del changed[field]
    with pytest.raises(InvalidSignature):
        await authenticate("a.b", changed, b"{}", REGISTRY)


async def test_subject_and_payload_are_covered() -> None:
    headers = sign(SIGNER, "a.b", b"{}")
    with pytest.raises(InvalidSignature):
        await authenticate("a.c", headers, b"{}", REGISTRY)
    with pytest.raises(InvalidSignature):
        await authenticate("a.b", headers, b"{ }", REGISTRY)


async def test_window() -> None:
    now = int(time.time() * 1000)
    old = sign(SIGNER, "s", b"", ts_ms=now - 31_000)
    with pytest.raises(StaleMessage):
        await authenticate("s", old, b"", REGISTRY, now_ms=now)
    # Events from JetStream may be older, but never from the future.
    await authenticate("s", old, b"", REGISTRY, now_ms=now, max_age_ms=3_600_000)
    future = sign(SIGNER, "s", b"", ts_ms=now + 31_000)
    with pytest.raises(StaleMessage):
        await authenticate("s", future, b"", REGISTRY, now_ms=now, max_age_ms=3_600_000)


async def test_memory_replay_guard_fails_closed_when_full() -> None:
    guard = MemoryReplayGuard(window_s=60, max_entries=2)
    assert await guard.first_seen("a", "1")
    assert not await guard.first_seen("a", "1")
    assert await guard.first_seen("b", "1")  # ids are per sender
    with pytest.raises(Unavailable):
        await guard.first_seen("a", "2")
