"""The audit's consumer: one durable JetStream consumer over the whole event stream.

It binds to `<root>.v1.*.evt.>`, the stream's own subjects, so every topic of the catalogue (and
anything else that reaches the stream) is audited without a list to keep current. Messages are
fetched in batches; each batch is judged message by message (services/audit/intake.py), grouped by
log, and each group appended in one transaction. A message is acknowledged only after the
transaction holding its entry committed, or after it is found already logged; the consumer has no
delivery limit, so a message the audit cannot log yet (a dependency down, a bug) is redelivered
until it can be, never dropped.

Each message is processed in a span that continues the event's trace and carries
`agentid.audit.log` and `agentid.audit.sequence`.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Sequence
from typing import TYPE_CHECKING, Any

from nats.aio.msg import Msg
from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy
from opentelemetry.trace import Span, SpanKind

from contracts.subjects import events_subject, template_of
from services.audit.intake import Intake, Raw
from services.audit.leaf import Observed
from services.audit.log import AuditLog
from shared import failpoints, telemetry
from shared.bus.client import stream_name
from shared.db import CONNECTION_ERRORS
from shared.errors import Unavailable

if TYPE_CHECKING:
    from shared.bus import Bus

log = logging.getLogger(__name__)

DURABLE = "audit-log"
# A message from an unknown sender is judged this many times, this far apart, before it is logged as
# rejected: the sender directory asks registration each time (it remembers a miss for 2 s).
UNKNOWN_SENDER_ATTEMPTS = 3
UNKNOWN_SENDER_RETRY_S = 1.5


class Consumer:
    def __init__(self, bus: Bus, intake: Intake, audit_log: AuditLog, *, batch: int = 256,
                 ack_wait_s: float = 30.0) -> None:
        self.bus = bus
        self.intake = intake
        self.audit_log = audit_log
        self.batch = batch
        self.ack_wait_s = ack_wait_s

    def config(self) -> ConsumerConfig:
        return ConsumerConfig(
            durable_name=DURABLE, ack_policy=AckPolicy.EXPLICIT, deliver_policy=DeliverPolicy.ALL,
            ack_wait=self.ack_wait_s, max_deliver=-1, max_ack_pending=4 * self.batch,
            filter_subject=events_subject(self.bus.root),
        )

    async def run(self, stop: asyncio.Event) -> None:
        stream = stream_name(self.bus.root)
        await self.bus.js.add_consumer(stream, self.config())
        psub = await self.bus.js.pull_subscribe_bind(durable=DURABLE, stream=stream)
        delay = 0.1
        try:
            while not stop.is_set():
                try:
                    msgs = await psub.fetch(self.batch, timeout=1.0)
                except TimeoutError:
                    continue
                except Exception as exc:  # NATS away: it reconnects by itself
                    log.warning("audit: fetch failed (%s)", type(exc).__name__)
                    await _pause(stop, delay)
                    delay = min(delay * 2, 5.0)
                    continue
                delay = 0.1
                await self.process(msgs)
        finally:
            try:
                await psub.unsubscribe()
            except Exception:
                pass

    async def process(self, msgs: Sequence[Msg]) -> None:
        spans: dict[int, Span] = {id(m): self._span(m) for m in msgs}
        try:
            judged: list[tuple[Msg, Observed]] = []
            for msg in msgs:
                ob = await self._observe(msg)
                if ob is not None:
                    judged.append((msg, ob))
            if judged:
                await self._append(judged, spans)
        finally:
            for span in spans.values():
                span.end()

    async def _observe(self, msg: Msg) -> Observed | None:
        meta = msg.metadata
        raw = Raw(msg.subject, msg.headers or {}, msg.data, int(meta.timestamp.timestamp() * 1000),
                  meta.num_delivered)
        try:
            ob = await self.intake.observe(raw)
        except Exception as exc:  # a dependency is down (or a bug): deliver it again later
            log.warning("audit: cannot judge %s yet: %s", msg.subject, type(exc).__name__)
            await _settle(msg.nak(delay=1.0))
            return None
        if ob is None:  # a sender not known yet: its registration may be on its way
            await _settle(msg.nak(delay=UNKNOWN_SENDER_RETRY_S))
        return ob

    async def _append(self, judged: list[tuple[Msg, Observed]], spans: dict[int, Span]) -> None:
        try:
            groups = await self.audit_log.route([ob for _, ob in judged])
        except Exception as exc:
            log.warning("audit: cannot route a batch: %s", type(exc).__name__)
            await asyncio.gather(*(_settle(m.nak(delay=1.0)) for m, _ in judged))
            return
        msgs_of: dict[bytes, list[Msg]] = {}
        for msg, ob in judged:
            msgs_of.setdefault(ob.dedup_key, []).append(msg)
        for name, observed in groups.items():
            pairs = [(m, ob) for ob in observed for m in msgs_of.pop(ob.dedup_key, [])]
            try:
                await self._commit(name, observed, pairs, spans)
            except CONNECTION_ERRORS + (Unavailable,) as exc:
                log.warning("audit: log %s unavailable (%s); redelivering %d messages", name,
                            type(exc).__name__, len(pairs))
                await asyncio.gather(*(_settle(m.nak(delay=1.0)) for m, _ in pairs))
            except Exception:
                # Not an outage: maybe one message the log cannot take. Alone, each of the others goes in.
                log.exception("audit: append to log %s failed; appending its %d messages one by one", name, len(pairs))
                for msg, ob in pairs:
                    try:
                        await self._commit(name, [ob], [(msg, ob)], spans)
                    except Exception:
                        log.exception("audit: message %s on %s cannot be logged yet", ob.msg_id, msg.subject)
                        await _settle(msg.nak(delay=5.0))

    async def _commit(self, name: str, observed: Sequence[Observed], pairs: Sequence[tuple[Msg, Observed]],
                      spans: dict[int, Span]) -> None:
        seqs = await self.audit_log.append(name, observed)
        failpoints.hit("after_commit")  # committed, not acknowledged: redelivery must not duplicate
        for msg, ob in pairs:
            spans[id(msg)].set_attributes({"agentid.audit.log": name, "agentid.audit.sequence": seqs[ob.dedup_key]})
        failpoints.hit("before_ack")
        await asyncio.gather(*(_settle(m.ack()) for m, _ in pairs))

    def _span(self, msg: Msg) -> Span:
        template = template_of(msg.subject)
        return telemetry.tracer.start_span(
            f"process {template}", context=telemetry.extract(msg.headers), kind=SpanKind.CONSUMER,
            attributes={"messaging.system": "nats", "messaging.operation.name": "process",
                        "messaging.operation.type": "process", "messaging.destination.name": msg.subject,
                        "messaging.destination.template": template,
                        "messaging.consumer.group.name": DURABLE},
        )


async def _pause(stop: asyncio.Event, seconds: float) -> None:
    try:
        await asyncio.wait_for(stop.wait(), timeout=seconds)
    except TimeoutError:
        pass


async def _settle(call: Awaitable[Any]) -> None:
    try:
        await call
    except Exception as exc:  # the server redelivers what we could not settle
        log.warning("audit: could not settle a message: %s", type(exc).__name__)
