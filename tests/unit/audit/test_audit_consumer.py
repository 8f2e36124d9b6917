"""The audit consumer acknowledges only what is logged, and one bad message stalls nothing else."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from types import SimpleNamespace
from typing import Any

from services.audit.consumer import UNKNOWN_SENDER_RETRY_S, Consumer
from services.audit.describe import Facts
from services.audit.intake import Raw
from services.audit.leaf import Observed


@dataclass
class FakeMsg:
    key: bytes
    subject: str = "agentid.v1.acme.evt.tenant.created"
    headers: dict[str, str] = field(default_factory=dict)
    data: bytes = b"{}"
    settled: list[tuple[str, float | None]] = field(default_factory=list)

    @property
    def metadata(self) -> Any:
        return SimpleNamespace(timestamp=datetime(2026, 1, 1, tzinfo=UTC), num_delivered=1)

    async def ack(self) -> None:
        self.settled.append(("ack", None))

    async def nak(self, delay: float | None = None) -> None:
        self.settled.append(("nak", delay))


def _observed(key: bytes) -> Observed:
    return Observed(subject="s", tenant="acme", event="tenant.created", msg_id=key.hex(), time_ms=0, actor={},
                    verified=True, reasons=(), trace_id=None, event_digest="sha256:00", dedup_key=key,
                    facts=Facts(subject={}))


class FakeIntake:
    def __init__(self, unknown: set[bytes] = frozenset(), broken: set[bytes] = frozenset()) -> None:
        self.unknown, self.broken = unknown, broken

    async def observe(self, raw: Raw) -> Observed | None:
        key = bytes.fromhex(raw.headers["key"])
        if key in self.broken:
            raise OSError("directory down")
        return None if key in self.unknown else _observed(key)


class FakeLog:
    def __init__(self, poison: set[bytes] = frozenset(), outage: bool = False) -> None:
        self.poison, self.outage = poison, outage
        self.logged: list[bytes] = []

    async def route(self, observed: Sequence[Observed]) -> dict[str, list[Observed]]:
        return {"acme": list(observed)}

    async def append(self, log: str, observed: Sequence[Observed]) -> dict[bytes, int]:
        if self.outage:
            raise ConnectionRefusedError("postgres away")
        if any(ob.dedup_key in self.poison for ob in observed):
            raise RuntimeError("this one cannot be logged")
        for ob in observed:
            if ob.dedup_key not in self.logged:
                self.logged.append(ob.dedup_key)
        return {ob.dedup_key: self.logged.index(ob.dedup_key) for ob in observed}


def _msgs(n: int) -> list[FakeMsg]:
    msgs = [FakeMsg(bytes([i]) * 32) for i in range(n)]
    for m in msgs:
        m.headers["key"] = m.key.hex()
    return msgs


def _consumer(intake: FakeIntake, log: FakeLog) -> Consumer:
    return Consumer(SimpleNamespace(root="agentid"), intake, log)  # type: ignore[arg-type]


async def test_a_logged_batch_is_acknowledged_and_a_redelivered_one_again_without_a_second_entry() -> None:
    log = FakeLog()
    msgs = _msgs(3)
    await _consumer(FakeIntake(), log).process(msgs)  # type: ignore[arg-type]
    again = _msgs(3)
    await _consumer(FakeIntake(), log).process(again)  # type: ignore[arg-type]
    assert len(log.logged) == 3
    assert all(m.settled == [("ack", None)] for m in msgs + again)


async def test_one_message_the_log_cannot_take_stalls_nothing_else() -> None:
    msgs = _msgs(4)
    log = FakeLog(poison={msgs[2].key})
    await _consumer(FakeIntake(), log).process(msgs)  # type: ignore[arg-type]
    assert log.logged == [msgs[0].key, msgs[1].key, msgs[3].key]
    assert [m.settled[0][0] for m in msgs] == ["ack", "ack", "nak", "ack"]


async def test_an_outage_redelivers_everything_and_acknowledges_nothing() -> None:
    msgs = _msgs(3)
    await _consumer(FakeIntake(), FakeLog(outage=True)).process(msgs)  # type: ignore[arg-type]
    assert all(m.settled == [("nak", 1.0)] for m in msgs)


async def test_unjudged_messages_come_back_later_and_the_rest_go_in() -> None:
    msgs = _msgs(3)
    log = FakeLog()
    await _consumer(FakeIntake(unknown={msgs[0].key}, broken={msgs[1].key}), log).process(msgs)  # type: ignore[arg-type]
    assert msgs[0].settled == [("nak", UNKNOWN_SENDER_RETRY_S)] and msgs[1].settled == [("nak", 1.0)]
    assert msgs[2].settled == [("ack", None)] and log.logged == [msgs[2].key]
