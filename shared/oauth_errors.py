"""Why a token or DPoP proof was refused: typed errors with their OAuth codes and HTTP statuses.

Our exception hierarchy:

    VerificationError                 reason: a short stable code for logs, metrics and tests
    ├── MissingCredentialsError       401, no `error` (RFC 6750 section 3.1: a bare challenge)
    ├── InvalidTokenError             401 invalid_token (signature, time, iss, aud, typ, key, binding, revoked)
    ├── InvalidDpopProofError         401 invalid_dpop_proof (RFC 9449 section 7.1)
    ├── UseDpopNonceError             401 use_dpop_nonce, with the nonce for the `DPoP-Nonce` header
    ├── InsufficientScopeError        403 insufficient_scope (the operation is outside the details)
    ├── InvalidRequestError           400 invalid_request (two schemes, several DPoP headers, ...)
    └── TemporarilyUnavailableError   503 temporarily_unavailable (replay cache or revocation feed
                                      unreachable: we fail closed, and the client may retry)

`status` is the resource server's status. An authorization server's token endpoint answers DPoP
errors with 400 (RFC 9449 section 5) and maps the codes itself.

`description` is a fixed sentence chosen where the error is raised: it is sent to the client, so it
never quotes a token, a proof, a claim value or any other input.
"""

from __future__ import annotations

from typing import ClassVar


class VerificationError(Exception):
    code: ClassVar[str] = "invalid_request"
    status: ClassVar[int] = 400

    def __init__(self, reason: str, description: str) -> None:
        super().__init__(f"{self.code or 'no_credentials'}/{reason}: {description}")
        self.reason = reason
        self.description = description


class MissingCredentialsError(VerificationError):
    code, status = "", 401


class InvalidTokenError(VerificationError):
    code, status = "invalid_token", 401


class InvalidDpopProofError(VerificationError):
    code, status = "invalid_dpop_proof", 401


class UseDpopNonceError(VerificationError):
    code, status = "use_dpop_nonce", 401

    def __init__(self, reason: str, description: str, *, nonce: str) -> None:
        super().__init__(reason, description)
        self.nonce = nonce


class InsufficientScopeError(VerificationError):
    code, status = "insufficient_scope", 403


class InvalidRequestError(VerificationError):
    code, status = "invalid_request", 400


class TemporarilyUnavailableError(VerificationError):
    code, status = "temporarily_unavailable", 503


__all__ = [
    "InsufficientScopeError",
    "InvalidDpopProofError",
    "InvalidRequestError",
    "InvalidTokenError",
    "MissingCredentialsError",
    "TemporarilyUnavailableError",
    "UseDpopNonceError",
    "VerificationError",
]
