"""W3C Bitstring Status List v1.0: the bitstring, its encoding, and index allocation.

Index 0 is the most significant bit of byte 0. The encoded list is GZIP of the bitstring, then
base64url without padding, then the multibase prefix `u`. Lists hold at least 131,072 entries (the
spec's minimum, for herd privacy); decoding caps the inflated size at 16 MiB.
"""

from __future__ import annotations

import gzip
import io
import secrets
import zlib

from shared.b64 import Base64Error, b64u_decode, b64u_encode

MIN_ENTRIES = 131_072
MAX_INFLATED = 16 * 1024 * 1024


class StatusListError(ValueError):
    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason  # STATUS_VERIFICATION_ERROR, STATUS_LIST_LENGTH_ERROR, RANGE_ERROR, ...


def empty(entries: int = MIN_ENTRIES) -> bytearray:
    if entries < MIN_ENTRIES or entries % 8:
        raise ValueError("a status list has at least 131072 entries, a multiple of 8")
    return bytearray(entries // 8)


def set_bit(bits: bytearray, index: int, value: bool = True) -> None:
    byte, mask = divmod(index, 8)[0], 0x80 >> (index % 8)
    if not 0 <= index < len(bits) * 8:
        raise StatusListError("RANGE_ERROR", "index outside the list")
    bits[byte] = (bits[byte] | mask) if value else (bits[byte] & ~mask)


def get_bit(bits: bytes, index: int) -> bool:
    if not 0 <= index < len(bits) * 8:
        raise StatusListError("RANGE_ERROR", "index outside the list")
    return bool(bits[index // 8] & (0x80 >> (index % 8)))


def encode(bits: bytes) -> str:
    # mtime=0: the same bits always encode to the same text.
    return "u" + b64u_encode(gzip.compress(bytes(bits), compresslevel=9, mtime=0))


def decode(encoded: str) -> bytes:
    if not isinstance(encoded, str) or not encoded.startswith("u"):
        raise StatusListError("STATUS_VERIFICATION_ERROR", "encodedList must be multibase base64url ('u')")
    try:
        compressed = b64u_decode(encoded[1:])
    except Base64Error as exc:
        raise StatusListError("STATUS_VERIFICATION_ERROR", "encodedList is not base64url") from exc
    try:
        with gzip.GzipFile(fileobj=io.BytesIO(compressed)) as f:
            bits = f.read(MAX_INFLATED + 1)  # never inflate more than the cap: gzip bombs stop here
    except (OSError, EOFError, zlib.error) as exc:
        raise StatusListError("STATUS_VERIFICATION_ERROR", "encodedList is not gzip") from exc
    if len(bits) > MAX_INFLATED:
        raise StatusListError("STATUS_VERIFICATION_ERROR", "status list inflates beyond 16 MiB")
    if len(bits) * 8 < MIN_ENTRIES:
        raise StatusListError("STATUS_LIST_LENGTH_ERROR", "status list shorter than 131072 entries")
    return bits


def random_index(entries: int) -> int:
    """Indexes are allocated at random, so neighbours in a list tell nothing about each other."""
    return secrets.randbelow(entries)
