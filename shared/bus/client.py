"""`Bus`: one NATS connection that signs what it sends and checks what it receives."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Sequence
from typing import Any, TypeVar

import msgspec
import nats
from nats.aio.client import Client as NATS
from nats.aio.msg import Msg
from nats.errors import ConnectionClosedError, NoRespondersError, TimeoutError as NatsTimeout
from nats.js.api import DiscardPolicy, RetentionPolicy, StorageType, StreamConfig
from nats.js.errors import NoStreamResponseError, NotFoundError, TooManyStalledMsgsError
from nats.js.kv import KeyValue
from nats.protocol.parser import PERMISSIONS_ERR
from opentelemetry.trace import SpanKind

from contracts import headers as H
from contracts.errors import Error
from contracts.subjects import DEFAULT_ROOT, Route, Topic, check_token, events_subject
from contracts.types import MAX_PAYLOAD_BYTES
from shared import telemetry
from shared.bus.registry import SenderRegistry
from shared.bus.signing import Signer, authenticate, sign
from shared.errors import AgentidError, Forbidden, InternalError, InvalidRequest, Unavailable

log = logging.getLogger(__name__)
T = TypeVar("T")

_encoder = msgspec.json.Encoder()


def encode(body: Any) -> bytes:
    return _encoder.encode(body)


# A reply (a page of audit entries, a list of checkpoints) may be larger than any request a route
# accepts; it is bounded by the NATS server's payload limit (1 MiB by default).
MAX_REPLY_BYTES = 1024 * 1024


def decode(data: bytes, type_: type[T], *, max_bytes: int = MAX_PAYLOAD_BYTES) -> T:
    """Decode a payload strictly; any mismatch is the caller's `invalid_request`."""
    if len(data) > max_bytes:
        raise InvalidRequest("payload too large")
    try:
        return msgspec.json.decode(data, type=type_)
    except msgspec.ValidationError as exc:
        raise InvalidRequest(f"invalid payload: {exc}") from exc
    except msgspec.DecodeError as exc:
        raise InvalidRequest("payload is not valid JSON") from exc
    except UnicodeDecodeError as exc:  # msgspec raises this, not DecodeError, for bad UTF-8 in a string
        raise InvalidRequest("payload is not valid UTF-8") from exc


def stream_name(root: str) -> str:
    return f"{check_token(root).upper().replace('-', '_')}_EVENTS"


