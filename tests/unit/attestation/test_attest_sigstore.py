"""Sigstore bundles with SLSA provenance: the three real public-good bundles, offline."""

from __future__ import annotations

import base64
import copy
import hashlib
import json
from datetime import timedelta

import pytest

from services.attestation.verifiers import (
    VERIFIERS,
    AppraisalError,
    ReferenceValues,
    SigstoreIdentity,
    SigstoreVerifier,
    SlsaSource,
    build_verifiers,
)
from tests.attestation_factory.samples import (
    SIGSTORE_HELLO_AT,
    SIGSTORE_JS_AT,
    SIGSTORE_WHL_AT,
    TODAY,
    sample,
    sample_json,
)

ROOT = sample("sigstore-slsa", "trusted_root_public_good.json")
V = SigstoreVerifier(ROOT)
GH = "https://token.actions.githubusercontent.com"
RUNNER = "https://github.com/actions/runner/github-hosted"

HELLO = "hello-world.sigstore.json"
WHL = "github_provenance_demo-0.0.0-py3-none-any.whl.sigstore.json"
JS = "sigstore-js-2.1.0.sigstore.json"

HELLO_SHA256 = "afa27b44d43b02a9fea41d13cedc2e4016cfcf87c5dbf990e593669aa8ce286d"
WHL_SHA256 = "49a3aa6075e0f49f82843e74b5baa614ad2a588e6675612bf108a0a008c5ac25"
JS_SHA512 = (
    "90f223f992e4c88dd068cd2a5fc57f9d2b30798343dd6e38f29c240e04ba090e"
    "f831f84490847c4e82b9232c78e8a258463b1e55c0f7469f730265008fa6633f"
)

# Reference values per bundle, from tests/data/attestation/sigstore-slsa/MANIFEST.md.
CASES = {
    HELLO: (
        SIGSTORE_HELLO_AT,
        ReferenceValues(
            sigstore_identities=(
                SigstoreIdentity(
                    issuer=f"{GH}/hammer-time",
                    subject="https://github.com/too-legit/attest/.github/workflows/integration.yml@refs/heads/main",
                ),
            ),
            artifact_digests={
                "model": ("sha256:" + hashlib.sha256(sample("sigstore-slsa", "hello-world.txt")).hexdigest(),)
            },
            slsa_builder_ids=(
                "https://github.com/too-legit/attest/.github/workflows/integration.yml@refs/heads/main",
            ),
            slsa_sources=(
                SlsaSource(repository="https://github.com/too-legit/attest", ref="refs/heads/main"),
            ),
        ),
        129601213,
        {"sha256": HELLO_SHA256},
    ),
    WHL: (
        SIGSTORE_WHL_AT,
        ReferenceValues(
            sigstore_identities=(
                SigstoreIdentity(
                    issuer=GH,
                    subject="https://github.com/github/artifact-attestations-workflows/.github/workflows/attest.yml"
                    "@09b495c3f12c7881b3cc17209a327792065c1a1d",
                ),
            ),
            artifact_digests={"toolchain": ("sha256:" + WHL_SHA256,)},
            slsa_builder_ids=(RUNNER,),
            slsa_sources=(
                SlsaSource(repository="https://github.com/malancas/attest-demo", ref="refs/heads/main"),
            ),
        ),
        96764485,
        {"sha256": WHL_SHA256},
    ),
    JS: (
        SIGSTORE_JS_AT,
        ReferenceValues(
            sigstore_identities=(
                SigstoreIdentity(
                    issuer=GH,
                    subject="https://github.com/sigstore/sigstore-js/.github/workflows/release.yml@refs/heads/main",
                ),
            ),
            artifact_digests={"toolchain": ("sha512:" + JS_SHA512,)},
            slsa_builder_ids=(RUNNER,),
            slsa_sources=(SlsaSource(repository="https://github.com/sigstore/sigstore-js"),),
        ),
        33351527,
        {"sha512": JS_SHA512},
    ),
}


def reason(exc: pytest.ExceptionInfo[AppraisalError]) -> str:
    return exc.value.reason.value


def refused(bundle: bytes, ref: ReferenceValues, at, verifier: SigstoreVerifier = V) -> str:
    with pytest.raises(AppraisalError) as exc:
        verifier.appraise(bundle, reference=ref, binding=None, as_of=at)
    return reason(exc)


