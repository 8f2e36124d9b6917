"""The subject catalogue: every request route and event topic, typed.

Requests: `<root>.v1.<tenant>.<service>.<verb>`. Events: `<root>.v1.<tenant>.evt.<noun>.<verb>`.
`root` is `agentid` unless a deployment shares its NATS with another one (`AGENTID_NATS_PREFIX`).
One JetStream stream holds `<root>.v1.*.evt.>`.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Generic, TypeVar

from contracts import issuance as iss
from contracts import registration as reg

Req = TypeVar("Req")
Rep = TypeVar("Rep")
Evt = TypeVar("Evt")

VERSION = "v1"
DEFAULT_ROOT = "agentid"
SENDER_KINDS = frozenset({"service", "operator", "orchestrator", "agent"})
_TOKEN = re.compile(r"[A-Za-z0-9_-]+")


@dataclass(frozen=True, slots=True)
class Route(Generic[Req, Rep]):
    """A request-reply endpoint, answered by one service's queue group."""

    service: str
    verb: str
    request: type[Req]
    reply: type[Rep]
    senders: frozenset[str]
    summary: str

    def subject(self, tenant: str, root: str = DEFAULT_ROOT) -> str:
        return f"{root}.{VERSION}.{check_token(tenant)}.{self.service}.{self.verb}"

    def pattern(self, root: str = DEFAULT_ROOT) -> str:
        return f"{root}.{VERSION}.*.{self.service}.{self.verb}"

    def template(self, root: str = DEFAULT_ROOT) -> str:
        """Low-cardinality name for spans and documents."""
        return f"{root}.{VERSION}.{{tenant}}.{self.service}.{self.verb}"

    @property
    def name(self) -> str:
        return f"{self.service}.{self.verb}"


@dataclass(frozen=True, slots=True)
class Topic(Generic[Evt]):
    """An event, past tense, published through the owning service's outbox into JetStream."""

    noun: str
    verb: str
    event: type[Evt]
    owner: str  # the service whose outbox emits it, or "orchestrator" for spawn requests
    summary: str

    def subject(self, tenant: str, root: str = DEFAULT_ROOT) -> str:
        return f"{root}.{VERSION}.{check_token(tenant)}.evt.{self.noun}.{self.verb}"

    def pattern(self, root: str = DEFAULT_ROOT) -> str:
        return f"{root}.{VERSION}.*.evt.{self.noun}.{self.verb}"

    def template(self, root: str = DEFAULT_ROOT) -> str:
        return f"{root}.{VERSION}.{{tenant}}.evt.{self.noun}.{self.verb}"

    @property
    def name(self) -> str:
        return f"{self.noun}.{self.verb}"


def check_token(token: str) -> str:
    """A subject token from outside must not smuggle `.`, `*`, `>` or whitespace."""
    if not _TOKEN.fullmatch(token):
        raise ValueError(f"not a safe subject token: {token!r}")
    return token


def template_of(subject: str) -> str:
    """`agentid.v1.acme.evt.agent.registered` -> `agentid.v1.{tenant}.evt.agent.registered`."""
    parts = subject.split(".")
    if len(parts) > 2:
        parts[2] = "{tenant}"
    return ".".join(parts)


def topic_for(subject: str) -> Topic | None:
    """The catalogue topic of a concrete event subject."""
    parts = subject.split(".")
    if len(parts) != 6 or parts[3] != "evt":
        return None
    return _TOPICS_BY_NAME.get(f"{parts[4]}.{parts[5]}")


def events_subject(root: str = DEFAULT_ROOT) -> str:
    return f"{root}.{VERSION}.*.evt.>"


def tenant_of(subject: str, root: str = DEFAULT_ROOT) -> str:
    """The tenant token of a catalogue subject; ValueError when the subject is not ours."""
    parts = subject.split(".")
    if len(parts) < 5 or parts[0] != root or parts[1] != VERSION:
        raise ValueError(f"not an agentid subject: {subject!r}")
    return check_token(parts[2])


OPS = frozenset({"operator"})
ORCH = frozenset({"orchestrator"})
ANY_PARTY = frozenset({"operator", "orchestrator", "agent", "service"})

# --- registration ---------------------------------------------------------------------------
CREATE_TENANT = Route("registration", "create_tenant", reg.CreateTenant, reg.TenantRecord, OPS,
                      "Create a tenant and its trust domain.")
ADD_ORCHESTRATOR = Route("registration", "add_orchestrator", reg.AddOrchestrator,
                         reg.OrchestratorRecord, OPS,
                         "Register an orchestrator's public key and its spawn authority.")
SPAWN = Route("registration", "spawn", reg.SpawnAgent, reg.AgentIdentity, ORCH,
              "Spawn an agent and wait for its identity.")
GET_AGENT = Route("registration", "get", reg.GetAgent, reg.AgentIdentity, ANY_PARTY,
                  "Read one agent's identity.")
EXIT_AGENT = Route("registration", "exit", reg.ExitAgent, reg.AgentIdentity,
                   frozenset({"operator", "orchestrator", "agent"}),
                   "Retire an agent's identity (and its sub-agents').")
