"""Attestation: challenges, evidence, appraisal results, agent postures and reference values.

Two postures, each with its own expiry (docs/attestation.md):
- `tee`: the agent's runtime is attested. Evidence (a Nitro document, an SEV-SNP report, a PSA
  EAT, or an EAR from a trusted verifier) must be bound to a fresh, single-use challenge and to
  the agent's key: SHA-512(nonce || RFC 7638 thumbprint bytes), the `binding` of `Challenge`.
- `supply_chain`: the artifacts the agent's credential names (model digest, tool digests) are
  covered by signed provenance (a Sigstore bundle, optionally with SLSA provenance). Provenance
  is about an artifact, not a moment, so it takes no challenge; it is bound to the agent through
  the digests of its own credential.

Consumers (the token and issuance workers) keep, per agent and posture, the latest
`attestation.verified` event (by `verified_at`) and treat the posture as held while
`expires_at` is in the future and no later `attestation.failed` with `posture_ended` exists.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

import msgspec

from contracts.types import Count, Digest, Id, JsonObject, Key, Name, Natural, Struct, TenantId, Text, Uri, anchored

# The largest evidence accepted on the bus, decoded. A request carries it base64-encoded (4/3 of
# the size) inside a message of at most 64 KiB, so 45 KiB leaves room for the envelope. Real
# evidence is far smaller: a Nitro document ~8 KiB, an SNP report with its VCEK ~3 KiB, a Sigstore
# bundle ~12 KiB.
MAX_EVIDENCE_BYTES = 45 * 1024
# Claims carried by an `attestation.verified` event are at most this large as JSON; bigger claim
# sets are replaced by a summary naming their digest (the full set stays in the worker's store).
MAX_EVENT_CLAIMS_BYTES = 16 * 1024

EvidenceKind = Literal["aws-nitro", "amd-sev-snp", "eat", "ear", "sigstore"]
PostureKind = Literal["tee", "supply_chain"]
Evidence = Annotated[bytes, msgspec.Meta(min_length=1, max_length=MAX_EVIDENCE_BYTES)]
HexNonce = Annotated[str, msgspec.Meta(pattern=anchored(r"[0-9a-f]{32,128}"))]
HexDigest = Annotated[str, msgspec.Meta(pattern=anchored(r"[0-9a-f]{128}"))]
Thumbprint = Annotated[str, msgspec.Meta(pattern=anchored(r"[A-Za-z0-9_-]{43}"))]
ReasonCode = Annotated[str, msgspec.Meta(pattern=anchored(r"[a-z_]{1,64}"))]
# What a verifier extracted (an SEV-SNP report gives 27 members); values bounded by the payload.
Claims = Annotated[dict[Key, Any], msgspec.Meta(max_length=128)]
# Covered artifacts: the model, then one per tool of the credential ("model", "tool:<name>").
Artifacts = Annotated[list[Name], msgspec.Meta(max_length=65)]

TEE_KINDS: frozenset[str] = frozenset({"aws-nitro", "amd-sev-snp", "eat", "ear"})
SUPPLY_CHAIN_KINDS: frozenset[str] = frozenset({"sigstore"})

# Refusals before any evidence is read (they appear as `reason` beside the verifiers' codes).
CHALLENGE_UNKNOWN = "challenge_unknown"      # no such challenge in this tenant (or long gone)
CHALLENGE_NOT_YOURS = "challenge_not_yours"  # issued to another agent; it stays usable by its owner
CHALLENGE_USED = "challenge_used"            # single use: already spent
CHALLENGE_EXPIRED = "challenge_expired"      # past its short lifetime
CHALLENGE_REASONS = frozenset({CHALLENGE_UNKNOWN, CHALLENGE_NOT_YOURS, CHALLENGE_USED, CHALLENGE_EXPIRED})


def posture_of(kind: str) -> PostureKind:
    return "supply_chain" if kind in SUPPLY_CHAIN_KINDS else "tee"


# --- the agent's requests ---------------------------------------------------------------------
class RequestChallenge(Struct, kw_only=True):
    """Sent by the agent itself; the challenge is bound to it and to the key that signed this."""


class Challenge(Struct, kw_only=True):
    """A fresh nonce for one `attestation.verify`, single use, valid until `expires_at`.

    `binding` is what the evidence must carry (binding layout version 1): the 64 bytes
    SHA-512(nonce || thumbprint bytes), hex. Nitro: `nonce` = nonce and `user_data` = binding;
    SEV-SNP: REPORT_DATA = binding; PSA EAT: `eat_nonce` = binding; EAR: `eat_nonce` =
    base64url(binding).
    """

    challenge_id: Id
    agent_id: Id
    nonce: HexNonce
    key_thumbprint: Thumbprint
    binding: HexDigest
    binding_version: Annotated[int, msgspec.Meta(ge=1, le=255)] = 1
    expires_at: datetime


class VerifyEvidence(Struct, kw_only=True):
    """Evidence for appraisal, sent by the agent it is about.

    TEE kinds need the `challenge_id` the evidence is bound to; `sigstore` takes none.
    """

    kind: EvidenceKind
    evidence: Evidence
    challenge_id: Id | None = None


class AttestationResult(Struct, kw_only=True):
    """A verified appraisal (refusals come back as an `attestation_failed` error whose `detail`
    holds `reason`, `result_id` and `kind`)."""

    result_id: Id
    agent_id: Id
    kind: EvidenceKind
    posture: PostureKind
    verified: bool
    claims: Claims
    artifacts: Artifacts = []  # supply_chain: the credential's artifacts covered ("model", "tool:<name>")
    key_thumbprint: Thumbprint
    reference_version: Natural
    verified_at: datetime
    expires_at: datetime


class GetPosture(Struct, kw_only=True):
    agent_id: Id


class PostureEntry(Struct, kw_only=True):
    result_id: Id
    kind: EvidenceKind
    verified_at: datetime
    expires_at: datetime
    artifacts: Artifacts = []


class Posture(Struct, kw_only=True):
    """What an agent holds now; a posture past its expiry is absent."""

    agent_id: Id
    tee: PostureEntry | None = None
    supply_chain: PostureEntry | None = None
    as_of: datetime


# --- reference values (operators) -------------------------------------------------------------
class SetReferenceValues(Struct, kw_only=True):
    """Replace the tenant's reference values with `document` as a whole (a new version).

    The document is validated against the appraisal schema (docs/attestation.md); an invalid one
    is refused with `invalid_request`. With `expected_version` (0: none set yet) the update is
    refused with `conflict` unless that is the current version.
    """

    document: JsonObject
    expected_version: Count | None = None


class ReferenceValuesRecord(Struct, kw_only=True):
    tenant: TenantId
    version: Natural
    document: JsonObject  # normalised: every field, defaults included
    digest: Digest            # sha256 of the canonical JSON of `document`
    set_by: Uri
    set_at: datetime


class ListReferenceValues(Struct, kw_only=True):
    limit: Annotated[int, msgspec.Meta(ge=1, le=100)] = 20


class ReferenceValuesVersion(Struct, kw_only=True):
    version: Natural
    digest: Digest
    set_by: Uri
    set_at: datetime


class ReferenceValuesList(Struct, kw_only=True):
    current: ReferenceValuesRecord | None = None
    versions: Annotated[list[ReferenceValuesVersion], msgspec.Meta(max_length=100)] = []  # newest first, limit


# --- events -----------------------------------------------------------------------------------
class AttestationVerified(Struct, kw_only=True):
    """An agent holds `posture` until `expires_at` (already capped by the agent's own lifetime and
    the deployment's maximum posture age). `claims` are the verifier's extracted values, at most
    `MAX_EVENT_CLAIMS_BYTES` as JSON (else `{"truncated": true, "digest": ...}`)."""

    result_id: Id
    agent_id: Id
    kind: EvidenceKind
    posture: PostureKind
    key_thumbprint: Thumbprint
    claims: Claims
    artifacts: Artifacts = []
    reference_version: Natural
    verified_at: datetime
    expires_at: datetime


class AttestationFailed(Struct, kw_only=True):
    """An appraisal was refused. `reason` is a stable code: a verifier reason (`bad_signature`,
    `nonce_mismatch`, `key_binding_mismatch`, `binding_mismatch`, `pcr_not_allowed`, ...) or a
    challenge refusal (`challenge_unknown`, `challenge_not_yours`, `challenge_used`,
    `challenge_expired`). With `posture_ended` the agent's current `posture` (if any) is over:
    evidence the agent itself submitted for its own challenge, or provenance, did not pass."""

    result_id: Id
    agent_id: Id
    kind: EvidenceKind
    posture: PostureKind
    reason: ReasonCode
    message: Text
    challenge_id: Id | None = None
    posture_ended: bool
    at: datetime


class ReferenceValuesUpdated(Struct, kw_only=True):
    tenant: TenantId
    version: Natural
    digest: Digest
    set_by: Uri
    at: datetime

