"""`RevocationFeed`: the revocations a resource server must honour before a token expires.

Three signed events, per tenant, each from the service that owns it:
  - `evt.agent.exited` (registration): the agent is retired, revoked or expired. Every token that
    names it (as `sub`, `client_id` or any actor, by SPIFFE ID or DID) is refused. An agent id is
    never reused, so no later token needs sparing.
  - `evt.token.revoked` (token): that `jti` is refused.
  - `evt.delegation.revoked` (delegation): tokens whose delegation chain holds one of the `cids`.
Unsigned events, events signed by anyone but the owning service, and events older than the
retention are ignored.

Consistency model
  - Delivery: each replica holds its own core NATS subscription (not a shared durable consumer), so
    every replica sees every revocation; it applies one as soon as the message arrives (a signature
    check, then a set insert). `wait_for` lets callers await that moment.
  - Memory: deny entries live for the longest a token can outlive the event, `max_token_lifetime_s`
    plus `skew_s` (a revoked jti: until its `exp` plus `skew_s`), so the sets stay bounded. The
    verifier refuses tokens that live longer than `max_token_lifetime_s`, which makes this safe.
    A full set refuses every token rather than forget a revocation.
  - Start: the feed subscribes first, then replays the last retention window of revocations from
    the JetStream event stream (`catch_up`), so a verifier that restarts still knows them.
  - Cut off: while the connection is down, or after a reconnect until the missed window has been
    replayed from the stream, tokens are still accepted for `max_disconnected_s` after the last
    moment the feed was known to be current; after that every token is refused (fail closed,
    503 `temporarily_unavailable`) until the feed is current again. So a revocation is honoured
    everywhere at once while NATS is up, and at worst `max_disconnected_s` late during an outage.
    Set `max_disconnected_s=0` to refuse as soon as the connection is seen down.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, Self

import msgspec

from contracts import subjects as sub
from contracts.subjects import DEFAULT_ROOT, Topic, check_token
from contracts.types import MAX_PAYLOAD_BYTES
from shared.bus.registry import SenderRegistry
from shared.bus.signing import authenticate
from shared.errors import AgentidError
from shared.oauth_errors import InvalidTokenError, TemporarilyUnavailableError

if TYPE_CHECKING:
    from agentid.access_token import AccessToken

log = logging.getLogger(__name__)


# Only the fields the feed needs; unknown fields are ignored on purpose: a revocation must never be
# dropped because its event gained a field.
class _AgentExited(msgspec.Struct):
    spiffe_id: str
    did: str | None = None


class _TokenRevoked(msgspec.Struct):
    jti: str
    exp: float | None = None


class _DelegationRevoked(msgspec.Struct):
    cids: list[str]


# The catalogue topics (their owner is the only accepted signer) and the struct each is read with.
_EVENTS: tuple[tuple[Topic[Any], type[msgspec.Struct]], ...] = (
    (sub.AGENT_EXITED, _AgentExited),
    (sub.TOKEN_REVOKED, _TokenRevoked),
    (sub.DELEGATION_REVOKED, _DelegationRevoked),
)


class RevocationFeed:
    def __init__(
        self,
        nc: Any,
        *,
        tenant: str,
        registry: SenderRegistry,
        root: str = DEFAULT_ROOT,
        max_disconnected_s: float = 30.0,
        max_token_lifetime_s: float = 300.0,
        skew_s: float = 60.0,
        catch_up: bool = True,
        max_entries: int = 1_000_000,
        watch_interval_s: float | None = None,
        clock: Callable[[], float] = time.time,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        """`nc`: a nats client or a `Bus`; `registry`: the deployment's services (their keys sign
        the events). `max_token_lifetime_s` and `skew_s` must cover the verifier's own limits (it
        checks). `catch_up=False` skips the stream replays (start-up and after outages): only for
        resource servers without JetStream access, which then miss revocations sent while they
        were away. `clock`/`monotonic` are injectable for tests."""
        self._nc = getattr(nc, "nc", nc)  # a nats client, or a `Bus`
        self.tenant = check_token(tenant)
        self.root = check_token(root)
        self._registry = registry
        self.max_disconnected_s = max_disconnected_s
        self.max_token_lifetime_s = max_token_lifetime_s
        self.skew_s = skew_s
        self.retention_s = max_token_lifetime_s + skew_s
        self._catch_up_enabled = catch_up
        self._max_entries = max_entries
        self._watch_interval = watch_interval_s or max(0.1, min(1.0, max_disconnected_s / 4))
        self._clock = clock
        self._monotonic = monotonic
        self._subjects = {topic.subject(self.tenant, self.root): (topic, struct) for topic, struct in _EVENTS}
        # identity / jti / cid -> wall-clock time until which it is denied
        self._principals: dict[str, float] = {}
        self._jtis: dict[str, float] = {}
        self._cids: dict[str, float] = {}
        self._overflow = False
        self._last_sweep = 0.0
        self._subs: list[Any] = []
        self._watcher: asyncio.Task[None] | None = None
        self._started = False
        self._current = False          # connected and not missing any window
        self._last_current = 0.0       # monotonic time the feed was last known current
        self._last_current_wall = 0.0
        self._reconnects_seen = 0
        self._changed = asyncio.Condition()
        self.applied = 0   # revocations applied, for tests and metrics
        self.ignored = 0   # messages refused (unsigned, wrong sender, stale, malformed)

    @classmethod
    def from_deployment(cls, nc: Any, deployment: Any, tenant: str, **kwargs: Any) -> RevocationFeed:
        """Trust the deployment's service keys and use its subject root."""
        return cls(nc, tenant=tenant, registry=deployment.services(), root=deployment.nats_prefix, **kwargs)

    # -- lifecycle ---------------------------------------------------------------------------------
    async def start(self) -> None:
        """Subscribe, replay the retention window (with `catch_up`), then start watching the link."""
        if self._started:
            return
        for subject in self._subjects:
            self._subs.append(await self._nc.subscribe(subject, cb=self._on_msg))
        self._reconnects_seen = self._reconnects()
        if self._catch_up_enabled:
            await self._catch_up(self._clock() - self.retention_s)
        self._mark_current()
        self._started = True
        self._watcher = asyncio.create_task(self._watch())

    async def close(self) -> None:
        if self._watcher is not None:
            self._watcher.cancel()
            try:
                await self._watcher
            except asyncio.CancelledError:
                pass
            self._watcher = None
        for s in self._subs:
            try:
                await s.unsubscribe()
            except Exception as exc:  # noqa: BLE001 - the connection may already be gone; close anyway
                log.debug("unsubscribe failed: %s", type(exc).__name__)
        self._subs.clear()
        self._started = False

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    # -- the verifier's question -------------------------------------------------------------------
    def check(self, token: AccessToken, now: float) -> None:
        """Raise if `token` is revoked, or if the feed cannot vouch that it is not."""
        self._ensure_current()
        if token.jti in self._jtis and self._jtis[token.jti] >= now:
            raise InvalidTokenError("revoked_token", "the access token was revoked")
        principals = self._principals
        if principals:
            for who in token.principals:
                until = principals.get(who)
                if until is not None and until >= now:
                    raise InvalidTokenError("revoked_agent", "the agent behind the access token was retired")
        if token.delegation is not None and self._cids:
            for cid in token.delegation.chain:
                until = self._cids.get(cid)
                if until is not None and until >= now:
                    raise InvalidTokenError("revoked_delegation", "a delegation behind the access token was revoked")

    def _ensure_current(self) -> None:
        if not self._started:
            raise TemporarilyUnavailableError("revocations_not_started", "revocation updates are unavailable")
        if self._overflow:
            raise TemporarilyUnavailableError("revocations_overflow", "revocation updates are unavailable")
        now = self._monotonic()
        if self._current and self._nc.is_connected:
            self._last_current = now
            self._last_current_wall = self._clock()
            return
        if self._current:  # seen down for the first time here: the watcher will catch up
            self._current = False
        if now - self._last_current > self.max_disconnected_s:
            raise TemporarilyUnavailableError("revocations_stale", "revocation updates are unavailable")

    def revoked_principal(self, who: str) -> bool:
        return self._principals.get(who, -1.0) >= self._clock()

    def revoked_jti(self, jti: str) -> bool:
        return self._jtis.get(jti, -1.0) >= self._clock()

    def revoked_cid(self, cid: str) -> bool:
        return self._cids.get(cid, -1.0) >= self._clock()

    async def wait_for(self, predicate: Callable[[], bool]) -> None:
        """Return once `predicate()` holds, re-checking after each event handled (applied or not)."""
        async with self._changed:
            await self._changed.wait_for(predicate)

    # -- applying events ---------------------------------------------------------------------------
    async def _on_msg(self, msg: Any) -> None:
        await self.handle(msg.subject, msg.headers, msg.data)

    async def handle(self, subject: str, headers: dict[str, str] | None, data: bytes) -> bool:
        """Authenticate and apply one event; False when it is ignored."""
        applied = await self._authenticate_and_apply(subject, headers, data)
        if applied:
            self.applied += 1
        else:
            self.ignored += 1
        async with self._changed:
            self._changed.notify_all()
        return applied

    async def _authenticate_and_apply(self, subject: str, headers: dict[str, str] | None, data: bytes) -> bool:
        known = self._subjects.get(subject)
        if known is None or len(data) > MAX_PAYLOAD_BYTES:
            return False
        topic, struct = known
        try:
            verified = await authenticate(subject, headers, data, self._registry,
                                          max_age_ms=int(self.retention_s * 1000), tenant=self.tenant)
            if verified.sender.kind != "service" or verified.sender.subject_id != topic.owner:
                raise PermissionError("not signed by the owning service")
            event = msgspec.json.decode(data, type=struct)
        except (AgentidError, PermissionError, msgspec.MsgspecError) as exc:
            log.warning("ignored %s event: %s", topic.name, type(exc).__name__)
            return False
        self._apply(event, verified.ts_ms / 1000)
        return True

    def _apply(self, event: msgspec.Struct, at: float) -> None:
        until = at + self.retention_s
        if isinstance(event, _AgentExited):
            self._deny(self._principals, event.spiffe_id, until)
            if event.did:
                self._deny(self._principals, event.did, until)
        elif isinstance(event, _TokenRevoked):
            self._deny(self._jtis, event.jti, until if event.exp is None else event.exp + self.skew_s)
        elif isinstance(event, _DelegationRevoked):
            for cid in event.cids:
                self._deny(self._cids, cid, until)

    def _deny(self, table: dict[str, float], key: str, until: float) -> None:
        now = self._clock()
        if now - self._last_sweep > 10.0:
            self._sweep(now)
        if key not in table and len(self._principals) + len(self._jtis) + len(self._cids) >= self._max_entries:
            self._overflow = True  # forgetting a live revocation is not an option: refuse everything
            log.error("revocation deny-sets are full; refusing every token")
            return
        table[key] = max(until, table.get(key, until))

    def _sweep(self, now: float) -> None:
        self._last_sweep = now
        for table in (self._principals, self._jtis, self._cids):
            for key in [k for k, until in table.items() if until < now]:
                del table[key]

    # -- staying current ---------------------------------------------------------------------------
    def _reconnects(self) -> int:
        stats = getattr(self._nc, "stats", None) or {}
        return int(stats.get("reconnects", 0))

    def _mark_current(self) -> None:
        self._current = True
        self._last_current = self._monotonic()
        self._last_current_wall = self._clock()

    async def _watch(self) -> None:
        while True:
            await asyncio.sleep(self._watch_interval)
            try:
                await self.watch_once()
            except Exception:  # never let the watcher die: the verifier would stay stale
                log.exception("revocation feed watch failed")

    async def watch_once(self) -> None:
        """One look at the link: note it down, or catch up after a reconnect. Called by the watcher."""
        if not self._nc.is_connected:
            self._current = False
            return
        reconnects = self._reconnects()
        if self._current and reconnects == self._reconnects_seen:
            self._mark_current()
            return
        # Back after an outage (seen down, or a reconnect between two looks): replay what the
        # subscription may have missed, from the last moment the feed was known current.
        since = self._last_current_wall - self.skew_s
        if self._catch_up_enabled:
            await self._catch_up(since)
        self._reconnects_seen = reconnects
        self._mark_current()

    async def _catch_up(self, since: float) -> None:
        """Apply every revocation in the event stream since `since` (wall clock).

        One short-lived push consumer per revocation subject, each created through the API subject
        that names its filter (`$JS.API.CONSUMER.CREATE.<stream>.<name>.<filter>`, which the server
        checks against the consumer's filter). So a verifier's NATS user needs to be allowed only
        its own tenant's revocation subjects there, and nothing on other consumers: no `MSG.NEXT`
        (messages are pushed to its own inbox) and no `DELETE` (the consumer removes itself once
        nobody listens for `inactive_threshold`).
        """
        from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy
        from nats.js.errors import NotFoundError

        from shared.bus.client import stream_name
        from shared.ids import new_id

        since = max(since, self._clock() - self.retention_s)
        js = self._nc.jetstream()
        stream = stream_name(self.root)
        for subject in self._subjects:
            inbox = self._nc.new_inbox()
            delivery = await self._nc.subscribe(inbox)
            try:
                config = ConsumerConfig(
                    name=new_id(), filter_subject=subject, deliver_subject=inbox,
                    deliver_policy=DeliverPolicy.BY_START_TIME, opt_start_time=datetime.fromtimestamp(since, UTC),
                    ack_policy=AckPolicy.NONE, inactive_threshold=30.0, mem_storage=True,
                )
                try:
                    info = await js.add_consumer(stream, config)
                except NotFoundError:
                    return  # no event stream yet: no event was ever published, so none was missed
                remaining = info.num_pending
                while remaining > 0:
                    m = await delivery.next_msg(timeout=5.0)
                    await self.handle(m.subject, m.headers, m.data)
                    remaining = m.metadata.num_pending
            finally:
                try:
                    await delivery.unsubscribe()
                except Exception as exc:  # noqa: BLE001 - the connection may be gone; the consumer ends itself
                    log.debug("catch-up unsubscribe failed: %s", type(exc).__name__)
