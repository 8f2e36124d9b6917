"""Registration: tenants, orchestrators, agents and their workload identities."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Literal

import msgspec

from contracts.types import (
    anchored,
    Count, Digest, Id, JsonObject, Jwk, Jws, KeyId, Name, Natural, Pem, Seconds, Struct, TenantId, Text, Token,
    TrustDomain, Uri,
)


class Model(Struct, kw_only=True):
    name: Name
    version: Name
    digest: Digest | None = None


class Tool(Struct, kw_only=True):
    name: Name
    version: Name | None = None
    digest: Digest | None = None


class Controller(Struct, kw_only=True):
    """Who controls the agent: a signed-in user or a service account."""

    type: Literal["user", "service"]
    id: Name
    display_name: Name | None = None


class Authority(Struct, kw_only=True):
    """What an orchestrator may spawn in its tenant. Empty lists allow nothing."""

    tiers: Annotated[list[Token], msgspec.Meta(max_length=32)] = []
    purposes: Annotated[list[Name], msgspec.Meta(max_length=64)] = []
    data_classes: Annotated[list[Token], msgspec.Meta(max_length=16)] = []
    max_lifetime_s: Seconds = 86_400
    max_live_agents: Count = 100
    spawns_per_minute: Annotated[int, msgspec.Meta(ge=1, le=1_000_000)] = 600  # rate limit (burst: a tenth)


# --- operator requests --------------------------------------------------------------------
class CreateTenant(Struct, kw_only=True):
    trust_domain: TrustDomain | None = None


class TenantRecord(Struct, kw_only=True):
    tenant: TenantId
    trust_domain: TrustDomain
    created_at: datetime


class AddOrchestrator(Struct, kw_only=True):
    name: Name
    public_jwk: Jwk
    authority: Authority = Authority()


class OrchestratorRecord(Struct, kw_only=True):
    orchestrator_id: Id
    tenant: TenantId
    spiffe_id: Uri
    name: Name
    public_jwk: Jwk
    key_id: KeyId
    authority: Authority
    status: Literal["active", "revoked"]
    created_at: datetime


# --- spawn ----------------------------------------------------------------------------------
class SpawnAgent(Struct, kw_only=True):
    """Spawn one agent. Sent by an orchestrator, as a request or as the spawn_requested event.

    `proof` is a compact JWS made with the agent's own key over the spawn id, the orchestrator id
    and the tenant (proof of possession); `spawn_id` makes the spawn idempotent.
    """

    spawn_id: Id
    public_jwk: Jwk
    proof: Jws
    purpose: Name
    model: Model
    tools: Annotated[list[Tool], msgspec.Meta(max_length=64)] = []
    tier: Token
    data_class: Token
    controller: Controller
    lifetime_s: Seconds | None = None
    parent_agent_id: Id | None = None


AgentStatus = Literal["active", "exited", "revoked", "expired"]
Serial = Annotated[str, msgspec.Meta(pattern=anchored(r"[0-9a-f]{1,40}"))]  # an X.509 serial, hex


class X509Svid(Struct, kw_only=True):
    """An X.509-SVID certifying the agent's own key (PEM), and its chain (leaf, then intermediates)."""

    spiffe_id: Uri
    cert_pem: Pem
    chain_pem: Annotated[list[Pem], msgspec.Meta(max_length=8)]
    serial: Serial
    not_before: datetime
    not_after: datetime


class AgentIdentity(Struct, kw_only=True):
    """An agent's identity as registration knows it."""

    agent_id: Id
    tenant: TenantId
    trust_domain: TrustDomain
    spiffe_id: Uri
    did: Uri
    public_jwk: Jwk
    key_id: KeyId
    orchestrator_id: Id
    parent_agent_id: Id | None = None
    spawn_id: Id
    purpose: Name
    model: Model
    tools: Annotated[list[Tool], msgspec.Meta(max_length=64)] = []
    tier: Token
    data_class: Token
    controller: Controller
    status: AgentStatus
    created_at: datetime
    expires_at: datetime
    ended_at: datetime | None = None
    end_reason: Text | None = None
    svid: X509Svid | None = None  # the latest X.509-SVID issued to the agent


class GetAgent(Struct, kw_only=True):
    agent_id: Id


