"""The worker runtime: what every service does the same way, written once.

A service subclasses `Worker`, names its schema and migrations, and declares
- `routes()`: request subjects -> handlers `async (request, ctx) -> reply`;
- `subscriptions()`: durable JetStream consumers -> handlers `async (event, ctx) -> None`.

For each request the runtime checks, in order: a known sender, its signature, the timestamp
window, that its kind may call the route and act in the subject's tenant, that the message id is
new; then decodes the body strictly and calls the handler; then replies, signed. Events get the
same checks (a wider age window, since JetStream may deliver late) and are acked only after the
handler's commit. A bad message gets a typed error (requests) or is terminated (events); it never
stops the worker. On stop the worker stops taking new work, gives in-flight work `grace` seconds,
flushes its outbox and drains its connection.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

import asyncpg
from nats.aio.msg import Msg
from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy
from opentelemetry.trace import SpanKind

from contracts.subjects import Route, Topic, tenant_of, topic_for
from contracts.types import MAX_PAYLOAD_BYTES
from shared import failpoints, telemetry
from shared.bus.client import Bus, decode, stream_name
from shared.bus.inbox import service_inbox
from shared.bus.registry import CompositeRegistry, SenderKey, SenderRegistry
from shared.bus.replay import KvReplayGuard, MemoryReplayGuard, ReplayGuard
from shared.bus.signing import authenticate
from shared.config import Settings
from shared.db import CONNECTION_ERRORS, create_pool, migrate
from shared.directory import SenderDirectory
from shared.errors import (
    AgentidError,
    AgentInactive,
    Forbidden,
    InternalError,
    InvalidRequest,
    ReplayError,
    Unavailable,
)
from shared.keyring import Keyring
from shared.outbox import Outbox, OutboxRelay, UnitOfWork

log = logging.getLogger(__name__)

Handler = Callable[[Any, "Context"], Awaitable[Any]]
EventHandler = Callable[[Any, "Context"], Awaitable[None]]


@dataclass(frozen=True, slots=True)
class Context:
    """What a handler knows about the message besides its body."""

    tenant: str
    sender: SenderKey
    msg_id: str
    subject: str
    consumer: str = ""  # the durable consumer that delivered an event ("" for requests)


@dataclass(frozen=True)
class Subscription:
    """A durable pull consumer over some event topics."""

    durable: str
    handlers: Mapping[Topic[Any], EventHandler]
    batch: int = 64


@dataclass
class _Inflight:
    tasks: set[asyncio.Task[None]] = field(default_factory=set)


class Worker:
    name: ClassVar[str]
    schema: ClassVar[str]
    migrations: ClassVar[Path | None] = None
    # Workers other than registration authenticate orchestrators and agents from their own
    # event-fed copy of registration's senders.
    uses_directory: ClassVar[bool] = False

    def __init__(self, settings: Settings, keyring: Keyring, *, nats_url: str, database_url: str) -> None:
        self.settings = settings
        self.keyring = keyring
        self.nats_url = nats_url
        self.database_url = database_url
        self.bus: Bus
        self.pool: asyncpg.Pool
        self.outbox: Outbox
        self.replay: ReplayGuard
        self.relay: OutboxRelay
        self.ready = asyncio.Event()

    # -- what a service declares ------------------------------------------------------------
    def routes(self) -> Mapping[Route[Any, Any], Handler]:
        return {}

    def subscriptions(self) -> Sequence[Subscription]:
        return ()

    def senders(self) -> SenderRegistry | None:
        """Runtime senders (orchestrators, agents) this worker accepts, besides the keyring's."""
        return None

    async def on_start(self) -> None:
        """Load caches, start background tasks of the service's own (after migrations)."""

    async def background(self, stop: asyncio.Event) -> None:
        """A long-running task of the service's own; returns when `stop` is set, which happens
        only after in-flight requests have finished."""

    # -- helpers for handlers --------------------------------------------------------------
    @asynccontextmanager
    async def unit_of_work(self, ctx: Context | None = None) -> AsyncIterator[UnitOfWork]:
        """A transaction whose events commit with it. Given the message context, the message is
        applied at most once (a second delivery raises ReplayError before anything is written)."""
        if ctx is None:
            async with self.outbox.unit_of_work() as uow:
                yield uow
        else:
            async with self.outbox.unit_of_work(sender=ctx.sender.sender, msg_id=ctx.msg_id,
                                                subject=ctx.subject, consumer=ctx.consumer) as uow:
                yield uow

    # -- the runtime -----------------------------------------------------------------------
    async def run(self, stop: asyncio.Event) -> None:
        s = self.settings
        self.pool = await create_pool(self.database_url, max_size=s.db_pool_size)
        try:
            await migrate(self.pool, self.schema, self.migrations)
            registries: list[SenderRegistry] = [self.keyring.registry()]
            if self.uses_directory:
                self.directory = SenderDirectory(self)
                registries.append(self.directory)
            extra = self.senders()
            if extra is not None:
                registries.append(extra)
            self.bus = await Bus.connect(
                self.nats_url, name=f"agentid-{self.name}",
                signer=self.keyring.signer("service", self.name),
                registry=CompositeRegistry(registries), root=s.nats_prefix,
                max_skew_ms=int(s.max_skew_s * 1000),
                nkey_seed=s.nkey_seed, inbox_prefix=service_inbox(s.nats_prefix, self.name),
            )
            try:
                await self.bus.ensure_stream(max_age_s=s.stream_max_age_s)
                await self._serve(stop)
            finally:
                await self.bus.drain()
        finally:
            await self.pool.close()

    async def _serve(self, stop: asyncio.Event) -> None:
        s = self.settings
        self.outbox = Outbox(self.pool, self.bus, self.schema)
        self.relay = OutboxRelay(self.outbox, poll_s=s.outbox_poll_s)
        # Ids must be remembered as long as a message could still pass the timestamp check.
        window = 2 * s.max_skew_s + 1
        if s.replay_backend == "kv":
            self.replay = KvReplayGuard(await self.bus.key_value("replay", ttl_s=window))
        else:
            self.replay = MemoryReplayGuard(window)
        await self.on_start()

        stop_intake, stop_relay = asyncio.Event(), asyncio.Event()
        inflight = _Inflight()
        slots = asyncio.Semaphore(s.concurrency)
        async with asyncio.TaskGroup() as tg:
            tg.create_task(self.relay.run(stop_relay))
            # Background work outlives the in-flight requests that may still depend on it.
            tg.create_task(self.background(stop_relay))
            subs = []
            for route, handler in self.routes().items():
                async def on_msg(msg: Msg, route: Route[Any, Any] = route, handler: Handler = handler) -> None:
                    # No I/O here: nats-py delivers one message at a time to this callback.
                    await slots.acquire()
                    task = tg.create_task(self._request(route, handler, msg, slots))
                    inflight.tasks.add(task)
                    task.add_done_callback(inflight.tasks.discard)
                subs.append(await self.bus.nc.subscribe(route.pattern(self.bus.root), queue=self.name, cb=on_msg))
            specs = list(self.subscriptions())
            if self.uses_directory:
                specs.append(self.directory.subscription())
            for spec in specs:
                tg.create_task(self._consume(spec, stop_intake))
            self.ready.set()
            log.info("%s worker ready", self.name)

            await stop.wait()
            log.info("%s worker draining (grace %.1fs)", self.name, s.shutdown_grace_s)
            for sub in subs:
                try:
                    await sub.drain()
                except Exception:  # a dead connection has nothing left to drain
                    pass
            stop_intake.set()
            if inflight.tasks:
                _, pending = await asyncio.wait(set(inflight.tasks), timeout=s.shutdown_grace_s)
                for task in pending:
                    task.cancel()
            stop_relay.set()

    # -- requests ----------------------------------------------------------------------------
    async def _request(self, route: Route[Any, Any], handler: Handler, msg: Msg,
                       slots: asyncio.Semaphore) -> None:
        try:
            with telemetry.messaging_span(
                "process", route.template(self.bus.root), msg.subject, kind=SpanKind.SERVER,
                parent=telemetry.extract(msg.headers),
                attributes={"messaging.consumer.group.name": self.name},
            ) as span:
                try:
                    ctx = await self._admit(msg, route.senders)
                    span.set_attribute("messaging.message.id", ctx.msg_id)
                    span.set_attributes(telemetry.identity_attributes(tenant=ctx.tenant))
                    if not await self.replay.first_seen(ctx.sender.sender, ctx.msg_id):
                        raise ReplayError("message id already used")
                    request = decode(msg.data, route.request)
                    result = await self._call(handler, request, ctx)
                except AgentidError as exc:
                    telemetry.mark_error(span, exc.code.value)
                    await self.bus.reply(msg, exc)
                    return
                except Exception as exc:
                    # A check that failed in a way no one foresaw: the caller still gets a typed answer.
                    error = self._unexpected(exc, route.name)
                    telemetry.mark_error(span, error.code.value)
                    await self.bus.reply(msg, error)
                    return
                await self.bus.reply(msg, result)
        except Exception:  # a reply that cannot be sent must not take the worker down
            log.exception("%s: failed to answer %s", self.name, route.name)
        finally:
            slots.release()

    async def _admit(self, msg: Msg, allowed_kinds: frozenset[str], *, max_age_ms: int | None = None) -> Context:
        """Authenticate and authorise a message for this tenant; the checks every message gets."""
        if len(msg.data) > MAX_PAYLOAD_BYTES:
            raise InvalidRequest("payload too large")
        try:
            tenant = tenant_of(msg.subject, self.bus.root)
        except ValueError as exc:
            raise InvalidRequest("bad subject") from exc
        verified = await authenticate(msg.subject, msg.headers, msg.data, self.bus.registry,
                                      max_skew_ms=self.bus.max_skew_ms, max_age_ms=max_age_ms, tenant=tenant)
        sender = verified.sender
        if sender.kind not in allowed_kinds:
            raise Forbidden(f"a {sender.kind} may not send this")
        if not sender.may_act_in(tenant):
            raise Forbidden("sender belongs to another tenant")
        if not sender.active:
            if sender.kind == "agent":
                raise AgentInactive("agent is no longer active")
            raise Forbidden("sender is no longer active")
        return Context(tenant=tenant, sender=sender, msg_id=verified.msg_id, subject=msg.subject)

    async def _call(self, handler: Handler, body: Any, ctx: Context) -> Any:
        """Run a handler; driver-level outages become `unavailable`, bugs become `internal`."""
        try:
            return await handler(body, ctx)
        except AgentidError:
            raise
        except Exception as exc:
            raise self._unexpected(exc, "handler") from exc

    def _unexpected(self, exc: Exception, where: str) -> AgentidError:
        """The typed error for an exception that is not one: an outage or a bug."""
        if isinstance(exc, CONNECTION_ERRORS):
            return Unavailable("a dependency is unavailable")
        log.error("%s: %s failed", self.name, where, exc_info=exc)
        return InternalError("internal error")

    # -- events ------------------------------------------------------------------------------
    async def _consume(self, spec: Subscription, stop: asyncio.Event) -> None:
        s = self.settings
        stream = stream_name(self.bus.root)
        config = ConsumerConfig(
            durable_name=spec.durable, ack_policy=AckPolicy.EXPLICIT, deliver_policy=DeliverPolicy.ALL,
            # No delivery limit at the server: an event that waits out an outage is never dropped.
            # Events that fail for any other reason are given up after `max_deliver` (`_redeliver`).
            ack_wait=s.ack_wait_s, max_deliver=-1, max_ack_pending=1000,
            filter_subjects=[t.pattern(self.bus.root) for t in spec.handlers],
        )
        if len(config.filter_subjects or ()) > 1 and _server_version(self.bus.nc) < (2, 10):
            log.warning("%s: nats-server %s cannot filter a consumer on several subjects: every event reaches "
                        "%s, which skips those it does not take (use nats-server 2.10 or newer)",
                        self.name, self.bus.nc.connected_server_version, spec.durable)
        await self.bus.js.add_consumer(stream, config)
        psub = await self.bus.js.pull_subscribe_bind(durable=spec.durable, stream=stream)
        try:
            await self._pull(psub, spec, stop)
        finally:
            try:
                await psub.unsubscribe()  # else draining the connection waits on it
            except Exception:
                pass

    async def _pull(self, psub: Any, spec: Subscription, stop: asyncio.Event) -> None:
        handlers = {t.name: h for t, h in spec.handlers.items()}
        delay = 0.1
        while not stop.is_set():
            try:
                msgs = await psub.fetch(spec.batch, timeout=1.0)
            except asyncio.TimeoutError:
                continue
            except Exception as exc:  # NATS away: wait, it reconnects by itself
                log.warning("%s: fetch failed (%s)", spec.durable, type(exc).__name__)
                try:
                    await asyncio.wait_for(stop.wait(), timeout=delay)
                except asyncio.TimeoutError:
                    pass
                delay = min(delay * 2, 5.0)
                continue
            delay = 0.1
            for msg in msgs:
                await self._event(msg, handlers, spec.durable)

    async def _event(self, msg: Msg, handlers: Mapping[str, EventHandler], consumer: str) -> None:
        topic = topic_for(msg.subject)
        handler = handlers.get(topic.name) if topic else None
        template = topic.template(self.bus.root) if topic else "unknown"
        with telemetry.messaging_span(
            "process", template, msg.subject, kind=SpanKind.CONSUMER,
            parent=telemetry.extract(msg.headers),
        ) as span:
            try:
                if topic is not None and handler is None:
                    # A catalogue event this consumer does not take: only a server that cannot
                    # filter on several subjects (before 2.10) delivers it. Not ours: acknowledge.
                    await _settle(msg.ack())
                    return
                if topic is None:
                    raise InvalidRequest("no handler for this subject")
                producers = {"orchestrator"} if topic.owner == "orchestrator" else {"service"}
                ctx = await self._admit(msg, frozenset(producers),
                                        max_age_ms=int(self.settings.stream_max_age_s * 1000))
                ctx = dataclasses.replace(ctx, consumer=consumer)
                if topic.owner != "orchestrator" and ctx.sender.subject_id != topic.owner:
                    raise Forbidden(f"{topic.name} events come only from {topic.owner}")
                span.set_attribute("messaging.message.id", ctx.msg_id)
                event = decode(msg.data, topic.event)
                await self._call(handler, event, ctx)
            except ReplayError:
                pass  # already applied: acknowledge the redelivery
            except (Unavailable, InternalError) as exc:
                # Transient, or a bug that a fix or a retry may cure: redeliver.
                telemetry.mark_error(span, exc.code.value)
                await self._redeliver(msg, exc)
                return
            except AgentidError as exc:
                # Permanent: a forged, malformed or refused event never becomes valid by retrying.
                telemetry.mark_error(span, exc.code.value)
                log.warning("%s: event on %s refused: %s", self.name, msg.subject, exc.code.value)
                await _settle(msg.term())
                return
            except Exception as exc:
                # Unforeseen (a check that raised, not refused): redeliver. It must not escape, or it
                # would end this consumer loop and the worker with it.
                error = self._unexpected(exc, f"event on {msg.subject}")
                telemetry.mark_error(span, error.code.value)
                await self._redeliver(msg, error)
                return
            failpoints.hit("before_ack")
            await _settle(msg.ack())

    async def _redeliver(self, msg: Msg, error: AgentidError) -> None:
        """An outage is waited out, however long it lasts; anything else is retried at most
        `max_deliver` times, then given up (terminated) so it cannot block the consumer for ever."""
        if isinstance(error, Unavailable) or msg.metadata.num_delivered < self.settings.max_deliver:
            await _settle(msg.nak(delay=1.0))
            return
        log.error("%s: event on %s given up after %d deliveries (%s)", self.name, msg.subject,
                  msg.metadata.num_delivered, error.code.value)
        await _settle(msg.term())


def _server_version(nc: Any) -> tuple[int, int]:
    version = nc.connected_server_version
    return (version.major, version.minor) if version is not None else (0, 0)


async def _settle(call: Awaitable[None]) -> None:
    try:
        await call
    except Exception as exc:  # the server redelivers what we could not settle
        log.warning("could not settle message: %s", type(exc).__name__)
