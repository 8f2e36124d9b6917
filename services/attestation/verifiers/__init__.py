"""Offline evidence verifiers for the attestation worker, one per evidence kind.

    result = VERIFIERS["aws-nitro"].appraise(evidence, reference=refs, binding=b, as_of=now)

Every verifier implements `Verifier` (base.py) and raises `AppraisalError` with a stable
`reason` on any refusal. The default registry pins the vendors' roots that ship with this
package (AWS Nitro Root-G1; AMD Milan/Genoa/Turin ARKs). Sigstore needs the operator's trusted
root: build a registry with `build_verifiers(sigstore_trusted_root=...)`; without one the
`sigstore` verifier refuses every bundle with `not_configured`.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from .base import (
    AppraisalError,
    AppraisalResult,
    Binding,
    Reason,
    ReferenceValues,
    SigstoreIdentity,
    SlsaSource,
    SnpTcb,
    Verifier,
)
from .ear import EarVerifier
from .eat import EatVerifier
from .nitro import NitroVerifier
from .sev_snp import SevSnpVerifier, pack_evidence
from .sigstore import SigstoreVerifier


def build_verifiers(
    *, sigstore_trusted_root: bytes | str | Mapping[str, Any] | None = None
) -> dict[str, Verifier]:
    """A registry keyed by kind. Raises ValueError if the trusted root is malformed."""
    verifiers: list[Verifier] = [
        NitroVerifier(),
        SevSnpVerifier(),
        EatVerifier(),
        EarVerifier(),
        SigstoreVerifier(sigstore_trusted_root),
    ]
    return {v.kind: v for v in verifiers}


VERIFIERS: dict[str, Verifier] = build_verifiers()

__all__ = [
    "VERIFIERS",
    "AppraisalError",
    "AppraisalResult",
    "Binding",
    "EarVerifier",
    "EatVerifier",
    "NitroVerifier",
    "Reason",
    "ReferenceValues",
    "SevSnpVerifier",
    "SigstoreIdentity",
    "SigstoreVerifier",
    "SlsaSource",
    "SnpTcb",
    "Verifier",
    "build_verifiers",
    "pack_evidence",
]