class Bus:
    """Signed publish, request and reply over one NATS connection.

    `signer` is this process's identity (a service, an operator, an orchestrator or an agent).
    `registry` resolves the senders this side accepts messages from: for a client, the services
    of the deployment; for a worker, everyone who may call it.
    """

    def __init__(self, nc: NATS, *, signer: Signer | None, registry: SenderRegistry,
                 root: str = DEFAULT_ROOT, max_skew_ms: int = 30_000) -> None:
        self.nc = nc
        self.js = nc.jetstream()
        self.signer = signer
        self.registry = registry
        self.root = check_token(root)
        self.max_skew_ms = max_skew_ms

    @classmethod
    async def connect(cls, url: str, *, name: str, signer: Signer | None, registry: SenderRegistry,
                      root: str = DEFAULT_ROOT, max_skew_ms: int = 30_000,
                      connect_timeout: float = 2.0, nkey_seed: str | None = None,
                      inbox_prefix: str | None = None) -> Bus:
        """Connect with unlimited reconnects: a worker rides out NATS restarts.

        `nkey_seed` authenticates as a NATS user (deploy/nats.conf); `inbox_prefix` (see
        `shared.bus.inbox`) is where replies come back, the only inbox that user may read.
        Raises `Unavailable` if the first connection cannot be made.
        """

        async def on_error(exc: Exception) -> None:
            if PERMISSIONS_ERR in str(exc).lower():
                # The server refused a publish or subscribe: a missing permission in
                # deploy/nats.conf, or this process attempting what its user may not do.
                log.error("nats refused %s: %s", name, exc)
            else:
                log.warning("nats error on %s: %s", name, type(exc).__name__)

        options: dict[str, Any] = {}
        if nkey_seed:
            options["nkeys_seed_str"] = nkey_seed
        if inbox_prefix:
            options["inbox_prefix"] = inbox_prefix
        try:
            nc = await nats.connect(
                servers=[url], name=name, connect_timeout=connect_timeout,
                allow_reconnect=True, max_reconnect_attempts=-1, reconnect_time_wait=0.25,
                error_cb=on_error, max_outstanding_pings=3, ping_interval=10, **options,
            )
        except Exception as exc:  # nats-py raises several types for "nobody there"
            raise Unavailable(f"cannot connect to NATS: {type(exc).__name__}") from exc
        return cls(nc, signer=signer, registry=registry, root=root, max_skew_ms=max_skew_ms)

    # -- sending ---------------------------------------------------------------------------
    def envelope(self, subject: str, payload: bytes, *, msg_id: str | None = None,
                 ts_ms: int | None = None) -> dict[str, str]:
        if self.signer is None:
            raise Forbidden("this connection has no signing identity")
        headers = sign(self.signer, subject, payload, msg_id=msg_id, ts_ms=ts_ms)
        telemetry.inject(headers)
        return headers

    async def request(self, route: Route[Any, T], tenant: str, body: Any, *,
                      timeout: float = 5.0, msg_id: str | None = None) -> T:
        """Send a signed request and return the verified, typed reply.

        Raises the `AgentidError` subclass of an error reply, or `Unavailable` when nobody
        answers in time.
        """
        subject = route.subject(tenant, self.root)
        payload = encode(body)
        with telemetry.messaging_span("request", route.template(self.root),
                                      subject, kind=SpanKind.CLIENT) as span:
            headers = self.envelope(subject, payload, msg_id=msg_id)
            span.set_attribute("messaging.message.id", headers[H.MSG_ID])
            try:
                msg = await self.nc.request(subject, payload, timeout=timeout, headers=headers)
            except NoRespondersError as exc:
                raise Unavailable(f"no {route.service} worker is listening") from exc
            except (NatsTimeout, asyncio.TimeoutError) as exc:
                raise Unavailable(f"{route.name} did not answer in time") from exc
            except ConnectionClosedError as exc:
                raise Unavailable("NATS connection closed") from exc
            return await self._open_reply(route, msg)

    async def _open_reply(self, route: Route[Any, T], msg: Msg) -> T:
        verified = await authenticate(msg.subject, msg.headers, msg.data, self.registry,
                                      max_skew_ms=self.max_skew_ms)
        sender = verified.sender
        if sender.kind != "service" or sender.subject_id != route.service:
            raise InternalError(f"reply to {route.name} was not signed by {route.service}")
        if msg.headers and msg.headers.get(H.ERROR):
            raise AgentidError.from_error(decode(msg.data, Error))
        return decode(msg.data, route.reply, max_bytes=MAX_REPLY_BYTES)

    async def publish_event(self, topic: Topic[Any], tenant: str, body: Any, *,
                            msg_id: str | None = None, timeout: float = 5.0) -> Any:
        """Publish a signed event straight into JetStream (orchestrators use this; services use
        their outbox so that state and event commit together)."""
        subject = topic.subject(tenant, self.root)
        payload = encode(body)
        with telemetry.messaging_span("publish", topic.template(self.root),
                                      subject, kind=SpanKind.PRODUCER, msg_id=msg_id):
            headers = self.envelope(subject, payload, msg_id=msg_id)
            return await self.publish_signed(subject, payload, headers, timeout=timeout)

    async def publish_signed(self, subject: str, payload: bytes, headers: dict[str, str], *,
                             timeout: float = 5.0) -> Any:
        """Publish an already signed message into JetStream and wait for the stream's ack."""
        try:
            return await self.js.publish(subject, payload, headers=headers, timeout=timeout)
        except (NatsTimeout, asyncio.TimeoutError, NoRespondersError, ConnectionClosedError) as exc:
            raise Unavailable("JetStream did not acknowledge the event") from exc

    async def publish_signed_many(self, messages: Sequence[tuple[str, bytes, dict[str, str]]], *,
                                  timeout: float = 5.0) -> None:
        """Publish already signed messages into JetStream, pipelined: all are written in order,
        then every acknowledgement is awaited (one round trip for the batch, not one each)."""
        futures: list[asyncio.Future[Any]] = []
        try:
            for subject, payload, headers in messages:
                futures.append(await self.js.publish_async(subject, payload, headers=headers, wait_stall=timeout))
            await asyncio.wait_for(asyncio.gather(*futures), timeout)
        except (NatsTimeout, asyncio.TimeoutError, NoRespondersError, ConnectionClosedError,
                NoStreamResponseError, TooManyStalledMsgsError) as exc:
            raise Unavailable("JetStream did not acknowledge the events") from exc
        finally:
            for future in futures:
                future.cancel()  # an unanswered one would otherwise hold its slot for ever

    async def reply(self, msg: Msg, body: Any | AgentidError) -> None:
        """Answer a request with a signed result or a signed typed error."""
        if not msg.reply:
            return
        if isinstance(body, AgentidError):
            payload = encode(body.to_error())
            headers = self.envelope(msg.reply, payload)
            headers[H.ERROR] = body.code.value
            headers[H.SERVICE_ERROR_CODE] = str(body.status)
            headers[H.SERVICE_ERROR] = body.code.value
        else:
            payload = encode(body)
            headers = self.envelope(msg.reply, payload)
        try:
            await self.nc.publish(msg.reply, payload, headers=headers)
        except ConnectionClosedError:
            log.warning("could not reply: connection closed")

    # -- JetStream set-up ------------------------------------------------------------------
    async def ensure_stream(self, *, max_age_s: float = 7 * 86_400, duplicate_window_s: float = 120,
                            storage: StorageType = StorageType.FILE) -> None:
        """Create the event stream, or bring its configuration up to date; safe to race."""
        config = StreamConfig(
            name=stream_name(self.root), subjects=[events_subject(self.root)],
            retention=RetentionPolicy.LIMITS, storage=storage, max_age=max_age_s,
            duplicate_window=duplicate_window_s, discard=DiscardPolicy.OLD,
        )
        try:
            await self.js.stream_info(config.name)
        except NotFoundError:
            try:
                await self.js.add_stream(config)
                return
            except Exception:  # another replica created it first; fall through to update
                pass
        await self.js.update_stream(config)

    async def key_value(self, bucket: str, *, ttl_s: float,
                        storage: StorageType = StorageType.FILE) -> KeyValue:
        """Open or create a bucket. On a file store by default: a memory bucket is gone after a NATS
        restart, and every replay check against it would then fail (closed) until the worker restarts."""
        name = f"{check_token(self.root)}_{bucket}"
        try:
            return await self.js.key_value(name)
        except Exception:
            from nats.js.api import KeyValueConfig

            return await self.js.create_key_value(KeyValueConfig(bucket=name, ttl=ttl_s, storage=storage))

    # -- lifecycle -------------------------------------------------------------------------
    async def drain(self) -> None:
        if not self.nc.is_closed:
            try:
                await self.nc.drain()
            except Exception as exc:  # draining a broken connection: close it instead
                log.warning("drain failed (%s); closing", type(exc).__name__)
                await self.close()

    async def close(self) -> None:
        if not self.nc.is_closed:
            await self.nc.close()

    @staticmethod
    def now_ms() -> int:
        return int(time.time() * 1000)