@pytest.mark.parametrize("name", list(CASES))
def test_real_bundles_verify_as_of_their_integrated_time(name):
    at, ref, log_index, digest = CASES[name]
    result = V.appraise(sample("sigstore-slsa", name), reference=ref, binding=None, as_of=at)
    assert result.verified and not result.bound and result.expires_at is None
    claims = result.claims
    assert claims["log_index"] == log_index
    assert claims["integrated_time"] == at.isoformat()
    assert claims["subjects"][0]["digest"] == digest
    assert claims["predicate_type"] == "https://slsa.dev/provenance/v1"
    assert claims["slsa"]["builder_id"] == ref.slsa_builder_ids[0]
    assert claims["identity"] == {
        "issuer": ref.sigstore_identities[0].issuer,
        "subjects": [ref.sigstore_identities[0].subject],
    }
    assert claims["certificate_source"]["repository"] == ref.slsa_sources[0].repository


def test_manifest_details_of_the_hello_world_bundle():
    at, ref, _, _ = CASES[HELLO]
    claims = V.appraise(sample("sigstore-slsa", HELLO), reference=ref, binding=None, as_of=at).claims
    assert claims["entry_kind"] == "dsse/0.0.1"
    assert claims["certificate_source"]["digest"] == "283bf967fa3c591925dd25e6a6e8e781542117bf"
    assert claims["slsa"]["build_type"] == "https://actions.github.io/buildtypes/workflow/v1"
    assert claims["matched_digests"] == {"model": ["sha256:" + HELLO_SHA256]}
    js = V.appraise(
        sample("sigstore-slsa", JS), reference=CASES[JS][1], binding=None, as_of=CASES[JS][0]
    ).claims
    assert js["entry_kind"] == "intoto/0.0.2"
    assert js["subjects"][0]["name"] == "pkg:npm/sigstore@2.1.0"


@pytest.mark.parametrize("name", list(CASES))
def test_real_bundles_still_verify_today_unless_the_tenant_limits_provenance_age(name):
    # The Fulcio leaf lived ten minutes, but the log signed the time of signing: the bundle does
    # not expire as time passes. A tenant who wants fresh provenance says so.
    _, ref, _, _ = CASES[name]
    assert V.appraise(sample("sigstore-slsa", name), reference=ref, binding=None, as_of=TODAY).verified
    fresh_only = ReferenceValues(max_provenance_age_s=365 * 24 * 3600)
    assert refused(sample("sigstore-slsa", name), fresh_only, TODAY) == "stale"


def test_bundle_from_after_the_appraisal_time_is_refused():
    at, ref, _, _ = CASES[HELLO]
    assert refused(sample("sigstore-slsa", HELLO), ref, at - timedelta(days=1)) == "future_timestamp"


def test_tampered_artifact_is_not_a_signed_subject():
    at, ref, _, _ = CASES[HELLO]
    tampered = hashlib.sha256(sample("sigstore-slsa", "hello-world_tampered.txt")).hexdigest()
    other = ReferenceValues(artifact_digests={"model": ("sha256:" + tampered,)})
    assert refused(sample("sigstore-slsa", HELLO), other, at) == "digest_mismatch"


def test_tampered_dsse_signature_is_refused():
    at, ref, _, _ = CASES[JS]
    assert (
        refused(sample("sigstore-slsa", "sigstore-js-2.1.0_tampered.sigstore.json"), ref, at)
        == "bad_signature"
    )


def test_custom_issuer_does_not_pass_for_github():
    at, _, _, _ = CASES[HELLO]
    ref = ReferenceValues(
        sigstore_identities=(
            SigstoreIdentity(
                issuer=GH,
                subject="https://github.com/too-legit/attest/.github/workflows/integration.yml@refs/heads/main",
            ),
        )
    )
    assert refused(sample("sigstore-slsa", HELLO), ref, at) == "identity_mismatch"


def test_policy_mismatches_are_refused():
    at, ref, _, _ = CASES[WHL]
    bundle = sample("sigstore-slsa", WHL)
    assert (
        refused(bundle, ReferenceValues(slsa_builder_ids=("https://example.com/builder",)), at)
        == "builder_untrusted"
    )
    assert refused(
        bundle, ReferenceValues(slsa_sources=(SlsaSource(repository="https://github.com/acme/x"),)), at
    ) == ("source_mismatch")
    other_ref = (SlsaSource(repository="https://github.com/malancas/attest-demo", ref="refs/heads/dev"),)
    assert refused(bundle, ReferenceValues(slsa_sources=other_ref), at) == "source_mismatch"
    assert (
        refused(bundle, ReferenceValues(artifact_digests={"m": ("sha256:" + "00" * 32,)}), at)
        == "digest_mismatch"
    )


