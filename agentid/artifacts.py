"""Agent-signed artifacts: invoices, reports, decisions anyone can verify later, offline.

    bundle = await sign(agent, report_bytes, "application/json", name="decision-L-1001.json",
                        purpose="loan decision")           # waits until the log proves it
    result = verify(bundle, report_bytes, Trust.load("trust.json"))

A bundle holds the DSSE envelope over an in-toto Statement v1 (the artifact's SHA-256 and our
agent-signature predicate), signed with the agent's own key; the agent's credential and its status
list as they were when the signature was logged; and the transparency-log entry for the signature,
its RFC 9162 inclusion proof and the signed checkpoint. `verify` needs no network: it checks the
digest, the signature (key from the agent's did:key), the credential (trusted issuer, valid and not
revoked at signing time), and that the signature was logged, by a trusted log, when it claims.
"""

from __future__ import annotations

import asyncio
import json
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

from agentid.audit import AuditClient, AuditProofError, open_with_keys, verify_inclusion
from contracts import artifacts as art
from contracts import subjects as sub
from shared import artifacts, jose
from shared.artifacts_check import SIGNING_SKEW_S, check_signed_statement, parse_instant
from shared.errors import AgentidError, NotFound, Unavailable
from shared.keys import InvalidKey, PublicKey
from shared.vc import CredentialError, DidResolver, iso, verify_credential

if TYPE_CHECKING:
    from agentid.agent import Agent

BUNDLE_MEDIA_TYPE = "application/vnd.agentid.artifact-bundle+json"