class ExitAgent(Struct, kw_only=True):
    agent_id: Id
    reason: Text = "exited"


class RevokeAgent(Struct, kw_only=True):
    """The kill switch: the agent and every sub-agent below it, at once."""

    agent_id: Id
    reason: Text = "revoked"


# Agents ended by one kill switch, as a reply lists them: an event carries the same bound.
AgentIds = Annotated[list[Id], msgspec.Meta(max_length=10_000)]


class RevokedAgents(Struct, kw_only=True):
    revoked: AgentIds  # the first 10,000 (root first); `count` says how many there were
    count: Natural = 0


class ListAgents(Struct, kw_only=True):
    status: AgentStatus | None = None
    orchestrator_id: Id | None = None
    limit: Annotated[int, msgspec.Meta(ge=1, le=500)] = 100
    after: Id | None = None  # paging cursor: the last agent id of the previous page


class AgentList(Struct, kw_only=True):
    agents: Annotated[list[AgentIdentity], msgspec.Meta(max_length=500)]  # ListAgents.limit
    next_after: Id | None = None


class RenewSvid(Struct, kw_only=True):
    """A fresh X.509-SVID; `proof` is a new renewal proof made with the agent's key."""

    agent_id: Id
    proof: Jws


class IssueJwtSvid(Struct, kw_only=True):
    audience: Annotated[list[Uri], msgspec.Meta(min_length=1, max_length=8)]
    lifetime_s: Annotated[int, msgspec.Meta(ge=1, le=300)] = 300


class JwtSvid(Struct, kw_only=True):
    token: Jws
    spiffe_id: Uri
    audience: Annotated[list[Uri], msgspec.Meta(min_length=1, max_length=8)]
    expires_at: datetime


class GetBundle(Struct, kw_only=True):
    pass


class TrustBundle(Struct, kw_only=True):
    """The SPIFFE trust bundle of the tenant's trust domain (a JWKS with SPIFFE members)."""

    trust_domain: TrustDomain
    jwks: JsonObject
    sequence: Natural


class LookupSender(Struct, kw_only=True):
    """A worker asking registration about a sender its event-fed directory has not seen yet."""

    sender: Uri
    key_id: Annotated[str, msgspec.Meta(max_length=64)]


class SenderRecord(Struct, kw_only=True):
    sender: Uri
    key_id: KeyId
    kind: Literal["orchestrator", "agent"]
    subject_id: Id
    tenant: TenantId
    orchestrator_id: Id | None = None
    public_jwk: Jwk
    active: bool
    expires_at: datetime | None = None
    attributes: JsonObject = {}


class RevokeOrchestrator(Struct, kw_only=True):
    """A compromised orchestrator: its key stops working and everything it spawned is revoked."""

    orchestrator_id: Id
    reason: Text = "orchestrator compromised"


class RevokedOrchestrator(Struct, kw_only=True):
    orchestrator_id: Id
    revoked_agents: AgentIds  # the first 10,000; `count` says how many there were
    count: Natural = 0


class OrchestratorRevoked(Struct, kw_only=True):
    orchestrator_id: Id
    spiffe_id: Uri
    reason: Text
    revoked_agents: AgentIds
    by: Uri
    at: datetime


class RotateAuthorities(Struct, kw_only=True):
    reason: Text = "scheduled rotation"


# --- events -------------------------------------------------------------------------------
class TenantCreated(Struct, kw_only=True):
    tenant: TenantId
    trust_domain: TrustDomain
    at: datetime


class OrchestratorAdded(Struct, kw_only=True):
    orchestrator: OrchestratorRecord


class AgentRegistered(Struct, kw_only=True):
    spawn_id: Id
    agent: AgentIdentity


class AgentSpawnRejected(Struct, kw_only=True):
    spawn_id: Id
    orchestrator_id: Id
    code: Token
    message: Text


class AgentRenewed(Struct, kw_only=True):
    agent_id: Id
    spiffe_id: Uri
    serial: Serial
    not_after: datetime


class AuthoritiesRotated(Struct, kw_only=True):
    trust_domain: TrustDomain
    sequence: Natural
    reason: Text
    at: datetime


class AgentExited(Struct, kw_only=True):
    agent_id: Id
    spiffe_id: Uri
    did: Uri
    status: AgentStatus
    reason: Text
    by: Uri
    at: datetime
