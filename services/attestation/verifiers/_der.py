"""The few DER values private X.509 extensions carry here: INTEGER, IA5String, UTF8String.

AMD's VCEK puts its TCB levels in DER INTEGERs and its product name in an IA5String; Fulcio puts
OIDC claims in UTF8Strings. Reading one primitive TLV needs no ASN.1 library; this reader is
strict (definite, minimal lengths; the TLV must fill the value exactly).
"""

from __future__ import annotations

from ._codec import malformed

TAG_INTEGER = 0x02
TAG_UTF8STRING = 0x0C
TAG_IA5STRING = 0x16


def read_tlv(data: bytes, tag: int, what: str) -> bytes:
    if len(data) < 2 or data[0] != tag:
        raise malformed(f"{what}: expected DER tag {tag:#04x}")
    first = data[1]
    if first < 0x80:
        length, offset = first, 2
    else:
        count = first & 0x7F
        if count == 0 or count > 4 or len(data) < 2 + count:
            raise malformed(f"{what}: bad DER length")
        length = int.from_bytes(data[2 : 2 + count], "big")
        # Long form is only allowed for lengths >= 128, with no leading zero bytes.
        if length < 0x80 or data[2] == 0:
            raise malformed(f"{what}: non-minimal DER length")
        offset = 2 + count
    if len(data) != offset + length:
        raise malformed(f"{what}: DER length does not match the value")
    return data[offset:]


def read_uint(data: bytes, what: str) -> int:
    body = read_tlv(data, TAG_INTEGER, what)
    if not body or body[0] & 0x80:
        raise malformed(f"{what}: expected a non-negative INTEGER")
    if len(body) > 1 and body[0] == 0 and not body[1] & 0x80:
        raise malformed(f"{what}: non-minimal INTEGER")
    return int.from_bytes(body, "big")


def read_string(data: bytes, tag: int, what: str) -> str:
    body = read_tlv(data, tag, what)
    try:
        return body.decode("ascii" if tag == TAG_IA5STRING else "utf-8")
    except UnicodeDecodeError as exc:
        raise malformed(f"{what}: invalid string") from exc
