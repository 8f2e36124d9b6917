"""Tokens: sender-constrained access tokens (RFC 9068 JWTs, DPoP- or mTLS-bound, RAR-scoped),
introspection, revocation, policy and the tenant's token configuration."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

import msgspec

from contracts.types import Id, Jws, Pem, Struct, Text, Token, Uri

ACCESS_TOKEN_TYPE = "urn:ietf:params:oauth:token-type:access_token"
Detail = Annotated[dict[str, Any], msgspec.Meta(max_length=16)]
Details = Annotated[list[Detail], msgspec.Meta(min_length=1, max_length=16)]


class IssueToken(Struct, kw_only=True):
    """An agent asks for a token for one precise action. The request is signed with the agent's
    key (the bus signature is the proof of possession); the token is bound to that key unless the
    agent names another DPoP key and proves it (`dpop_proof`), or asks for mTLS binding to its
    X.509-SVID (`x509_svid_pem`)."""

    authorization_details: Details
    audience: Uri
    lifetime_s: Annotated[int, msgspec.Meta(ge=1, le=86_400)] | None = None
    dpop_proof: Jws | None = None
    x509_svid_pem: Pem | None = None
    delegation: Annotated[list[Jws], msgspec.Meta(max_length=16)] | None = None  # UCAN chain, root first
    delegation_cid: Annotated[str, msgspec.Meta(max_length=128)] | None = None  # or the leaf's CID, if recorded


class IssuedToken(Struct, kw_only=True):
    access_token: Jws
    token_type: Literal["DPoP", "N_A"]  # N_A: bound by mTLS (RFC 8705), still never a bearer token
    issued_token_type: str = ACCESS_TOKEN_TYPE
    expires_in: int
    expires_at: datetime
    jti: Id
    authorization_details: list[dict[str, Any]]


class GetJwks(Struct, kw_only=True):
    pass


class Jwks(Struct, kw_only=True):
    keys: list[dict[str, Any]]


class Introspect(Struct, kw_only=True):
    token: Jws


class Introspection(Struct, kw_only=True):
    """RFC 7662: `active` and, when active, the token's facts, the full `act` chain included."""

    active: bool
    claims: dict[str, Any] | None = None


class RevokeToken(Struct, kw_only=True):
    jti: Id
    reason: Text = "revoked"


class RevokedToken(Struct, kw_only=True):
    jti: Id
    revoked: bool


class RotateSigningKey(Struct, kw_only=True):
    reason: Text = "scheduled rotation"


# -- policy and configuration ----------------------------------------------------------------------
class SetPolicy(Struct, kw_only=True):
    """A Cedar policy set (and optionally a Cedar schema to validate it against)."""

    policies: Annotated[str, msgspec.Meta(max_length=256 * 1024)]
    schema: Annotated[str, msgspec.Meta(max_length=256 * 1024)] | None = None


class PolicyRecord(Struct, kw_only=True):
    version: int
    sha256: str
    policy_ids: list[str]
    updated_at: datetime


class GetPolicy(Struct, kw_only=True):
    pass


class PolicyDocument(Struct, kw_only=True):
    version: int
    policies: str
    schema: str | None = None


class TestPolicy(Struct, kw_only=True):
    """Evaluate a request the way `token.issue` would, without issuing anything."""

    agent: dict[str, Any]               # {"id", "tier", "purpose", "data_class", "model", "tools", "attested", ...}
    authorization_details: Details
    audience: Uri = "https://resource.example"
    lifetime_s: int = 300
    delegation_depth: int = 0
    user: dict[str, Any] | None = None  # {"id", "groups"} for on-behalf-of requests


class PolicyDecision(Struct, kw_only=True):
    decision: Literal["allow", "deny"]
    determining_policies: list[str]
    errors: list[str] = []
    reason: Text = ""


class TokenConfig(Struct, kw_only=True):
    """A tenant's token rules. Detail types each have a JSON Schema their objects must satisfy."""

    detail_types: dict[Token, dict[str, Any]] = {}
    audiences: Annotated[list[Uri], msgspec.Meta(max_length=256)] = []  # exact, or ending in /* for a prefix
    max_lifetime_s: Annotated[int, msgspec.Meta(ge=1, le=300)] = 300
    max_delegation_depth: Annotated[int, msgspec.Meta(ge=1, le=16)] = 5
    attestation_required_tiers: list[Token] = []


