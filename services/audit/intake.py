"""Intake: what the audit makes of one message from the event stream.

Every message is logged. The audit checks what every consumer checks (a catalogue subject, a
known sender, a valid signature, a producer allowed to emit the topic, the subject's tenant, a body
that decodes), and records the verdict instead of acting on it: a message that fails becomes a
`rejected` entry with the reason, so forged, malformed or misrouted events are evidence, not noise.
Two failures are not verdicts and the message is delivered again later: a dependency that is down,
and a sender not known yet (its registration event may still be on its way; after
`max_attempts` deliveries it is logged as rejected).

Unlike a business consumer the audit does not refuse a sender that has since become inactive:
what matters for the record is who signed, and whether the signature is theirs.
"""

from __future__ import annotations

import hashlib
import logging
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from contracts import headers as H
from contracts.subjects import Topic, check_token, topic_for
from contracts.types import MAX_PAYLOAD_BYTES
from services.audit.describe import Facts, describe
from services.audit.leaf import Observed
from shared.bus.client import decode
from shared.bus.registry import SenderRegistry
from shared.bus.signing import authenticate, signing_input
from shared.errors import (
    AgentidError,
    Forbidden,
    InvalidRequest,
    Unavailable,
    UnknownSender,
)

log = logging.getLogger(__name__)

_DOMAIN = b"agentid-msg-v1\n"
_TRACEPARENT = re.compile(r"00-([0-9a-f]{32})-([0-9a-f]{16})-[0-9a-f]{2}")
_MAX_CLAIM = 512


@dataclass(frozen=True)
class Raw:
    """A message as delivered: subject, headers, payload, and when the stream stored it."""

    subject: str
    headers: Mapping[str, str]
    payload: bytes
    stored_ms: int
    attempt: int = 1


def header(headers: Mapping[str, str], name: str) -> str | None:
    value = headers.get(name)
    if value is None:
        lowered = name.lower()
        value = next((v for k, v in headers.items() if k.lower() == lowered), None)
    return value


def trace_id_of(headers: Mapping[str, str]) -> str | None:
    match = _TRACEPARENT.fullmatch(header(headers, H.TRACEPARENT) or "")
    if match is None or set(match.group(1)) == {"0"} or set(match.group(2)) == {"0"}:
        return None
    return match.group(1)


def raw_signing_input(raw: Raw) -> bytes:
    """The signing input rebuilt from the headers as received (missing ones empty)."""
    fields = [raw.subject] + [header(raw.headers, n) or "" for n in (H.SENDER, H.KEY_ID, H.MSG_ID, H.TIMESTAMP)]
    return _DOMAIN + "\n".join(fields).encode("utf-8", "surrogateescape") + b"\n" + hashlib.sha256(raw.payload).digest()


def dedup_key(raw: Raw) -> bytes:
    """One key per message as received: redelivery repeats it, any other message differs (a copy
    with another signature included, so a forged twin can never stand in for the real event)."""
    signature = (header(raw.headers, H.SIGNATURE) or "").encode("utf-8", "surrogateescape")
    return hashlib.sha256(raw_signing_input(raw) + b"\n" + signature).digest()


def _digest(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def _tenant_and_event(subject: str) -> tuple[str, str]:
    parts = subject.split(".")
    tenant = parts[2] if len(parts) > 2 else ""
    event = ".".join(parts[4:]) if len(parts) > 4 and parts[3] == "evt" else subject
    return tenant, event


def _claim(value: str | None) -> str | None:
    return value[:_MAX_CLAIM] if value is not None else None


class Intake:
    def __init__(self, registry: SenderRegistry, *, max_skew_ms: int, max_age_ms: int, max_attempts: int) -> None:
        self._registry = registry
        self._max_skew_ms = max_skew_ms
        self._max_age_ms = max_age_ms
        self._max_attempts = max_attempts

    async def observe(self, raw: Raw) -> Observed | None:
        """The message's verdict, or None to have it delivered again. Raises `Unavailable` when a
        dependency is down (also: deliver again)."""
        tenant, event = _tenant_and_event(raw.subject)
        claimed = {"id": _claim(header(raw.headers, H.SENDER)), "key_id": _claim(header(raw.headers, H.KEY_ID)),
                   "claimed": True}

        def rejected(exc: AgentidError) -> Observed:
            return Observed(
                subject=raw.subject, tenant=tenant, event=event, msg_id=_claim(header(raw.headers, H.MSG_ID)),
                time_ms=raw.stored_ms, actor=claimed, verified=False, reasons=(exc.code.value, exc.message),
                trace_id=trace_id_of(raw.headers), event_digest=_digest(raw_signing_input(raw)),
                dedup_key=dedup_key(raw))

        try:
            topic, verified, body = await self._check(raw, tenant)
        except Unavailable:
            raise
        except UnknownSender as exc:
            if raw.attempt < self._max_attempts:
                return None
            return rejected(exc)
        except AgentidError as exc:
            return rejected(exc)
        sender = verified.sender
        try:
            facts = describe(topic.name, body)
        except Exception:  # a describer bug: log the event anyway, without its details
            log.exception("audit: no description of %s", topic.name)
            facts = Facts(subject={}, details={"omitted": "description failed"})
        signed = signing_input(raw.subject, sender.sender, sender.key_id, verified.msg_id, verified.ts_ms, raw.payload)
        return Observed(
            subject=raw.subject, tenant=tenant, event=topic.name, msg_id=verified.msg_id, time_ms=verified.ts_ms,
            actor={"id": sender.sender, "kind": sender.kind, "name": sender.subject_id, "key_id": sender.key_id},
            verified=True, reasons=(), trace_id=trace_id_of(raw.headers), event_digest=_digest(signed),
            dedup_key=dedup_key(raw), facts=facts)

    async def _check(self, raw: Raw, tenant: str) -> tuple[Topic[Any], Any, Any]:
        if len(raw.payload) > MAX_PAYLOAD_BYTES:
            raise InvalidRequest("payload too large")
        topic = topic_for(raw.subject)
        if topic is None:
            raise InvalidRequest("not an event of the catalogue")
        try:
            hint: str | None = check_token(tenant)  # the directory may ask registration in this tenant
        except ValueError:
            hint = None
        verified = await authenticate(raw.subject, raw.headers, raw.payload, self._registry,
                                      max_skew_ms=self._max_skew_ms, max_age_ms=self._max_age_ms, tenant=hint)
        sender = verified.sender
        if topic.owner == "orchestrator":
            if sender.kind != "orchestrator":
                raise Forbidden(f"{topic.name} events come only from orchestrators")
        elif sender.kind != "service" or sender.subject_id != topic.owner:
            raise Forbidden(f"{topic.name} events come only from {topic.owner}")
        if not sender.may_act_in(tenant):
            raise Forbidden("sender belongs to another tenant")
        return topic, verified, decode(raw.payload, topic.event)
