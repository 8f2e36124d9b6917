"""DSSE (Dead Simple Signing Envelope) v1: sign and verify over the pre-authentication encoding.

PAE(type, body) = "DSSEv1" SP len(type) SP type SP len(body) SP body, lengths in ASCII decimal
bytes. The envelope is `{"payload": b64(body), "payloadType": type, "signatures": [{"keyid", "sig"}]}`
with standard base64. Signatures are over the PAE of the DECODED payload, never of the envelope JSON.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Mapping
from typing import Any

from shared.keys import PrivateKey, PublicKey

MAX_PAYLOAD_BYTES = 1024 * 1024


class EnvelopeError(ValueError):
    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason  # malformed | bad_signature


def pae(payload_type: str, payload: bytes) -> bytes:
    t = payload_type.encode("utf-8")
    return b"DSSEv1 %d %s %d %s" % (len(t), t, len(payload), payload)


def sign(key: PrivateKey, payload_type: str, payload: bytes, *, keyid: str = "") -> dict[str, Any]:
    sig = key.sign(pae(payload_type, payload))
    return {"payload": base64.b64encode(payload).decode("ascii"), "payloadType": payload_type,
            "signatures": [{"keyid": keyid, "sig": base64.b64encode(sig).decode("ascii")}]}


def _b64(value: Any, name: str) -> bytes:
    if not isinstance(value, str):
        raise EnvelopeError("malformed", f"{name} must be base64 text")
    try:
        return base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise EnvelopeError("malformed", f"{name} is not base64") from exc


def open_envelope(envelope: Mapping[str, Any]) -> tuple[str, bytes]:
    """(payloadType, decoded payload), unverified but well-formed."""
    if not isinstance(envelope, Mapping) or set(envelope) - {"payload", "payloadType", "signatures"}:
        raise EnvelopeError("malformed", "not a DSSE envelope")
    payload_type = envelope.get("payloadType")
    if not isinstance(payload_type, str) or not payload_type:
        raise EnvelopeError("malformed", "payloadType is required")
    payload = _b64(envelope.get("payload"), "payload")
    if len(payload) > MAX_PAYLOAD_BYTES:
        raise EnvelopeError("malformed", "payload too large")
    return payload_type, payload


def verify(envelope: Mapping[str, Any], key: PublicKey) -> tuple[str, bytes]:
    """(payloadType, payload) when one of the envelope's signatures is `key`'s over the PAE."""
    payload_type, payload = open_envelope(envelope)
    signatures = envelope.get("signatures")
    if not isinstance(signatures, list) or not 1 <= len(signatures) <= 8:
        raise EnvelopeError("malformed", "an envelope carries one to eight signatures")
    message = pae(payload_type, payload)
    for entry in signatures:
        if isinstance(entry, Mapping) and key.verify(_b64(entry.get("sig"), "sig"), message):
            return payload_type, payload
    raise EnvelopeError("bad_signature", "no signature of the expected key over the envelope")
