"""Constrained field types shared by the message structs: every input has a stated bound."""

from __future__ import annotations

from typing import Annotated, Any

import msgspec


def anchored(body: str) -> str:
    """A whole-string pattern. msgspec searches with Python's `re`, where `$` also matches before a
    trailing newline; the lookahead refuses that, and stays valid ECMA-262 for the JSON Schemas."""
    return f"^(?:{body})$(?!\\n)"

# Identifiers we mint (`agt_` + ULID, `orc_` + ULID) and ids callers choose (spawn ids, names).
Id = Annotated[str, msgspec.Meta(pattern=anchored(r"[A-Za-z0-9_-]{1,64}"))]
# Tenant ids become a subject token and a SPIFFE path, so they are lowercase and short.
TenantId = Annotated[str, msgspec.Meta(pattern=anchored(r"[a-z0-9][a-z0-9_-]{0,62}"))]
TrustDomain = Annotated[str, msgspec.Meta(pattern=anchored(r"[a-z0-9._-]{1,255}"))]
Token = Annotated[str, msgspec.Meta(pattern=anchored(r"[A-Za-z0-9._:-]{1,64}"))]   # tiers, classes, kinds
Name = Annotated[str, msgspec.Meta(min_length=1, max_length=128)]
Text = Annotated[str, msgspec.Meta(max_length=1024)]
Uri = Annotated[str, msgspec.Meta(min_length=1, max_length=2048)]
Digest = Annotated[str, msgspec.Meta(pattern=anchored(r"[a-z0-9-]{2,16}:[A-Fa-f0-9]{32,128}"))]  # sha256:<hex>
Jws = Annotated[str, msgspec.Meta(min_length=1, max_length=16384)]
Pem = Annotated[str, msgspec.Meta(min_length=1, max_length=65536)]
Jwk = Annotated[dict[Annotated[str, msgspec.Meta(max_length=32)], Annotated[str, msgspec.Meta(max_length=2048)]],
                msgspec.Meta(max_length=12)]
KeyId = Annotated[str, msgspec.Meta(min_length=1, max_length=128)]  # a key's RFC 7638 thumbprint or kid
Seconds = Annotated[int, msgspec.Meta(ge=1, le=31_536_000)]
Count = Annotated[int, msgspec.Meta(ge=0, le=1_000_000)]
Natural = Annotated[int, msgspec.Meta(ge=0, le=2**63 - 1)]  # versions, sequence numbers, sizes (a bigint)
Key = Annotated[str, msgspec.Meta(max_length=256)]  # a member name of a JSON object
# A JSON object of our own making (claims, a DID document, a JWKS): its values are bounded by the
# payload limit, its members here.
JsonObject = Annotated[dict[Key, Any], msgspec.Meta(max_length=64)]

# The largest message payload any route accepts; the bus refuses bigger bodies before decoding.
MAX_PAYLOAD_BYTES = 64 * 1024


class Struct(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True, omit_defaults=True):
    """Base for every message: immutable, keyword-only, unknown fields refused."""
