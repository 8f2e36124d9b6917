"""Reading OAuth requests: bounded form bodies (RFC 6749 appendix B) and HTTP Basic client
credentials (RFC 6749 section 2.3.1), refusing anything ambiguous.

A parameter appears at most once (RFC 6749 section 3.2), except those a specification lets repeat;
a parameter sent without a value counts as omitted (section 3.1).
"""

from __future__ import annotations

import binascii
import re
from collections.abc import Iterable
from urllib.parse import parse_qsl, unquote_plus

from starlette.requests import Request

from services.gateway.errors import OAuthError, invalid_client, invalid_request

FORM = "application/x-www-form-urlencoded"
MAX_BODY_BYTES = 64 * 1024  # an assertion, a proof's worth of tokens and 16 authorization details
MAX_FIELDS = 32
MAX_BASIC_CHARS = 1024
_BAD_ESCAPE = re.compile(rb"%(?![0-9A-Fa-f]{2})")  # parse_qsl would keep it as text


class Form:
    def __init__(self, pairs: Iterable[tuple[str, str]]) -> None:
        self._values: dict[str, list[str]] = {}
        for name, value in pairs:
            if value != "":
                self._values.setdefault(name, []).append(value)

    def __contains__(self, name: str) -> bool:
        return name in self._values

    def one(self, name: str) -> str | None:
        values = self._values.get(name)
        if values is None:
            return None
        if len(values) > 1:
            raise invalid_request(f"the {name} parameter is repeated")
        return values[0]

    def require(self, name: str) -> str:
        value = self.one(name)
        if value is None:
            raise invalid_request(f"the {name} parameter is required")
        return value

    def many(self, name: str) -> list[str]:
        return list(self._values.get(name, ()))


async def read_form(request: Request) -> Form:
    media = request.headers.get("content-type", "").split(";", 1)[0].strip().lower()
    if media != FORM:
        raise invalid_request(f"the body must be {FORM}")
    declared = request.headers.get("content-length")
    if declared is not None and (not declared.isdigit() or int(declared) > MAX_BODY_BYTES):
        raise OAuthError(413, "invalid_request", "the body is too large")
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > MAX_BODY_BYTES:
            raise OAuthError(413, "invalid_request", "the body is too large")
    if _BAD_ESCAPE.search(body):
        raise invalid_request("the body is not a well-formed form")
    try:
        pairs = parse_qsl(bytes(body).decode("ascii"), keep_blank_values=True, strict_parsing=bool(body),
                          encoding="utf-8", errors="strict", max_num_fields=MAX_FIELDS)
    except (UnicodeDecodeError, ValueError) as exc:
        raise invalid_request("the body is not a well-formed form") from exc
    return Form(pairs)


def basic_credentials(request: Request) -> tuple[str, str] | None:
    """(client_id, client_secret) from `Authorization: Basic`, each form-url-decoded; None when the
    request has no Authorization header. Anything else there is a failed authentication."""
    values = request.headers.getlist("authorization")
    if not values:
        return None
    if len(values) > 1:
        raise invalid_request("send one Authorization header")
    scheme, _, encoded = values[0].partition(" ")
    if scheme.lower() != "basic" or not encoded or len(encoded) > MAX_BASIC_CHARS:
        raise invalid_client("authenticate with HTTP Basic", basic=True)
    try:
        decoded = binascii.a2b_base64(encoded.strip().encode("ascii"), strict_mode=True).decode("utf-8")
        raw_id, colon, raw_secret = decoded.partition(":")
        client_id = unquote_plus(raw_id, errors="strict")
        secret = unquote_plus(raw_secret, errors="strict")
    except (binascii.Error, UnicodeError, ValueError) as exc:
        raise invalid_client("the Basic credentials are malformed", basic=True) from exc
    if not colon or not client_id or not secret:
        raise invalid_client("the Basic credentials are malformed", basic=True)
    return client_id, secret