class SetTokenConfig(Struct, kw_only=True):
    config: TokenConfig


class GetTokenConfig(Struct, kw_only=True):
    pass


class TokenConfigRecord(Struct, kw_only=True):
    version: int
    config: TokenConfig


# -- events ----------------------------------------------------------------------------------------
class TokenIssued(Struct, kw_only=True):
    jti: Id
    agent_id: Id
    sub: Uri
    audience: Uri
    expires_at: datetime
    authorization_details: list[dict[str, Any]]
    determining_policies: list[str]
    act: dict[str, Any] | None = None
    delegation: dict[str, Any] | None = None
    user: str | None = None  # on-behalf-of: the user's subject (never the user's token)


class TokenDenied(Struct, kw_only=True):
    agent_id: Id
    sub: Uri
    audience: Uri | None = None
    code: str
    reason: Text
    determining_policies: list[str] = []
    user: str | None = None


class TokenRevoked(Struct, kw_only=True):
    jti: Id
    sub: Uri
    exp: int
    reason: Text


class PolicyUpdated(Struct, kw_only=True):
    version: int
    sha256: str
    at: datetime


class TokenConfigUpdated(Struct, kw_only=True):
    version: int
    at: datetime


class SigningKeyRotated(Struct, kw_only=True):
    kid: str
    at: datetime


# -- on behalf of a user (RFC 8693) -----------------------------------------------------------------
TOKEN_TYPE = "urn:ietf:params:oauth:token-type:"
SubjectTokenType = Literal["urn:ietf:params:oauth:token-type:id_token",
                           "urn:ietf:params:oauth:token-type:access_token",
                           "urn:ietf:params:oauth:token-type:jwt"]


class ExchangeToken(Struct, kw_only=True):
    """RFC 8693 token exchange: a user's token (or an on-behalf-of token we issued) for a token
    that names the user as `sub` and the agent as `act`, bound to the agent's key.

    The actor is `actor_agent_id` (the calling orchestrator's agent, or the calling agent's
    sub-agent) or an `actor_token` the agent signed with its own key."""

    subject_token: Jws
    subject_token_type: SubjectTokenType
    actor_agent_id: Id | None = None
    actor_token: Jws | None = None
    actor_token_type: Literal["urn:ietf:params:oauth:token-type:jwt"] | None = None
    requested_token_type: Literal["urn:ietf:params:oauth:token-type:access_token"] = ACCESS_TOKEN_TYPE
    audience: Uri
    authorization_details: Details
    lifetime_s: Annotated[int, msgspec.Meta(ge=1, le=86_400)] | None = None


class IdentityProvider(Struct, kw_only=True):
    """An OIDC provider the tenant trusts to vouch for its users, and what its users may grant."""

    issuer: Uri
    discovery_url: Uri | None = None          # /.well-known/openid-configuration; its issuer must match
    jwks_uri: Uri | None = None               # used when there is no discovery document
    audiences: Annotated[list[Uri], msgspec.Meta(min_length=1, max_length=16)]
    algorithms: list[Literal["RS256", "PS256", "ES256", "EdDSA"]] = msgspec.field(
        default_factory=lambda: ["RS256", "ES256", "EdDSA"])
    groups_claim: Annotated[str, msgspec.Meta(max_length=64)] = "groups"
    scope_grants: dict[Annotated[str, msgspec.Meta(max_length=128)], Details] = {}
    group_grants: dict[Annotated[str, msgspec.Meta(max_length=128)], Details] = {}


class AddIdp(Struct, kw_only=True):
    idp: IdentityProvider


class ListIdps(Struct, kw_only=True):
    pass


class IdpList(Struct, kw_only=True):
    idps: list[IdentityProvider]


class RemoveIdp(Struct, kw_only=True):
    issuer: Uri


class IdpChanged(Struct, kw_only=True):
    issuer: Uri
    change: Literal["added", "removed"]
    at: datetime
