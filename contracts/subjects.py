"""The subject catalogue: every request route and event topic, typed.

Requests: `<root>.v1.<tenant>.<service>.<verb>`. Events: `<root>.v1.<tenant>.evt.<noun>.<verb>`.
`root` is `agentid` unless a deployment shares its NATS with another one (`AGENTID_NATS_PREFIX`).
One JetStream stream holds `<root>.v1.*.evt.>`.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Generic, TypeVar

from contracts import artifacts as art
from contracts import attestation as att
from contracts import audit as au
from contracts import delegation as dlg
from contracts import gateway as gw
from contracts import issuance as iss
from contracts import registration as reg
from contracts import tokens as tok

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
REVOKE_ORCHESTRATOR = Route("registration", "revoke_orchestrator", reg.RevokeOrchestrator, reg.RevokedOrchestrator,
                             OPS, "A compromised orchestrator: its key refused, every agent it spawned revoked.")
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

RECORD_ARTIFACT = Route("issuance", "record_artifact", art.RecordArtifact, art.ArtifactRecorded, frozenset({"agent"}),
                        "Log an agent's signed statement about an artifact (checked against its credential).")

# --- attestation ------------------------------------------------------------------------------
AGENT_ONLY = frozenset({"agent"})
ATTESTATION_CHALLENGE = Route("attestation", "challenge", att.RequestChallenge, att.Challenge, AGENT_ONLY,
                              "A fresh single-use nonce bound to the calling agent and its key.")
ATTESTATION_VERIFY = Route("attestation", "verify", att.VerifyEvidence, att.AttestationResult, AGENT_ONLY,
                           "Appraise the calling agent's evidence (TEE, bound to a challenge; or provenance).")
ATTESTATION_POSTURE = Route("attestation", "posture", att.GetPosture, att.Posture, ANY_PARTY,
                            "An agent's current attested postures and their expiry.")
SET_REFERENCE_VALUES = Route("attestation", "reference_set", att.SetReferenceValues, att.ReferenceValuesRecord,
                             OPS, "Replace the tenant's attestation reference values (a new version).")
LIST_REFERENCE_VALUES = Route("attestation", "reference_list", att.ListReferenceValues, att.ReferenceValuesList,
                              OPS, "The tenant's current reference values and their version history.")

# --- audit --------------------------------------------------------------------------------------
# Checkpoints and consistency proofs hold only hashes and signatures: any party may read them.
# Inclusion proofs and queries return entries, so orchestrators and agents see only their own.
AUDIT_READERS = frozenset({"operator", "orchestrator", "agent"})
AUDIT_CHECKPOINT = Route("audit", "checkpoint", au.GetCheckpoint, au.CheckpointRecord, ANY_PARTY,
                         "The tenant log's latest signed checkpoint (or one by size) and its public key.")
AUDIT_CHECKPOINTS = Route("audit", "checkpoints", au.ListCheckpoints, au.CheckpointList, ANY_PARTY,
                          "Every signed checkpoint of the tenant log, by size (paged).")
AUDIT_PROOF = Route("audit", "proof", au.GetInclusionProof, au.InclusionProof, AUDIT_READERS,
                    "An entry and its RFC 9162 inclusion proof against a signed checkpoint.")
AUDIT_CONSISTENCY = Route("audit", "consistency", au.GetConsistencyProof, au.ConsistencyProof, ANY_PARTY,
                          "An RFC 9162 consistency proof between two signed checkpoints.")
AUDIT_QUERY = Route("audit", "query", au.QueryLog, au.QueryPage, AUDIT_READERS,
                    "Entries by agent, user, trace id, event type and time range (paged; "
                    "an orchestrator or agent sees only its own).")
AUDIT_ROTATE_KEY = Route("audit", "rotate_key", au.RotateLogKey, au.CheckpointRecord, OPS,
                         "Give the tenant's log a new key; the handover checkpoint is signed by both keys.")

# --- tokens -----------------------------------------------------------------------------------
TOKEN_ISSUE = Route("token", "issue", tok.IssueToken, tok.IssuedToken, frozenset({"agent"}),
                    "A DPoP-bound, RAR-scoped access token for the calling agent (policy decides).")
TOKEN_JWKS = Route("token", "jwks", tok.GetJwks, tok.Jwks, ANY_PARTY, "The tenant's token signing keys.")
TOKEN_INTROSPECT = Route("token", "introspect", tok.Introspect, tok.Introspection,
                         frozenset({"operator", "service", "orchestrator"}),
                         "RFC 7662 introspection, with the full act chain and delegation path.")
TOKEN_REVOKE = Route("token", "revoke", tok.RevokeToken, tok.RevokedToken,
                     frozenset({"operator", "orchestrator", "agent"}), "Revoke one token by its jti.")
TOKEN_ROTATE_KEY = Route("token", "rotate_key", tok.RotateSigningKey, tok.Jwks, OPS,
                         "Rotate the tenant's token signing key (the old one stays in the JWKS while needed).")
POLICY_SET = Route("token", "policy_set", tok.SetPolicy, tok.PolicyRecord, OPS,
                   "Replace the tenant's Cedar policy set (validated first).")
POLICY_GET = Route("token", "policy_get", tok.GetPolicy, tok.PolicyDocument, OPS, "The tenant's current policy set.")
POLICY_TEST = Route("token", "policy_test", tok.TestPolicy, tok.PolicyDecision, OPS,
                    "Evaluate a request against the tenant's policy without issuing.")
TOKEN_CONFIG_SET = Route("token", "config_set", tok.SetTokenConfig, tok.TokenConfigRecord, OPS,
                         "Replace the tenant's token configuration (detail types, audiences, limits).")
TOKEN_EXCHANGE = Route("token", "exchange", tok.ExchangeToken, tok.IssuedToken, frozenset({"orchestrator", "agent"}),
                       "RFC 8693: a user's token for an on-behalf-of token naming the user (sub) and the agent (act).")
IDP_ADD = Route("token", "idp_add", tok.AddIdp, tok.IdpList, OPS, "Trust an OIDC provider for the tenant's users.")
IDP_LIST = Route("token", "idp_list", tok.ListIdps, tok.IdpList, OPS, "The tenant's trusted identity providers.")
IDP_REMOVE = Route("token", "idp_remove", tok.RemoveIdp, tok.IdpList, OPS, "Stop trusting an identity provider.")
TOKEN_CONFIG_GET = Route("token", "config_get", tok.GetTokenConfig, tok.TokenConfigRecord, ANY_PARTY,
                         "The tenant's token configuration.")

# --- the HTTP edge (the gateway relays; the token worker authenticates the client itself) -------
GATEWAY = frozenset({"service"})  # the handlers admit only the gateway service
TOKEN_GRANT = Route("token", "grant", gw.TokenGrant, tok.IssuedToken, GATEWAY,
                    "The HTTP token endpoint, relayed: client_credentials or token exchange, the client "
                    "authenticated by its private_key_jwt assertion, bound to the DPoP key the gateway checked.")
TOKEN_RS_INTROSPECT = Route("token", "rs_introspect", gw.ResourceServerCall, tok.Introspection, GATEWAY,
                            "RFC 7662 introspection for a registered resource server (HTTP Basic credentials).")
TOKEN_RS_REVOKE = Route("token", "rs_revoke", gw.ResourceServerCall, gw.Revocation, GATEWAY,
                        "RFC 7009 revocation by a registered resource server (HTTP Basic credentials).")
RS_ADD = Route("token", "rs_add", gw.AddResourceServer, gw.ResourceServerCredentials, OPS,
               "Register a resource server for introspection and revocation; its secret is shown once.")
RS_LIST = Route("token", "rs_list", gw.ListResourceServers, gw.ResourceServerList, OPS,
                "The tenant's registered resource servers.")
RS_REMOVE = Route("token", "rs_remove", gw.RemoveResourceServer, gw.ResourceServerList, OPS,
                  "Remove a resource server: its credentials stop working at once.")

# --- events -----------------------------------------------------------------------------------
SPAWN_REQUESTED = Topic("agent", "spawn_requested", reg.SpawnAgent, "orchestrator",
                        "An orchestrator asks for an agent (Nats-Msg-Id = spawn id).")
TENANT_CREATED = Topic("tenant", "created", reg.TenantCreated, "registration", "A tenant exists.")
ORCHESTRATOR_ADDED = Topic("orchestrator", "added", reg.OrchestratorAdded, "registration",
                           "An orchestrator was registered.")
ORCHESTRATOR_REVOKED = Topic("orchestrator", "revoked", reg.OrchestratorRevoked, "registration",
                             "An orchestrator's key is no longer accepted; its agents were revoked with it.")
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
TOKEN_ISSUED = Topic("token", "issued", tok.TokenIssued, "token", "A token was issued, with the policies that allowed it.")
TOKEN_DENIED = Topic("token", "denied", tok.TokenDenied, "token", "A token request was refused, with the reason.")
TOKEN_REVOKED = Topic("token", "revoked", tok.TokenRevoked, "token", "A token was revoked before its expiry.")
POLICY_UPDATED = Topic("policy", "updated", tok.PolicyUpdated, "token", "A tenant's policy set changed.")
TOKEN_CONFIG_UPDATED = Topic("token_config", "updated", tok.TokenConfigUpdated, "token",
                             "A tenant's token configuration changed.")
IDP_CHANGED = Topic("idp", "changed", tok.IdpChanged, "token", "A tenant's trusted identity providers changed.")
RESOURCE_SERVER_CHANGED = Topic("resource_server", "changed", gw.ResourceServerChanged, "token",
                                "A resource server was registered for introspection and revocation, or removed.")
SIGNING_KEY_ROTATED = Topic("signing_key", "rotated", tok.SigningKeyRotated, "token",
                            "A tenant's token signing key was rotated.")
ARTIFACT_SIGNED = Topic("artifact", "signed", art.ArtifactSigned, "issuance",
                        "An agent signed an artifact; its log entry is what makes the signature verifiable later.")
AGENT_EXITED = Topic("agent", "exited", reg.AgentExited, "registration",
                     "An agent's identity is retired (exited, revoked or expired).")

# --- delegation -------------------------------------------------------------------------------
DELEGATION_GRANT = Route("delegation", "grant", dlg.GrantDelegation, dlg.DelegationRecord,
                         frozenset({"agent", "operator"}),
                         "Check a UCAN chain (every link) and record its last link, signed by the calling agent.")
DELEGATION_CHECK = Route("delegation", "check", dlg.CheckChain, dlg.ChainCheck, frozenset({"service", "agent"}),
                         "Is a chain (JWTs, or a recorded leaf CID) valid now for its holder: signatures, time, "
                         "attenuation, depth, root, revocation, agents active.")
DELEGATION_CHAIN = Route("delegation", "chain", dlg.GetChain, dlg.DelegationRecord,
                         frozenset({"operator", "service", "agent"}),
                         "A recorded link and its chain, root first (an agent sees chains it is on).")
DELEGATION_ROOT = Route("delegation", "root", dlg.GetRoot, dlg.DelegationRecord, frozenset({"agent", "operator"}),
                        "An agent's root UCAN from the tenant authority (its base capabilities).")
DELEGATION_REVOKE = Route("delegation", "revoke", dlg.RevokeDelegation, dlg.DelegationRevocation, ANY_PARTY,
                          "Revoke a link and every link below it: a UCAN revocation record by an issuer on the "
                          "chain, or an operator.")
DELEGATION_REVOCATIONS = Route("delegation", "revocations", dlg.ListRevocations, dlg.RevocationList, ANY_PARTY,
                               "Revoked CIDs and their signed UCAN revocation records, since a cursor.")
DELEGATION_GRAPH = Route("delegation", "graph", dlg.GetGraph, dlg.DelegationGraph, frozenset({"operator", "service"}),
                         "The tenant's delegation graph, or the part through one agent.")
DELEGATION_CONFIG_SET = Route("delegation", "config_set", dlg.SetDelegationConfig, dlg.DelegationConfigRecord, OPS,
                              "Replace the tenant's delegation rules: base capabilities per tier/purpose, max depth.")
DELEGATION_CONFIG_GET = Route("delegation", "config_get", dlg.GetDelegationConfig, dlg.DelegationConfigRecord,
                              frozenset({"operator", "service"}), "The tenant's delegation rules.")
DELEGATION_AUTHORITY = Route("delegation", "authority", dlg.GetAuthority, dlg.AuthorityRecord, ANY_PARTY,
                             "The tenant's delegation authority DID and every root DID to trust.")
DELEGATION_ROTATE_AUTHORITY = Route("delegation", "rotate_authority", dlg.RotateAuthority, dlg.AuthorityRecord, OPS,
                                    "Rotate the tenant authority key; roots it issued stay valid until they expire.")
DELEGATION_GRANTED = Topic("delegation", "granted", dlg.DelegationGranted, "delegation",
                           "A delegation link (or an agent's root) was recorded.")
DELEGATION_REVOKED = Topic("delegation", "revoked", dlg.DelegationRevoked, "delegation",
                           "Links were revoked: every CID that became invalid, descendants included.")
DELEGATION_CONFIG_UPDATED = Topic("delegation_config", "updated", dlg.DelegationConfigUpdated, "delegation",
                                  "A tenant's delegation rules (base capabilities, max depth) changed.")

ROUTES: tuple[Route, ...] = (
    CREATE_TENANT, ADD_ORCHESTRATOR, SPAWN, GET_AGENT, EXIT_AGENT, REVOKE_AGENT, LIST_AGENTS, RENEW_SVID,
    ISSUE_JWT_SVID, GET_BUNDLE, ROTATE_AUTHORITIES, LOOKUP_SENDER, REVOKE_ORCHESTRATOR,
    TOKEN_ISSUE, TOKEN_JWKS, TOKEN_INTROSPECT, TOKEN_REVOKE, TOKEN_ROTATE_KEY, POLICY_SET, POLICY_GET, POLICY_TEST,
    TOKEN_CONFIG_SET, TOKEN_CONFIG_GET, TOKEN_EXCHANGE, IDP_ADD, IDP_LIST, IDP_REMOVE,
    TOKEN_GRANT, TOKEN_RS_INTROSPECT, TOKEN_RS_REVOKE, RS_ADD, RS_LIST, RS_REMOVE,
    GET_CREDENTIAL, GET_STATUS_LIST, GET_ISSUER, REVOKE_CREDENTIAL, ROTATE_ISSUER_KEY, RECORD_ARTIFACT,
    ATTESTATION_CHALLENGE, ATTESTATION_VERIFY, ATTESTATION_POSTURE, SET_REFERENCE_VALUES, LIST_REFERENCE_VALUES,
    AUDIT_CHECKPOINT, AUDIT_CHECKPOINTS, AUDIT_PROOF, AUDIT_CONSISTENCY, AUDIT_QUERY, AUDIT_ROTATE_KEY,
    DELEGATION_GRANT, DELEGATION_CHECK, DELEGATION_CHAIN, DELEGATION_ROOT, DELEGATION_REVOKE, DELEGATION_REVOCATIONS,
    DELEGATION_GRAPH, DELEGATION_CONFIG_SET, DELEGATION_CONFIG_GET, DELEGATION_AUTHORITY, DELEGATION_ROTATE_AUTHORITY,
)
ATTESTATION_VERIFIED = Topic("attestation", "verified", att.AttestationVerified, "attestation",
                             "An agent holds an attested posture (tee or supply_chain) until expires_at.")
ATTESTATION_FAILED = Topic("attestation", "failed", att.AttestationFailed, "attestation",
                           "An appraisal was refused, with its reason; may end the agent's posture.")
REFERENCE_VALUES_UPDATED = Topic("reference_values", "updated", att.ReferenceValuesUpdated, "attestation",
                                 "A tenant's attestation reference values have a new version.")

TOPICS: tuple[Topic, ...] = (
    SPAWN_REQUESTED, TENANT_CREATED, ORCHESTRATOR_ADDED, ORCHESTRATOR_REVOKED, AGENT_REGISTERED, AGENT_SPAWN_REJECTED,
    AGENT_RENEWED, AUTHORITIES_ROTATED, AGENT_EXITED, CREDENTIAL_ISSUED, CREDENTIAL_REVOKED, ARTIFACT_SIGNED,
    TOKEN_ISSUED, TOKEN_DENIED, TOKEN_REVOKED, POLICY_UPDATED, TOKEN_CONFIG_UPDATED, SIGNING_KEY_ROTATED, IDP_CHANGED,
    RESOURCE_SERVER_CHANGED,
    ATTESTATION_VERIFIED, ATTESTATION_FAILED, REFERENCE_VALUES_UPDATED,
    DELEGATION_GRANTED, DELEGATION_REVOKED, DELEGATION_CONFIG_UPDATED,
)

_TOPICS_BY_NAME = {t.name: t for t in TOPICS}