class ArtifactError(ValueError):
    """Why a bundle does not verify; `reason` is stable."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason


@dataclass
class ArtifactBundle:
    dsse_envelope: dict[str, Any]
    statement: dict[str, Any]
    credential_vc_jwt: str
    status_list_vc_jwt: str
    event_msg_id: str
    leaf: str | None = None
    inclusion_proof: dict[str, Any] | None = None   # {"leaf_index", "tree_size", "hashes"}
    checkpoint: str | None = None
    log_public_key: str | None = None
    media_type: str = BUNDLE_MEDIA_TYPE
    _client: AuditClient | None = field(default=None, repr=False, compare=False)

    @property
    def logged(self) -> bool:
        return self.inclusion_proof is not None

    def to_json(self) -> dict[str, Any]:
        return {name: getattr(self, name) for name in self.__dataclass_fields__ if name != "_client"}

    @classmethod
    def from_json(cls, doc: dict[str, Any]) -> ArtifactBundle:
        known = {k: doc[k] for k in cls.__dataclass_fields__ if k in doc and k != "_client"}
        return cls(**known)

    async def wait_logged(self, *, timeout: float = 30.0, interval: float = 0.1) -> ArtifactBundle:
        """Complete the bundle with the log entry, its inclusion proof and the signed checkpoint."""
        if self.logged:
            return self
        if self._client is None:
            raise Unavailable("this bundle has no connection to the log")
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        record = await self._client.checkpoint()
        while True:
            seq = await self._find()
            if seq is not None:
                try:
                    proof = await self._client.proof(seq)
                    self.leaf, self.checkpoint = proof.leaf, proof.checkpoint
                    self.inclusion_proof = {"leaf_index": proof.leaf_index, "tree_size": proof.tree_size,
                                            "hashes": list(proof.hashes)}
                    self.log_public_key = record.log_public_key
                    return self
                except NotFound:
                    pass  # logged, not yet under a checkpoint
            if loop.time() > deadline:
                raise Unavailable("the signature was not logged in time")
            await asyncio.sleep(interval)

    async def _find(self) -> int | None:
        assert self._client is not None
        agent_id = self.statement["predicate"]["agent"]["agentId"]
        async for entry in self._client.entries(agent_id=agent_id, event="artifact.signed"):
            if json.loads(entry.leaf).get("msg_id") == self.event_msg_id:
                return entry.seq
        return None


async def sign(agent: Agent, content: bytes, media_type: str, *, name: str, purpose: str,
               on_behalf_of: str | None = None, wait_logged: bool = True, timeout: float = 30.0) -> ArtifactBundle:
    """Sign `content` as `agent` (its own key), have the signature logged, return the bundle.

    `on_behalf_of`: the on-behalf-of access token the agent acted under; the statement then names
    the user (and the delegation path) it carries."""
    credential = await agent.credential()
    user = act = delegation = None
    if on_behalf_of is not None:
        claims = jose.split(on_behalf_of)[1]
        user, act, delegation = claims.get("sub"), claims.get("act"), claims.get("delegation")
    predicate = {
        "agent": {"agentId": agent.agent_id, "spiffeId": agent.spiffe_id, "did": agent.did},
        "credentialId": credential.credential_id,
        "onBehalfOf": user, "act": act, "delegation": delegation,
        "purpose": purpose, "mediaType": media_type, "signedAt": iso(datetime.now(UTC)),
    }
    stmt = artifacts.statement(name=name, digest_hex=artifacts.sha256_hex(content), predicate=predicate)
    envelope = artifacts.envelope(agent.key.private, stmt)
    recorded = await agent.bus.request(sub.RECORD_ARTIFACT, agent.tenant,
                                       art.RecordArtifact(envelope=envelope, on_behalf_of=on_behalf_of))
    bundle = ArtifactBundle(dsse_envelope=envelope, statement=stmt, credential_vc_jwt=recorded.credential_vc_jwt,
                            status_list_vc_jwt=recorded.status_list_vc_jwt, event_msg_id=recorded.event_msg_id,
                            _client=AuditClient(agent.bus, agent.tenant))
    return await bundle.wait_logged(timeout=timeout) if wait_logged else bundle


@dataclass(frozen=True)
class Trust:
    """Whom an offline verifier trusts: credential issuers (DIDs; did:web ones with their documents)
    and transparency-log keys (C2SP verifier keys)."""

    issuers: frozenset[str]
    log_keys: tuple[str, ...]
    issuer_documents: dict[str, Any] = field(default_factory=dict)
    # Keys a log rotated away from, each trusted only for checkpoints up to its handover size.
    retired_log_keys: tuple[tuple[str, int], ...] = ()

    @classmethod
    def load(cls, path: str | Path) -> Trust:
        doc = json.loads(Path(path).read_text())
        return cls(issuers=frozenset(doc.get("issuers", [])), log_keys=tuple(doc.get("log_keys", [])),
                   issuer_documents=dict(doc.get("issuer_documents", {})),
                   retired_log_keys=tuple((str(r["key"]), int(r["until_size"]))
                                          for r in doc.get("retired_log_keys", [])))

    def to_json(self) -> dict[str, Any]:
        return {"issuers": sorted(self.issuers), "log_keys": list(self.log_keys),
                "retired_log_keys": [{"key": k, "until_size": n} for k, n in self.retired_log_keys],
                "issuer_documents": self.issuer_documents}


@dataclass(frozen=True)
class Verification:
    """Who signed what, for whom, when (as the log proves)."""

    artifact_name: str
    artifact_sha256: str
    agent_spiffe_id: str
    agent_did: str
    credential_id: str
    issuer: str
    on_behalf_of: str | None
    purpose: str
    signed_at: str
    logged_at: str
    log_index: int


async def verify(bundle: ArtifactBundle, artifact: bytes, trust: Trust) -> Verification:
    """Check a bundle offline. Raises ArtifactError with the exact reason."""
    if not bundle.logged or not bundle.leaf or not bundle.checkpoint:
        raise ArtifactError("not_logged", "the bundle carries no log entry and inclusion proof")
    stmt = bundle.statement
    try:
        predicate = stmt["predicate"]
        agent = predicate["agent"]
        key = PublicKey.from_did(agent["did"])
    except (KeyError, TypeError, InvalidKey) as exc:
        raise ArtifactError("malformed", "the statement names no agent did:key") from exc
    # 1. The signature, and that the envelope carries exactly this statement.
    try:
        signed = check_signed_statement(bundle.dsse_envelope, key)
    except AgentidError as exc:
        reason = "bad_signature" if exc.code.value == "invalid_signature" else "malformed"
        raise ArtifactError(reason, exc.message) from exc
    if signed.statement != stmt:
        raise ArtifactError("statement_mismatch", "the statement differs from the one that was signed")
    # 2. The artifact.
    subject = stmt["subject"][0]
    if artifacts.sha256_hex(artifact) != subject["digest"]["sha256"]:
        raise ArtifactError("digest_mismatch", "the artifact is not the one that was signed")
    # 3. The log: the entry is in a log whose checkpoint a trusted key signed...
    try:
        _, log_key = open_with_keys(bundle.checkpoint, trust.log_keys, trust.retired_log_keys)
    except AuditProofError as exc:
        raise ArtifactError("untrusted_log", f"the checkpoint is not signed by a trusted log key: {exc.reason}") from exc
    proof = bundle.inclusion_proof or {}
    try:
        verify_inclusion(bundle.leaf, int(proof["leaf_index"]), proof["hashes"], bundle.checkpoint, log_key)
    except AuditProofError as exc:
        raise ArtifactError("inclusion_mismatch", f"the log does not prove this entry: {exc.reason}") from exc
    except (KeyError, TypeError, ValueError) as exc:
        raise ArtifactError("malformed", "malformed inclusion proof") from exc
    # ...and the entry is this signature's.
    leaf = json.loads(bundle.leaf)
    details = leaf.get("details", {})
    if leaf.get("event") != "artifact.signed" or leaf.get("status") != "verified" \
            or details.get("envelope_digest") != signed.envelope_digest \
            or details.get("artifact_digest") != subject["digest"]["sha256"] \
            or details.get("credential_id") != predicate.get("credentialId") \
            or leaf.get("subject", {}).get("did") != agent["did"]:
        raise ArtifactError("entry_mismatch", "the log entry is about another signature")
    signed_at, logged_at = parse_instant(predicate.get("signedAt")), parse_instant(leaf.get("time"))
    if signed_at > logged_at + timedelta(seconds=SIGNING_SKEW_S) or signed_at < logged_at - timedelta(seconds=SIGNING_SKEW_S):
        raise ArtifactError("backdated", "the signing time is not when the signature was logged")
    # 4. The credential, trusted and valid when the signature was logged, not revoked then.
    async def status(url: str) -> str:
        return bundle.status_list_vc_jwt

    async def document(url: str) -> dict[str, Any]:
        for did, doc in trust.issuer_documents.items():
            if url.endswith(did.split(":", 2)[-1].replace(":", "/") + "/did.json"):
                return dict(doc)
        raise CredentialError("unknown_issuer", "no document for this issuer in the trust file")

    try:
        credential = await verify_credential(bundle.credential_vc_jwt, resolver=DidResolver(document),
                                             trusted_issuers=trust.issuers, status_fetcher=status,
                                             now=logged_at.timestamp())
    except CredentialError as exc:
        reason = {"revoked": "credential_revoked", "unknown_issuer": "untrusted_issuer"}.get(exc.reason,
                                                                                           f"credential_{exc.reason}")
        raise ArtifactError(reason, f"the agent's credential does not hold at signing time: {exc}") from exc
    _, list_claims, _ = jose.split(bundle.status_list_vc_jwt)
    if parse_instant(list_claims.get("validFrom")) > logged_at + timedelta(seconds=SIGNING_SKEW_S):
        raise ArtifactError("credential_status_unknown", "the status list is newer than the signature")
    if credential.subject_id != agent["did"] or credential.claims.get("id") != predicate.get("credentialId"):
        raise ArtifactError("credential_mismatch", "the credential is not the signing agent's")
    return Verification(
        artifact_name=subject["name"], artifact_sha256=subject["digest"]["sha256"], agent_spiffe_id=agent["spiffeId"],
        agent_did=agent["did"], credential_id=predicate["credentialId"], issuer=credential.issuer,
        on_behalf_of=predicate.get("onBehalfOf"), purpose=str(predicate.get("purpose", "")),
        signed_at=iso(signed_at), logged_at=iso(logged_at), log_index=int(proof["leaf_index"]))


async def trust_for(bus: Any, tenant: str) -> Trust:
    """What an offline verifier should trust for a tenant: its issuer DIDs (and did:web documents)
    and its log key. Write it once, hand it to relying parties."""
    from agentid.audit import AuditClient as _Client
    from contracts import issuance as iss

    issuer = await bus.request(sub.GET_ISSUER, tenant, iss.GetIssuer())
    log = await _Client(bus, tenant).checkpoint()
    docs = {issuer.did: issuer.did_document} if issuer.did.startswith("did:web:") else {}
    return Trust(issuers=frozenset(issuer.dids), log_keys=(log.log_public_key,), issuer_documents=docs,
                 retired_log_keys=tuple((r.key, r.until_size) for r in log.retired_log_keys))
