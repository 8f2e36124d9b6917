"""Error replies and their stable codes.

A reply on the bus is either the route's result struct or an `Error`. Codes never change meaning;
new codes may be added. `UNAVAILABLE` and `RATE_LIMITED` are the only ones a client should retry.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Annotated, Any

import msgspec


class ErrorCode(StrEnum):
    INVALID_REQUEST = "invalid_request"          # malformed, unknown field, out of bounds
    INVALID_SIGNATURE = "invalid_signature"      # missing or bad message signature
    STALE = "stale"                              # timestamp outside the accepted window
    REPLAY = "replay"                            # message id already seen
    UNKNOWN_SENDER = "unknown_sender"            # no key registered for the named sender
    FORBIDDEN = "forbidden"                      # sender may not do this (or not in this tenant)
    NOT_FOUND = "not_found"
    CONFLICT = "conflict"
    INVALID_PROOF = "invalid_proof"              # proof of possession missing or wrong
    KEY_IN_USE = "key_in_use"                    # key already bound to a live agent
    AUTHORITY_EXCEEDED = "authority_exceeded"    # orchestrator may not spawn this tier/purpose/class
    QUOTA_EXCEEDED = "quota_exceeded"            # too many live agents for this orchestrator
    AGENT_INACTIVE = "agent_inactive"            # exited, revoked or expired
    POLICY_DENIED = "policy_denied"
    INVALID_AUTHORIZATION_DETAILS = "invalid_authorization_details"
    INVALID_TARGET = "invalid_target"            # audience/resource not allowed (RFC 8693)
    INVALID_GRANT = "invalid_grant"              # subject/actor token unacceptable
    INVALID_SCOPE = "invalid_scope"              # beyond what the resource owner (the user) granted
    INVALID_CLIENT = "invalid_client"            # OAuth client authentication failed (HTTP token endpoint)
    DELEGATION_INVALID = "delegation_invalid"
    ATTESTATION_REQUIRED = "attestation_required"
    ATTESTATION_FAILED = "attestation_failed"
    RATE_LIMITED = "rate_limited"
    UNAVAILABLE = "unavailable"                  # a dependency is down; retry later
    INTERNAL = "internal"


RETRYABLE = frozenset({ErrorCode.UNAVAILABLE, ErrorCode.RATE_LIMITED})


class Error(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True, omit_defaults=True):
    """The body of every error reply."""

    code: ErrorCode
    message: Annotated[str, msgspec.Meta(max_length=1024)]
    detail: Annotated[dict[Annotated[str, msgspec.Meta(max_length=64)], Any], msgspec.Meta(max_length=16)] | None = None
