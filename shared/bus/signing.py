"""The message envelope: sender, key id, timestamp, message id and a signature over all of them.

Signing input (UTF-8, fields joined by LF):

    agentid-msg-v1 LF subject LF sender LF key-id LF msg-id LF timestamp-ms LF sha256(payload)

The subject binds the message to its destination (a reply to its requester's inbox), the sender and
key id bind it to one identity, the message id and timestamp give replay protection, and the
payload digest covers the body without copying it.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Mapping
from dataclasses import dataclass

from contracts import headers as H
from shared.b64 import Base64Error, b64u_decode, b64u_encode
from shared.bus.registry import SenderKey, SenderRegistry
from shared.errors import InvalidSignature, StaleMessage, UnknownSender
from shared.ids import new_id
from shared.keys import PrivateKey

_DOMAIN = b"agentid-msg-v1\n"
_MAX_HEADER = 512


@dataclass(frozen=True, slots=True)
class Signer:
    """A sender identity with its private key."""

    sender: str
    key: PrivateKey

    @property
    def key_id(self) -> str:
        return self.key.public.thumbprint


def signing_input(subject: str, sender: str, key_id: str, msg_id: str, ts_ms: int,
                  payload: bytes) -> bytes:
    head = "\n".join((subject, sender, key_id, msg_id, str(ts_ms))).encode("utf-8")
    return _DOMAIN + head + b"\n" + hashlib.sha256(payload).digest()


def sign(signer: Signer, subject: str, payload: bytes, *, msg_id: str | None = None,
         ts_ms: int | None = None) -> dict[str, str]:
    """Headers that make `payload` on `subject` a signed message from `signer`."""
    msg_id = msg_id or new_id()
    ts_ms = int(time.time() * 1000) if ts_ms is None else ts_ms
    sig = signer.key.sign(signing_input(subject, signer.sender, signer.key_id, msg_id, ts_ms, payload))
    return {
        H.SENDER: signer.sender,
        H.KEY_ID: signer.key_id,
        H.TIMESTAMP: str(ts_ms),
        H.MSG_ID: msg_id,
        H.SIGNATURE: b64u_encode(sig),
    }


@dataclass(frozen=True, slots=True)
class Verified:
    sender: SenderKey
    msg_id: str
    ts_ms: int


async def authenticate(
    subject: str,
    headers: Mapping[str, str] | None,
    payload: bytes,
    registry: SenderRegistry,
    *,
    now_ms: int | None = None,
    max_skew_ms: int = 30_000,
    max_age_ms: int | None = None,
    tenant: str | None = None,
) -> Verified:
    """Check the envelope: known sender, valid signature, timestamp in the window.

    `max_age_ms` defaults to `max_skew_ms` (requests). Events read from JetStream may be delivered
    long after they were signed, so their consumers pass the stream's retention as `max_age_ms`;
    the future bound stays `max_skew_ms` either way.
    Raises InvalidSignature, UnknownSender or StaleMessage.
    """
    headers = headers or {}
    fields = []
    for name in (H.SENDER, H.KEY_ID, H.TIMESTAMP, H.MSG_ID, H.SIGNATURE):
        value = headers.get(name)
        if not value or len(value) > _MAX_HEADER:
            raise InvalidSignature(f"missing or oversized header {name}")
        fields.append(value)
    sender, key_id, ts_text, msg_id, sig_text = fields
    if not ts_text.isdigit() or len(ts_text) > 16:
        raise InvalidSignature("bad timestamp header")
    ts_ms = int(ts_text)
    try:
        sig = b64u_decode(sig_text)
    except Base64Error as exc:
        raise InvalidSignature("signature is not base64url") from exc
    found = await registry.lookup(sender, key_id, tenant)
    if found is None:
        raise UnknownSender("no key is registered for this sender")
    if not found.key.verify(sig, signing_input(subject, sender, key_id, msg_id, ts_ms, payload)):
        raise InvalidSignature("message signature does not verify")
    now_ms = int(time.time() * 1000) if now_ms is None else now_ms
    oldest = now_ms - (max_skew_ms if max_age_ms is None else max_age_ms)
    if ts_ms > now_ms + max_skew_ms or ts_ms < oldest:
        raise StaleMessage("message timestamp is outside the accepted window")
    return Verified(found, msg_id, ts_ms)
