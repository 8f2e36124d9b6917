"""One appraisal path for the worker and for `agentid attestation check`.

`Appraiser` holds the verifier registry: the pinned vendor roots (AWS Nitro Root-G1, AMD ARKs)
and, when the deployment names one, the Sigstore trusted root. `UnsafeTestAnchors` replaces those
roots for test suites that build evidence with their own keys; nothing in a deployment's
configuration can set it, and the worker logs a warning whenever it is in force.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import msgspec
from cryptography import x509

from shared.canonical import sha256_digest

from .verifiers import (
    AppraisalError,
    AppraisalResult,
    Binding,
    NitroVerifier,
    Reason,
    ReferenceValues,
    SevSnpVerifier,
    SigstoreVerifier,
    Verifier,
    build_verifiers,
)
from .verifiers._jwk import load_trusted_keys
from .verifiers.sev_snp import ProductChain

log = logging.getLogger(__name__)

_DIGEST = re.compile(r"^(sha256|sha384|sha512):([0-9a-f]+)$")
_HEX_LEN = {"sha256": 64, "sha384": 96, "sha512": 128}


@dataclass(frozen=True)
class UnsafeTestAnchors:
    """FOR TEST SUITES ONLY. Roots that replace the pinned vendor roots of the kinds they name.

    With these, evidence signed by a test PKI verifies as if it came from AWS or AMD hardware:
    never build one outside a test.
    """

    nitro_roots: Sequence[x509.Certificate] = ()
    snp_chains: Mapping[str, ProductChain] = field(default_factory=dict)
    sigstore_trusted_root: Mapping[str, Any] | bytes | None = None


def read_sigstore_root(path: Path | None) -> bytes | None:
    """The operator's trusted_root.json, or None. OSError when the named file is unreadable."""
    return None if path is None else Path(path).read_bytes()


class Appraiser:
    """The verifier of each evidence kind. Raises ValueError if the Sigstore root is malformed."""

    def __init__(self, *, sigstore_trusted_root: bytes | Mapping[str, Any] | None = None,
                 unsafe_test_anchors: UnsafeTestAnchors | None = None) -> None:
        verifiers: dict[str, Verifier] = build_verifiers(sigstore_trusted_root=sigstore_trusted_root)
        anchors = unsafe_test_anchors
        if anchors is not None:
            if anchors.nitro_roots:
                verifiers["aws-nitro"] = NitroVerifier(anchors.nitro_roots)
            if anchors.snp_chains:
                verifiers["amd-sev-snp"] = SevSnpVerifier(anchors.snp_chains)
            if anchors.sigstore_trusted_root is not None:
                verifiers["sigstore"] = SigstoreVerifier(anchors.sigstore_trusted_root)
        self.verifiers = verifiers
        self.unsafe = anchors is not None

    def appraise(self, kind: str, evidence: bytes, *, reference: ReferenceValues, binding: Binding | None,
                 as_of: datetime) -> AppraisalResult:
        """Appraise and require a complete policy, and a binding whenever one was given.

        Raises AppraisalError (the refusal, with its reason) and nothing else for bad evidence.
        """
        result = self.appraise_unchecked(kind, evidence, reference=reference, binding=binding, as_of=as_of)
        return result.require(bound=binding is not None)

    def appraise_unchecked(self, kind: str, evidence: bytes, *, reference: ReferenceValues,
                           binding: Binding | None, as_of: datetime) -> AppraisalResult:
        """The verifier's result as it is, possibly unverified (`unchecked` policy): for display."""
        verifier = self.verifiers.get(kind)
        if verifier is None:
            raise AppraisalError(Reason.UNSUPPORTED, f"no verifier for evidence kind {kind!r}")
        return verifier.appraise(evidence, reference=reference, binding=binding, as_of=as_of)


# -- reference values ------------------------------------------------------------------------


def parse_reference(document: Any) -> ReferenceValues:
    """A tenant's reference values from JSON (bytes/str) or a decoded object.

    Raises ValueError with a message naming the bad field, also for trusted keys that cannot be
    loaded (private, wrong curve, off the curve), so a bad document is refused when it is set
    rather than at the first appraisal.
    """
    raw = document if isinstance(document, bytes | str) else msgspec.json.encode(document)
    try:
        reference = ReferenceValues.from_json(raw)
    except (msgspec.ValidationError, msgspec.DecodeError) as exc:
        raise ValueError(str(exc)) from exc
    try:
        load_trusted_keys(reference.ear_keys, "ear_keys")
        load_trusted_keys(reference.eat_keys, "eat_keys")
    except AppraisalError as exc:
        raise ValueError(exc.message) from exc
    return reference


def normalised(reference: ReferenceValues) -> dict[str, Any]:
    """Every field as plain JSON (string keys), as stored and shown."""
    return msgspec.json.decode(reference.to_json())


def reference_digest(document: dict[str, Any]) -> str:
    return sha256_digest(document)


def credential_artifacts(model_digest: str | None, tools: Sequence[tuple[str, str | None]]) -> dict[str, str]:
    """The artifacts an agent's credential names: `model` and `tool:<name>`, with their digests."""
    out: dict[str, str] = {}
    if model_digest:
        out["model"] = model_digest
    for name, digest in tools:
        if digest:
            out[f"tool:{name}"] = digest
    return out


def provenance_reference(reference: ReferenceValues, artifacts: Mapping[str, str]) -> ReferenceValues:
    """The tenant's reference values, with the expected artifact digests set to the agent's own.

    Provenance is bound to an agent through the digests its credential names: a bundle counts
    only if it signs one of them. Where the tenant lists accepted digests for an artifact name,
    the agent's digest must also be one of those (the agent runs a model the tenant accepts).
    """
    expected: dict[str, tuple[str, ...]] = {}
    for name, digest in sorted(artifacts.items()):
        value = digest.lower()
        m = _DIGEST.match(value)
        if not m or len(m.group(2)) != _HEX_LEN[m.group(1)]:
            continue  # an algorithm provenance cannot carry; this artifact cannot be covered
        accepted = (reference.artifact_digests or {}).get(name)
        if accepted is not None and value not in accepted:
            raise AppraisalError(Reason.DIGEST_MISMATCH, f"the tenant does not accept this {name} digest")
        expected[name] = (value,)
    if not expected:
        raise AppraisalError(
            Reason.NOT_CONFIGURED, "the agent's credential names no sha256/sha384/sha512 model or tool digest")
    return msgspec.structs.replace(reference, artifact_digests=expected)


def covered_artifacts(result: AppraisalResult) -> list[str]:
    return sorted(result.claims.get("matched_digests", {}))