REVOKE_AGENT = Route("registration", "revoke", reg.RevokeAgent, reg.RevokedAgents,
                     frozenset({"operator", "orchestrator"}),
                     "Kill switch: revoke an agent and every sub-agent below it in one step.")
LIST_AGENTS = Route("registration", "list", reg.ListAgents, reg.AgentList, frozenset({"operator", "orchestrator"}),
                    "List a tenant's agents (an orchestrator sees its own).")
RENEW_SVID = Route("registration", "renew", reg.RenewSvid, reg.X509Svid, frozenset({"agent", "orchestrator"}),
                   "Issue a fresh X.509-SVID against a fresh proof of possession.")
ISSUE_JWT_SVID = Route("registration", "jwt_svid", reg.IssueJwtSvid, reg.JwtSvid, frozenset({"agent"}),
                       "Issue a JWT-SVID (ES256, 5 minutes at most) for the calling agent.")
GET_BUNDLE = Route("registration", "bundle", reg.GetBundle, reg.TrustBundle, ANY_PARTY,
                   "The tenant's SPIFFE trust bundle.")
LOOKUP_SENDER = Route("registration", "lookup_sender", reg.LookupSender, reg.SenderRecord, frozenset({"service"}),
                       "For workers: a runtime sender not yet in their event-fed directory.")
ROTATE_AUTHORITIES = Route("registration", "rotate_authorities", reg.RotateAuthorities, reg.TrustBundle, OPS,
                           "Rotate the tenant CA and JWT-SVID key; old ones stay in the bundle while needed.")

# --- issuance ---------------------------------------------------------------------------------
GET_CREDENTIAL = Route("issuance", "get", iss.GetCredential, iss.CredentialRecord, ANY_PARTY,
                       "The agent's current credential (vc+jwt).")
GET_STATUS_LIST = Route("issuance", "status_list", iss.GetStatusList, iss.StatusListRecord, ANY_PARTY,
                        "A Bitstring Status List credential by id.")
GET_ISSUER = Route("issuance", "issuer", iss.GetIssuer, iss.IssuerRecord, ANY_PARTY,
                   "The tenant's issuer DID, DID document and keys.")
REVOKE_CREDENTIAL = Route("issuance", "revoke", iss.RevokeCredential, iss.CredentialRecord, OPS,
                          "Revoke an agent's credential (flip its status bit).")
ROTATE_ISSUER_KEY = Route("issuance", "rotate_key", iss.RotateIssuerKey, iss.IssuerRecord, OPS,
                          "Rotate the tenant's issuer key; the old one keeps signing its status lists.")

# --- events -----------------------------------------------------------------------------------
SPAWN_REQUESTED = Topic("agent", "spawn_requested", reg.SpawnAgent, "orchestrator",
                        "An orchestrator asks for an agent (Nats-Msg-Id = spawn id).")
TENANT_CREATED = Topic("tenant", "created", reg.TenantCreated, "registration", "A tenant exists.")
ORCHESTRATOR_ADDED = Topic("orchestrator", "added", reg.OrchestratorAdded, "registration",
                           "An orchestrator was registered.")
AGENT_REGISTERED = Topic("agent", "registered", reg.AgentRegistered, "registration",
                         "An agent has an identity.")
AGENT_SPAWN_REJECTED = Topic("agent", "spawn_rejected", reg.AgentSpawnRejected, "registration",
                             "A spawn_requested event was refused.")
AGENT_RENEWED = Topic("agent", "renewed", reg.AgentRenewed, "registration",
                      "An agent received a fresh X.509-SVID.")
AUTHORITIES_ROTATED = Topic("authorities", "rotated", reg.AuthoritiesRotated, "registration",
                            "A tenant's CA and JWT-SVID key were rotated.")
CREDENTIAL_ISSUED = Topic("credential", "issued", iss.CredentialIssued, "issuance",
                          "An agent credential was issued.")
CREDENTIAL_REVOKED = Topic("credential", "revoked", iss.CredentialRevoked, "issuance",
                           "A credential's status bit was set.")
AGENT_EXITED = Topic("agent", "exited", reg.AgentExited, "registration",
                     "An agent's identity is retired (exited, revoked or expired).")

ROUTES: tuple[Route, ...] = (
    CREATE_TENANT, ADD_ORCHESTRATOR, SPAWN, GET_AGENT, EXIT_AGENT, REVOKE_AGENT, LIST_AGENTS, RENEW_SVID,
    ISSUE_JWT_SVID, GET_BUNDLE, ROTATE_AUTHORITIES, LOOKUP_SENDER,
    GET_CREDENTIAL, GET_STATUS_LIST, GET_ISSUER, REVOKE_CREDENTIAL, ROTATE_ISSUER_KEY,
)
TOPICS: tuple[Topic, ...] = (
    SPAWN_REQUESTED, TENANT_CREATED, ORCHESTRATOR_ADDED, AGENT_REGISTERED, AGENT_SPAWN_REJECTED,
    AGENT_RENEWED, AUTHORITIES_ROTATED, AGENT_EXITED, CREDENTIAL_ISSUED, CREDENTIAL_REVOKED,
)

_TOPICS_BY_NAME = {t.name: t for t in TOPICS}
