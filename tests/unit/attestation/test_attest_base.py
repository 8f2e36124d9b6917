"""The shared interface: reason codes, binding, reference values, results, registry, helpers."""

from __future__ import annotations

import hashlib
import json
from datetime import UTC, datetime

import msgspec
import pytest

from services.attestation.verifiers import (
    VERIFIERS,
    AppraisalError,
    AppraisalResult,
    Binding,
    Reason,
    ReferenceValues,
    SnpTcb,
    Verifier,
    _der,
)
from services.attestation.verifiers._codec import b64decode, cbor_decode, json_object, unarmour
from shared.merkle import ProofError, leaf_hash, verify_inclusion
from tests.attestation_factory import b64u

STABLE_CODES = {
    "malformed", "unsupported", "not_configured", "bad_signature", "chain_untrusted", "cert_expired",
    "cert_not_yet_valid", "nonce_mismatch", "key_binding_mismatch", "binding_mismatch", "debug_enclave",
    "pcr_not_allowed", "measurement_not_allowed", "tcb_too_low", "tcb_mismatch", "chip_id_mismatch",
    "vmpl_mismatch", "policy_debug", "lifecycle_not_secured", "stale", "future_timestamp", "expired",
    "status_not_affirming", "untrusted_verifier_key", "profile_mismatch", "identity_mismatch",
    "digest_mismatch", "builder_untrusted", "source_mismatch", "tlog_invalid", "body_mismatch",
    "sct_invalid", "policy_incomplete", "unbound",
}  # fmt: skip
TP = b64u(hashlib.sha256(b"agent key").digest())


def test_reason_codes_are_stable():
    assert {r.value for r in Reason} == STABLE_CODES


def test_appraisal_error_carries_a_known_reason():
    err = AppraisalError("stale", "too old")
    assert err.reason is Reason.STALE and err.reason == "stale" and "too old" in str(err)
    with pytest.raises(ValueError):
        AppraisalError("made_up", "x")


def test_registry_has_one_verifier_per_kind():
    assert set(VERIFIERS) == {"aws-nitro", "amd-sev-snp", "eat", "ear", "sigstore"}
    for kind, verifier in VERIFIERS.items():
        assert isinstance(verifier, Verifier) and verifier.kind == kind


def test_binding_digest_layout():
    b = Binding(nonce=b"\x01" * 16, key_thumbprint=TP)
    assert b.digest() == hashlib.sha512(b"\x01" * 16 + hashlib.sha256(b"agent key").digest()).digest()
    assert len(b.digest()) == 64


@pytest.mark.parametrize(
    ("nonce", "tp"),
    [
        (b"\x01" * 15, TP),
        (b"\x01" * 65, TP),
        ("x" * 32, TP),
        (b"\x01" * 16, TP + "="),
        (b"\x01" * 16, b64u(b"short")),
    ],
)
def test_binding_refuses_bad_inputs(nonce, tp):
    with pytest.raises(ValueError):
        Binding(nonce=nonce, key_thumbprint=tp)


def test_reference_values_round_trip_through_json():
    doc = {
        "nitro_pcrs": {"0": ["aa" * 48]},
        "snp_measurements": ["bb" * 48],
        "snp_min_tcb": {"bl": 3, "snp": 8, "ucode": 115},
        "snp_vmpl": 0,
        "artifact_digests": {"model": ["sha256:" + "cc" * 32]},
        "sigstore_identities": [{"issuer": "https://issuer", "subject": "https://subject"}],
        "slsa_sources": [{"repository": "https://github.com/o/r"}],
        "max_evidence_age_s": 120,
    }
    ref = ReferenceValues.from_json(json.dumps(doc))
    assert ref.nitro_pcrs == {0: ("aa" * 48,)}
    assert ref.snp_min_tcb == SnpTcb(bl=3, snp=8, ucode=115)
    assert ReferenceValues.from_json(ref.to_json()) == ref


@pytest.mark.parametrize(
    "doc",
    [
        {"nitro_pcrs": {"0": ["AA" * 48]}},
        {"nitro_pcrs": {"40": ["aa" * 48]}},
        {"snp_measurements": ["xyz"]},
        {"snp_vmpl": 4},
        {"snp_min_tcb": {"bl": 256}},
        {"artifact_digests": {"m": ["md5:00"]}},
        {"artifact_digests": {"m": ["sha256:" + "00" * 31]}},
        {"max_evidence_age_s": 0},
        {"unknown_field": 1},
    ],
)
def test_reference_values_refuse_bad_json(doc):
    with pytest.raises(msgspec.ValidationError):
        ReferenceValues.from_json(json.dumps(doc))


