"""The worker's appraisal helpers: reference documents, provenance binding, event claims."""

from __future__ import annotations

import hashlib

import pytest

from contracts.attestation import MAX_EVENT_CLAIMS_BYTES
from services.attestation.appraisal import (
    Appraiser, credential_artifacts, normalised, parse_reference, provenance_reference, reference_digest,
)
from services.attestation.verifiers import AppraisalError, ReferenceValues
from services.attestation.worker import bounded_claims
from tests.attestation_factory.samples import TODAY

SHA = "sha256:" + hashlib.sha256(b"model").hexdigest()


def test_reference_documents_are_validated_and_normalised() -> None:
    ref = parse_reference({"nitro_pcrs": {"0": ["00" * 48]}, "snp_vmpl": 1})
    doc = normalised(ref)
    assert doc["nitro_pcrs"] == {"0": ["00" * 48]} and doc["debug_allowed"] is False
    assert parse_reference(doc) == ref and reference_digest(doc) == reference_digest(normalised(ref))
    for bad in ({"snp_vmpl": 9}, {"nope": 1}, {"ear_keys": [{"kty": "OKP", "crv": "Ed25519", "x": "AA"}]}, "[]"):
        with pytest.raises(ValueError):
            parse_reference(bad)


def test_provenance_is_bound_to_the_credentials_digests() -> None:
    upper_hex = "sha256:" + SHA.split(":")[1].upper()  # registration accepts upper-case hex
    artifacts = credential_artifacts(upper_hex, [("search", None), ("calc", SHA)])
    assert artifacts == {"model": upper_hex, "tool:calc": SHA}
    ref = provenance_reference(ReferenceValues(artifact_digests={"other": ("sha256:" + "00" * 32,)}), artifacts)
    assert ref.artifact_digests == {"model": (SHA,), "tool:calc": (SHA,)}  # the agent's own, lower-cased
    with pytest.raises(AppraisalError) as exc:
        provenance_reference(ReferenceValues(artifact_digests={"model": ("sha256:" + "11" * 32,)}), artifacts)
    assert exc.value.reason == "digest_mismatch"
    for none in ({}, {"model": "md5:" + "00" * 16}):
        with pytest.raises(AppraisalError) as exc:
            provenance_reference(ReferenceValues(), none)
        assert exc.value.reason == "not_configured"


def test_event_claims_are_bounded() -> None:
    small = {"a": "b"}
    assert bounded_claims(small) == small
    big = {"x": "0" * MAX_EVENT_CLAIMS_BYTES}
    summary = bounded_claims(big)
    assert summary["truncated"] is True and summary["digest"].startswith("sha256:")


def test_an_unknown_kind_is_refused() -> None:
    with pytest.raises(AppraisalError) as exc:
        Appraiser().appraise("tpm", b"x", reference=ReferenceValues(), binding=None, as_of=TODAY)
    assert exc.value.reason == "unsupported"
