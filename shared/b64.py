"""base64url without padding (RFC 7515 section 2), strict on input."""

from __future__ import annotations

import base64
import binascii
import re

_B64U = re.compile(r"[A-Za-z0-9_-]*")
_ALPHABET = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
_CANONICAL_LAST = {2: frozenset(_ALPHABET[::16]), 3: frozenset(_ALPHABET[::4])}


class Base64Error(ValueError):
    """The text is not strict unpadded base64url."""


def b64u_encode(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def b64u_decode(text: str | bytes) -> bytes:
    """Decode unpadded base64url, refusing padding, other alphabets and non-canonical tails."""
    if isinstance(text, bytes):
        try:
            text = text.decode("ascii")
        except UnicodeDecodeError as exc:
            raise Base64Error("not ASCII") from exc
    if not _B64U.fullmatch(text) or len(text) % 4 == 1:
        raise Base64Error("not base64url")
    try:
        raw = base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
    except (binascii.Error, ValueError) as exc:
        raise Base64Error("not base64url") from exc
    # Reject encodings whose unused trailing bits are set: two texts must never decode to one value.
    # A text of 4n+2 characters ends in 4 unused bits, of 4n+3 in 2: its last character must be one
    # of those whose low bits are zero.
    if len(text) % 4 and text[-1] not in _CANONICAL_LAST[len(text) % 4]:
        raise Base64Error("non-canonical base64url")
    return raw
