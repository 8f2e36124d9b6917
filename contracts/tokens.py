"""Tokens: sender-constrained access tokens (RFC 9068 JWTs, DPoP- or mTLS-bound, RAR-scoped),
introspection, revocation, policy and the tenant's token configuration."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

import msgspec

from contracts.types import Id, JsonObject, Jws, Key, KeyId, Natural, Pem, Struct, Text, Token, Uri

ACCESS_TOKEN_TYPE = "urn:ietf:params:oauth:token-type:access_token"
Detail = Annotated[dict[Key, Any], msgspec.Meta(max_length=16)]
Details = Annotated[list[Detail], msgspec.Meta(min_length=1, max_length=16)]
Granted = Annotated[list[Detail], msgspec.Meta(max_length=32)]  # details in a token (capabilities.MAX_CAPABILITIES)
Sha256Hex = Annotated[str, msgspec.Meta(pattern=r"^(?:[0-9a-f]{64})$(?!\n)")]
PolicyText = Annotated[str, msgspec.Meta(max_length=256 * 1024)]
# Cedar policy ids (an @id annotation, or cedar's policyN): the contract's bound, which a policy set
# must respect to be announced and audited.
PolicyIds = Annotated[list[Annotated[str, msgspec.Meta(max_length=1024)]], msgspec.Meta(max_length=10_000)]


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
    issued_token_type: Annotated[str, msgspec.Meta(max_length=128)] = ACCESS_TOKEN_TYPE
    expires_in: Annotated[int, msgspec.Meta(ge=0, le=86_400)]
    expires_at: datetime
    jti: Id
    authorization_details: Granted


class GetJwks(Struct, kw_only=True):
    pass


class Jwks(Struct, kw_only=True):
    keys: Annotated[list[JsonObject], msgspec.Meta(max_length=64)]  # the current key and those still verifying


class Introspect(Struct, kw_only=True):
    token: Jws


class Introspection(Struct, kw_only=True):
    """RFC 7662: `active` and, when active, the token's facts, the full `act` chain included."""

    active: bool
    claims: JsonObject | None = None


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

    policies: PolicyText
    schema: PolicyText | None = None


class PolicyRecord(Struct, kw_only=True):
    version: Natural
    sha256: Sha256Hex
    policy_ids: PolicyIds
    updated_at: datetime


class GetPolicy(Struct, kw_only=True):
    pass


class PolicyDocument(Struct, kw_only=True):
    version: Natural
    policies: PolicyText
    schema: PolicyText | None = None


class TestPolicy(Struct, kw_only=True):
    """Evaluate a request the way `token.issue` would, without issuing anything."""

    agent: JsonObject                   # {"id", "tier", "purpose", "data_class", "model", "tools", "attested", ...}
    authorization_details: Details
    audience: Uri = "https://resource.example"
    lifetime_s: Annotated[int, msgspec.Meta(ge=1, le=86_400)] = 300
    delegation_depth: Annotated[int, msgspec.Meta(ge=0, le=16)] = 0
    user: JsonObject | None = None      # {"id", "groups"} for on-behalf-of requests


class PolicyDecision(Struct, kw_only=True):
    decision: Literal["allow", "deny"]
    determining_policies: PolicyIds
    errors: Annotated[list[Text], msgspec.Meta(max_length=100)] = []
    reason: Text = ""


class TokenConfig(Struct, kw_only=True):
    """A tenant's token rules. Detail types each have a JSON Schema their objects must satisfy."""

    detail_types: Annotated[dict[Token, JsonObject], msgspec.Meta(max_length=64)] = {}  # type -> JSON Schema
    audiences: Annotated[list[Uri], msgspec.Meta(max_length=256)] = []  # exact, or ending in /* for a prefix
    max_lifetime_s: Annotated[int, msgspec.Meta(ge=1, le=300)] = 300
    max_delegation_depth: Annotated[int, msgspec.Meta(ge=1, le=16)] = 5
    attestation_required_tiers: Annotated[list[Token], msgspec.Meta(max_length=32)] = []
    # Issuance rate limits (token buckets per worker replica; a burst of twice the rate): a runaway
    # agent, or a compromised orchestrator minting for all its agents, is refused with rate_limited.
    agent_tokens_per_s: Annotated[int, msgspec.Meta(ge=1, le=100_000)] = 100
    orchestrator_tokens_per_s: Annotated[int, msgspec.Meta(ge=1, le=1_000_000)] = 2_000


class SetTokenConfig(Struct, kw_only=True):
    config: TokenConfig


class GetTokenConfig(Struct, kw_only=True):
    pass


class TokenConfigRecord(Struct, kw_only=True):
    version: Natural
    config: TokenConfig


# -- events ----------------------------------------------------------------------------------------
class TokenIssued(Struct, kw_only=True):
    jti: Id
    agent_id: Id
    sub: Uri
    audience: Uri
    expires_at: datetime
    authorization_details: Granted
    determining_policies: PolicyIds
    act: JsonObject | None = None
    delegation: JsonObject | None = None
    user: Uri | None = None  # on-behalf-of: the user's subject (never the user's token)


class TokenDenied(Struct, kw_only=True):
    agent_id: Id
    sub: Uri
    audience: Uri | None = None
    code: Token
    reason: Text
    determining_policies: PolicyIds = []
    user: Uri | None = None


class TokenRevoked(Struct, kw_only=True):
    jti: Id
    sub: Uri
    exp: Natural
    reason: Text


class PolicyUpdated(Struct, kw_only=True):
    version: Natural
    sha256: Sha256Hex
    at: datetime


class TokenConfigUpdated(Struct, kw_only=True):
    version: Natural
    at: datetime


class SigningKeyRotated(Struct, kw_only=True):
    kid: KeyId
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
    algorithms: Annotated[list[Literal["RS256", "PS256", "ES256", "EdDSA"]], msgspec.Meta(max_length=4)] = msgspec.field(
        default_factory=lambda: ["RS256", "ES256", "EdDSA"])
    groups_claim: Annotated[str, msgspec.Meta(max_length=64)] = "groups"
    scope_grants: Annotated[dict[Annotated[str, msgspec.Meta(max_length=128)], Details], msgspec.Meta(max_length=64)] = {}
    group_grants: Annotated[dict[Annotated[str, msgspec.Meta(max_length=128)], Details], msgspec.Meta(max_length=64)] = {}


class AddIdp(Struct, kw_only=True):
    idp: IdentityProvider


class ListIdps(Struct, kw_only=True):
    pass


class IdpList(Struct, kw_only=True):
    idps: Annotated[list[IdentityProvider], msgspec.Meta(max_length=256)]


class RemoveIdp(Struct, kw_only=True):
    issuer: Uri


class IdpChanged(Struct, kw_only=True):
    issuer: Uri
    change: Literal["added", "removed"]
    at: datetime