def test_missing_policy_is_reported():
    at, _, _, _ = CASES[WHL]
    result = V.appraise(sample("sigstore-slsa", WHL), reference=ReferenceValues(), binding=None, as_of=at)
    assert not result.verified
    assert result.unchecked == ("sigstore_identities", "artifact_digests", "slsa_builder_ids", "slsa_sources")


def _mutated(name: str, mutate) -> bytes:
    bundle = copy.deepcopy(sample_json("sigstore-slsa", name))
    mutate(bundle)
    return json.dumps(bundle).encode()


def _entry(bundle):
    return bundle["verificationMaterial"]["tlogEntries"][0]


def test_log_evidence_tampering_is_refused():
    at, ref, _, _ = CASES[HELLO]

    def later(b):
        _entry(b)["integratedTime"] = str(int(_entry(b)["integratedTime"]) + 1)

    def proof_hash(b):
        _entry(b)["inclusionProof"]["hashes"][0] = base64.b64encode(b"\x00" * 32).decode()

    def tree_size(b):
        _entry(b)["inclusionProof"]["treeSize"] = str(int(_entry(b)["inclusionProof"]["treeSize"]) + 1)

    def checkpoint(b):
        cp = _entry(b)["inclusionProof"]["checkpoint"]
        cp["envelope"] = cp["envelope"].replace("7696953", "7696954", 1)

    def no_promise(b):
        del _entry(b)["inclusionPromise"]

    def other_log(b):
        _entry(b)["logId"]["keyId"] = base64.b64encode(b"\x01" * 32).decode()

    for mutate in (later, proof_hash, tree_size, checkpoint, no_promise, other_log):
        assert refused(_mutated(HELLO, mutate), ref, at) == "tlog_invalid", mutate.__name__


def test_v03_bundle_without_inclusion_proof_is_malformed():
    at, ref, _, _ = CASES[HELLO]
    assert refused(_mutated(HELLO, lambda b: _entry(b).pop("inclusionProof")), ref, at) == "malformed"


def test_envelope_from_another_bundle_is_refused():
    at, ref, _, _ = CASES[HELLO]
    other = sample_json("sigstore-slsa", WHL)["dsseEnvelope"]
    assert refused(_mutated(HELLO, lambda b: b.update(dsseEnvelope=other)), ref, at) == "bad_signature"


def test_trust_root_windows_and_ct_logs_are_enforced():
    at, ref, _, _ = CASES[HELLO]
    root = json.loads(ROOT)
    no_ct = dict(root, ctlogs=[])
    assert refused(sample("sigstore-slsa", HELLO), ref, at, SigstoreVerifier(no_ct)) == "sct_invalid"
    ended = copy.deepcopy(root)
    for ca in ended["certificateAuthorities"]:
        ca["validFor"]["end"] = "2023-01-01T00:00:00Z"
    assert refused(sample("sigstore-slsa", HELLO), ref, at, SigstoreVerifier(ended)) == "chain_untrusted"
    log_ended = copy.deepcopy(root)
    log_ended["tlogs"][0]["publicKey"]["validFor"]["end"] = "2023-01-01T00:00:00Z"
    assert refused(sample("sigstore-slsa", HELLO), ref, at, SigstoreVerifier(log_ended)) == "tlog_invalid"


def test_a_corrupt_trusted_root_is_a_configuration_error():
    root = json.loads(ROOT)
    root["tlogs"][0]["logId"]["keyId"] = base64.b64encode(b"\x00" * 32).decode()
    with pytest.raises(ValueError):
        SigstoreVerifier(root)
    with pytest.raises(ValueError):
        build_verifiers(sigstore_trusted_root=b'{"mediaType": "nope"}')


def test_default_registry_needs_a_trusted_root_for_sigstore():
    at, ref, _, _ = CASES[HELLO]
    assert refused(sample("sigstore-slsa", HELLO), ref, at, VERIFIERS["sigstore"]) == "not_configured"
    configured = build_verifiers(sigstore_trusted_root=ROOT)["sigstore"]
    assert configured.appraise(sample("sigstore-slsa", HELLO), reference=ref, binding=None, as_of=at).verified