def test_verifiers_refuse_naive_times():
    for verifier in VERIFIERS.values():
        with pytest.raises(ValueError):
            verifier.appraise(b"x", reference=ReferenceValues(), binding=None, as_of=datetime(2025, 1, 1))


def test_result_require():
    at = datetime(2025, 1, 1, tzinfo=UTC)
    good = AppraisalResult(kind="k", verified=True, bound=True, claims={}, expires_at=None, appraised_at=at)
    assert good.require() is good
    with pytest.raises(AppraisalError) as exc:
        AppraisalResult(
            kind="k",
            verified=False,
            bound=True,
            claims={},
            expires_at=None,
            appraised_at=at,
            unchecked=("x",),
        ).require()
    assert exc.value.reason == "policy_incomplete"


# -- internals -------------------------------------------------------------------------------

LEAVES = [
    bytes.fromhex(h)
    for h in (
        "",
        "00",
        "10",
        "2021",
        "3031",
        "40414243",
        "5051525354555657",
        "606162636465666768696a6b6c6d6e6f",
    )
]
ROOT8 = bytes.fromhex("5dc9da79a70659a9ad559cb701ded9a2ab9d823aad2f4960cfe370eff4604328")
PATH0 = [
    bytes.fromhex(h)
    for h in (
        "96a296d224f285c67bee93c30f8a309157f0daa35dc5b87e410b78630a09cfc7",
        "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
        "6b47aaf29ee3c2af9af889bc1fb9254dabd31177f16232dd6aab035ca39bf6e4",
    )
]


def test_rekor_proofs_use_the_shared_merkle_verifier_against_the_rfc_vectors():
    # Rekor inclusion proofs go through shared.merkle, the project's one RFC 9162 implementation.
    verify_inclusion(leaf_hash(LEAVES[0]), 0, 8, PATH0, ROOT8)
    for args in (
        (leaf_hash(LEAVES[0]), 1, 8, PATH0, ROOT8),
        (leaf_hash(LEAVES[1]), 0, 8, PATH0, ROOT8),
        (leaf_hash(LEAVES[0]), 8, 8, PATH0, ROOT8),
        (leaf_hash(LEAVES[0]), 0, 8, PATH0[:2], ROOT8),
        (leaf_hash(LEAVES[0]), 0, 8, [*PATH0, PATH0[0]], ROOT8),
    ):
        with pytest.raises(ProofError):
            verify_inclusion(*args)


def test_merkle_inclusion_for_every_leaf_of_odd_trees():
    # Paths from the test factory's own tree builder, which follows RFC 6962 2.1 directly.
    from tests.attestation_factory.sigstore import _mth, _path

    for size in range(1, 12):
        leaves = [b"leaf %d" % i for i in range(size)]
        root = _mth(leaves)
        for i in range(size):
            verify_inclusion(leaf_hash(leaves[i]), i, size, _path(i, leaves), root)


def test_der_reader_is_strict():
    assert _der.read_uint(b"\x02\x01\x05", "x") == 5
    assert _der.read_uint(b"\x02\x02\x00\x80", "x") == 128
    assert _der.read_string(b"\x16\x08Milan-B0", _der.TAG_IA5STRING, "x") == "Milan-B0"
    for bad in (
        b"\x02\x02\x00\x05",
        b"\x02\x01\x85",
        b"\x02\x01",
        b"\x02\x01\x05\x00",
        b"\x04\x01\x05",
        b"\x02\x81\x01\x05",
        b"",
    ):
        with pytest.raises(AppraisalError) as exc:
            _der.read_uint(bad, "x")
        assert exc.value.reason == "malformed"


def test_codec_is_strict():
    for bad in (b"\x01\x02", b"\xa2\x01\x02\x01\x03", b"\x5f\x41\x00\xff", b"\xff"):
        with pytest.raises(AppraisalError):
            cbor_decode(bad, "x")
    for bad in (b"[]", b'{"a":1,"a":2}', b'{"a":NaN}', b"\xff"):
        with pytest.raises(AppraisalError):
            json_object(bad, "x")
    for bad in ("AAA", "AAB=", "A===", 5, "ÿÿÿÿ"):
        with pytest.raises(AppraisalError):
            b64decode(bad, "x")
    with pytest.raises(AppraisalError):
        unarmour(b"***", binary_first_bytes=frozenset(), what="x")
