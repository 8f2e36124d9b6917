"""Checks of a signed artifact statement that the recording service and offline verifiers share."""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from shared import dsse
from shared.artifacts import PAYLOAD_TYPE, PREDICATE_TYPE, STATEMENT_TYPE, envelope_digest
from shared.errors import InvalidRequest, InvalidSignature
from shared.jose import JoseError, parse_json_object
from shared.keys import PublicKey

SIGNING_SKEW_S = 300
_HEX64 = re.compile(r"[0-9a-f]{64}")


@dataclass(frozen=True)
class SignedStatement:
    statement: dict[str, Any]
    envelope_digest: str


def check_signed_statement(envelope: Mapping[str, Any], key: PublicKey) -> SignedStatement:
    """The envelope's in-toto statement, signed by `key`, with exactly one subject named by its
    SHA-256 and our predicate. Raises InvalidSignature or InvalidRequest."""
    try:
        payload_type, payload = dsse.verify(envelope, key)
    except dsse.EnvelopeError as exc:
        if exc.reason == "bad_signature":
            raise InvalidSignature("the envelope is not signed by this agent's key") from exc
        raise InvalidRequest(f"malformed envelope: {exc}") from exc
    if payload_type != PAYLOAD_TYPE:
        raise InvalidRequest(f"payloadType must be {PAYLOAD_TYPE}")
    try:
        stmt = parse_json_object(payload)
    except JoseError as exc:
        raise InvalidRequest("the statement is not a JSON object") from exc
    subjects = stmt.get("subject")
    if stmt.get("_type") != STATEMENT_TYPE or stmt.get("predicateType") != PREDICATE_TYPE \
            or not isinstance(stmt.get("predicate"), dict) or not isinstance(subjects, list) or len(subjects) != 1:
        raise InvalidRequest("not an in-toto Statement v1 with one subject and the agent-signature predicate")
    subject = subjects[0]
    digest = subject.get("digest") if isinstance(subject, dict) else None
    if not isinstance(subject.get("name"), str) or not isinstance(digest, dict) \
            or not isinstance(digest.get("sha256"), str) or not _HEX64.fullmatch(digest["sha256"]):
        raise InvalidRequest("the statement's subject needs a name and a sha256 digest")
    return SignedStatement(statement=stmt, envelope_digest=envelope_digest(dict(envelope)))


def parse_instant(value: Any) -> datetime:
    if not isinstance(value, str):
        raise InvalidRequest("signedAt must be an RFC 3339 time")
    try:
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError as exc:
        raise InvalidRequest("signedAt must be an RFC 3339 time") from exc
    if parsed.tzinfo is None:
        raise InvalidRequest("signedAt needs a time zone")
    return parsed
