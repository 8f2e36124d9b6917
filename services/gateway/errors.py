"""OAuth error responses (RFC 6749 section 5.2, RFC 9449 section 5, RFC 7662, RFC 7009) and how the
bus's typed errors become them.

Descriptions are fixed sentences, or the token worker's own messages (sentences we wrote, never
quoting a token, an assertion or a proof), cut to the characters RFC 6749 allows in
`error_description`.
"""

from __future__ import annotations

import math
import re
from typing import Any

from starlette.responses import JSONResponse

from contracts.errors import ErrorCode
from shared.errors import AgentidError
from shared.oauth_errors import (
    InvalidDpopProofError,
    TemporarilyUnavailableError,
    UseDpopNonceError,
    VerificationError,
)

NO_STORE = {"Cache-Control": "no-store", "Pragma": "no-cache"}
BASIC_CHALLENGE = 'Basic realm="agentid", charset="UTF-8"'
_NOT_DESCRIPTION = re.compile(r'[^\x20-\x21\x23-\x5b\x5d-\x7e]')  # RFC 6749 section 5.2 NQSCHAR


class OAuthError(Exception):
    """An error response: `error` code, HTTP status, a fixed description, extra headers."""

    def __init__(self, status: int, error: str, description: str, headers: dict[str, str] | None = None) -> None:
        super().__init__(f"{status} {error}: {description}")
        self.status = status
        self.error = error
        self.description = description
        self.headers = headers or {}

    def response(self) -> JSONResponse:
        body: dict[str, Any] = {"error": self.error}
        if self.description:
            body["error_description"] = _NOT_DESCRIPTION.sub(" ", self.description)[:300]
        return JSONResponse(body, status_code=self.status, headers={**NO_STORE, **self.headers})


def invalid_request(description: str) -> OAuthError:
    return OAuthError(400, "invalid_request", description)


def invalid_client(description: str = "client authentication failed", *, basic: bool = False) -> OAuthError:
    """401 (RFC 6749 section 5.2); with the Basic challenge where Basic is the expected scheme."""
    return OAuthError(401, "invalid_client", description, {"WWW-Authenticate": BASIC_CHALLENGE} if basic else None)


def from_dpop(exc: VerificationError) -> OAuthError:
    """A DPoP check failure at the token endpoint: always 400 at an authorization server (RFC 9449
    section 5), `use_dpop_nonce` with a fresh `DPoP-Nonce`."""
    if isinstance(exc, UseDpopNonceError):
        return OAuthError(400, "use_dpop_nonce", exc.description, {"DPoP-Nonce": exc.nonce})
    if isinstance(exc, TemporarilyUnavailableError):
        return OAuthError(503, "temporarily_unavailable", exc.description, {"Retry-After": "1"})
    if isinstance(exc, InvalidDpopProofError):
        return OAuthError(400, "invalid_dpop_proof", exc.description)
    return OAuthError(400, exc.code or "invalid_request", exc.description)


# The token worker's codes at the token endpoint. A token exchange refuses an unacceptable subject
# or actor token with `invalid_request` (RFC 8693 section 2.2.2); elsewhere that is `invalid_grant`.
_GRANT_ERRORS: dict[ErrorCode, tuple[int, str]] = {
    ErrorCode.INVALID_CLIENT: (401, "invalid_client"),
    ErrorCode.INVALID_REQUEST: (400, "invalid_request"),
    ErrorCode.INVALID_AUTHORIZATION_DETAILS: (400, "invalid_authorization_details"),
    ErrorCode.INVALID_TARGET: (400, "invalid_target"),
    ErrorCode.INVALID_SCOPE: (400, "invalid_scope"),
    ErrorCode.POLICY_DENIED: (400, "invalid_scope"),
    ErrorCode.DELEGATION_INVALID: (400, "invalid_scope"),
    ErrorCode.ATTESTATION_REQUIRED: (400, "invalid_scope"),
    ErrorCode.INVALID_GRANT: (400, "invalid_grant"),
    ErrorCode.AGENT_INACTIVE: (400, "invalid_grant"),
    ErrorCode.NOT_FOUND: (400, "invalid_grant"),
    ErrorCode.FORBIDDEN: (400, "unauthorized_client"),
    ErrorCode.INVALID_PROOF: (400, "invalid_dpop_proof"),
    ErrorCode.UNAVAILABLE: (503, "temporarily_unavailable"),
    ErrorCode.RATE_LIMITED: (429, "temporarily_unavailable"),
}
_EXCHANGE_SUBJECT_ERRORS = frozenset({ErrorCode.INVALID_GRANT, ErrorCode.AGENT_INACTIVE, ErrorCode.NOT_FOUND})


def from_grant(exc: AgentidError, *, exchange: bool) -> OAuthError:
    status, error = _GRANT_ERRORS.get(exc.code, (500, "server_error"))
    if exchange and exc.code in _EXCHANGE_SUBJECT_ERRORS:
        status, error = 400, "invalid_request"
    if exc.code == ErrorCode.INVALID_CLIENT:
        return invalid_client()
    if status == 429:
        return OAuthError(status, error, exc.message, {"Retry-After": _retry_after(exc)})
    if status == 503:
        return OAuthError(status, error, "the service is unavailable; retry shortly", {"Retry-After": "1"})
    if status == 500:
        return OAuthError(status, error, "internal error")
    return OAuthError(status, error, exc.message)


def _retry_after(exc: AgentidError) -> str:
    """Whole seconds (RFC 9110 section 10.2.3), from the limiter's hint; at least one."""
    hint = (exc.detail or {}).get("retry_after_s", 1)
    return str(max(1, math.ceil(hint))) if isinstance(hint, int | float) else "1"


def from_resource_server_call(exc: AgentidError) -> OAuthError:
    """Introspection and revocation: only the resource server's authentication can fail."""
    if exc.code == ErrorCode.INVALID_CLIENT:
        return invalid_client(basic=True)
    if exc.code in (ErrorCode.UNAVAILABLE, ErrorCode.RATE_LIMITED):
        return OAuthError(503, "temporarily_unavailable", "the service is unavailable; retry shortly",
                          {"Retry-After": "1"})
    if exc.code == ErrorCode.INVALID_REQUEST:
        return invalid_request("the request is malformed")
    return OAuthError(500, "server_error", "internal error")
