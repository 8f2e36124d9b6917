"""Typed errors, one class per wire error code.

Raise the class that names the fact (`ReplayError`, `AgentInactive`); the bus turns it into an
`Error{code, message, detail}` reply, and the requesting side turns that reply back into the same
class with `AgentidError.from_error`. Any other exception crossing a handler becomes `internal`
with a generic message: stack traces and library messages never cross a trust boundary.
"""

from __future__ import annotations

from typing import Any, ClassVar

from contracts.errors import RETRYABLE, Error, ErrorCode


class AgentidError(Exception):
    code: ClassVar[ErrorCode] = ErrorCode.INTERNAL
    status: ClassVar[int] = 500  # the NATS micro / HTTP-like status for this code
    _by_code: ClassVar[dict[ErrorCode, type[AgentidError]]] = {}

    def __init__(self, message: str = "", detail: dict[str, Any] | None = None) -> None:
        super().__init__(message or self.code.value)
        self.message = message or self.code.value
        self.detail = detail

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if "code" not in cls.__dict__:
            return
        if cls.code in AgentidError._by_code:
            raise TypeError(f"duplicate error code {cls.code}")
        AgentidError._by_code[cls.code] = cls

    @property
    def retryable(self) -> bool:
        return self.code in RETRYABLE

    def to_error(self) -> Error:
        return Error(code=self.code, message=self.message, detail=self.detail)

    @classmethod
    def from_error(cls, error: Error) -> AgentidError:
        return cls._by_code.get(error.code, InternalError)(error.message, error.detail)


class InvalidRequest(AgentidError):
    code, status = ErrorCode.INVALID_REQUEST, 400


class InvalidSignature(AgentidError):
    code, status = ErrorCode.INVALID_SIGNATURE, 401


class StaleMessage(AgentidError):
    code, status = ErrorCode.STALE, 401


class ReplayError(AgentidError):
    code, status = ErrorCode.REPLAY, 409


class UnknownSender(AgentidError):
    code, status = ErrorCode.UNKNOWN_SENDER, 401


class Forbidden(AgentidError):
    code, status = ErrorCode.FORBIDDEN, 403


class NotFound(AgentidError):
    code, status = ErrorCode.NOT_FOUND, 404


class Conflict(AgentidError):
    code, status = ErrorCode.CONFLICT, 409


class InvalidProof(AgentidError):
    code, status = ErrorCode.INVALID_PROOF, 401


class KeyInUse(AgentidError):
    code, status = ErrorCode.KEY_IN_USE, 409


class AuthorityExceeded(AgentidError):
    code, status = ErrorCode.AUTHORITY_EXCEEDED, 403


class QuotaExceeded(AgentidError):
    code, status = ErrorCode.QUOTA_EXCEEDED, 429


class AgentInactive(AgentidError):
    code, status = ErrorCode.AGENT_INACTIVE, 403


class PolicyDenied(AgentidError):
    code, status = ErrorCode.POLICY_DENIED, 403


class InvalidAuthorizationDetails(AgentidError):
    code, status = ErrorCode.INVALID_AUTHORIZATION_DETAILS, 400


class InvalidTarget(AgentidError):
    code, status = ErrorCode.INVALID_TARGET, 400


class InvalidGrant(AgentidError):
    code, status = ErrorCode.INVALID_GRANT, 400


class InvalidScope(AgentidError):
    code, status = ErrorCode.INVALID_SCOPE, 400


class InvalidClient(AgentidError):
    code, status = ErrorCode.INVALID_CLIENT, 401


class DelegationInvalid(AgentidError):
    code, status = ErrorCode.DELEGATION_INVALID, 403


class AttestationRequired(AgentidError):
    code, status = ErrorCode.ATTESTATION_REQUIRED, 403


class AttestationFailed(AgentidError):
    code, status = ErrorCode.ATTESTATION_FAILED, 403


class RateLimited(AgentidError):
    code, status = ErrorCode.RATE_LIMITED, 429


class Unavailable(AgentidError):
    code, status = ErrorCode.UNAVAILABLE, 503


class InternalError(AgentidError):
    code, status = ErrorCode.INTERNAL, 500
