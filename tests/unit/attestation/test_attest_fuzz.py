"""Hostile input: whatever the bytes, a verifier answers with AppraisalError, never a crash."""

from __future__ import annotations

import base64
import json
from datetime import timedelta

import cbor2
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from services.attestation.verifiers import (
    AppraisalError,
    EarVerifier,
    EatVerifier,
    NitroVerifier,
    ReferenceValues,
    SevSnpVerifier,
    SigstoreVerifier,
)
from tests.attestation_factory.samples import (
    EAR_IAT,
    NITRO_PROD_AT,
    SIGSTORE_HELLO_AT,
    SNP_MILAN_AT,
    TODAY,
    sample,
    sample_json,
)

FUZZ = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])

NITRO = NitroVerifier()
SNP = SevSnpVerifier()
EAT = EatVerifier()
EAR = EarVerifier()
SIGSTORE = SigstoreVerifier(sample("sigstore-slsa", "trusted_root_public_good.json"))
ALL = [NITRO, SNP, EAT, EAR, SIGSTORE]

REF = ReferenceValues(
    debug_allowed=True,
    eat_keys=(sample_json("rats-eat", "psa_iak_pub.jwk.json"),),
    ear_keys=(sample_json("rats-ear", "ear_verifier_pub.jwk.json"),),
)

NITRO_RAW = base64.b64decode(sample("nitro", "nitro_attestation_prod.b64"))
SNP_RAW = sample("sev-snp", "milan_report_no_idblock.bin") + sample("sev-snp", "milan_vcek.der")
PSA_RAW = bytes.fromhex(sample("rats-eat", "psa_token_p2.hex").decode())
EAR_RAW = sample("rats-ear", "ear_affirming.jwt").strip()
# Each raw sample with the time at which it verifies.
GENUINE = [
    (NITRO, NITRO_RAW, NITRO_PROD_AT),
    (SNP, SNP_RAW, SNP_MILAN_AT),
    (EAT, PSA_RAW, TODAY),
    (EAR, EAR_RAW, EAR_IAT + timedelta(minutes=1)),
]


def only_appraisal_errors(verifier, evidence: bytes, at=TODAY) -> None:
    try:
        verifier.appraise(evidence, reference=REF, binding=None, as_of=at)
    except AppraisalError:
        pass


@pytest.mark.parametrize(("verifier", "raw", "at"), GENUINE, ids=["nitro", "snp", "eat", "ear"])
def test_genuine_samples_pass_the_fuzz_baseline(verifier, raw, at):
    assert verifier.appraise(raw, reference=REF, binding=None, as_of=at).claims


@FUZZ
@given(data=st.binary(max_size=4096))
def test_random_bytes_are_refused_by_every_verifier(data):
    for verifier in ALL:
        only_appraisal_errors(verifier, data)


@FUZZ
@given(case=st.sampled_from(range(len(GENUINE))), data=st.data())
def test_any_single_bit_flip_in_genuine_evidence_is_refused(case, data):
    verifier, raw, at = GENUINE[case]
    index = data.draw(st.integers(0, len(raw) - 1))
    bit = data.draw(st.integers(0, 7))
    flipped = bytearray(raw)
    flipped[index] ^= 1 << bit
    with pytest.raises(AppraisalError):
        verifier.appraise(bytes(flipped), reference=REF, binding=None, as_of=at)


@FUZZ
@given(case=st.sampled_from(range(len(GENUINE))), cut=st.integers(0, 100))
def test_truncated_genuine_evidence_is_refused(case, cut):
    verifier, raw, at = GENUINE[case]
    with pytest.raises(AppraisalError):
        verifier.appraise(raw[: len(raw) * cut // 101], reference=REF, binding=None, as_of=at)


cbor_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(2**64), 2**64)
    | st.floats(allow_nan=False)
    | st.binary(max_size=80)
    | st.text(max_size=20),
    lambda children: (
        st.lists(children, max_size=6)
        | st.dictionaries(st.integers(-80000, 3000) | st.text(max_size=12), children, max_size=8)
    ),
    max_leaves=30,
)
# Claim keys the parsers look for, so the generator reaches deep into them.
nitro_keys = st.sampled_from(
    ["module_id", "digest", "timestamp", "pcrs", "certificate", "cabundle", "nonce", "user_data"]
)
psa_keys = st.sampled_from([265, 2394, 2395, 2396, 2397, 2399, 10, 256, 2400, -75000, -75006, -75008, -75009])


@FUZZ
@given(payload=st.dictionaries(nitro_keys, cbor_values, max_size=9), alg=st.sampled_from([-35, -7, 1, "x"]))
def test_random_nitro_payloads_are_refused(payload, alg):
    doc = cbor2.dumps(cbor2.CBORTag(18, [cbor2.dumps({1: alg}), {}, cbor2.dumps(payload), b"\x00" * 96]))
    only_appraisal_errors(NITRO, doc, NITRO_PROD_AT)


@FUZZ
@given(payload=st.dictionaries(psa_keys, cbor_values, max_size=12) | cbor_values)
def test_random_psa_payloads_are_refused(payload):
    doc = cbor2.dumps(cbor2.CBORTag(18, [cbor2.dumps({1: -7}), {}, cbor2.dumps(payload), b"\x00" * 64]))
    with pytest.raises(AppraisalError):
        EAT.appraise(doc, reference=REF, binding=None, as_of=TODAY)


@FUZZ
@given(outer=cbor_values)
def test_random_cbor_documents_are_refused(outer):
    data = cbor2.dumps(outer)
    for verifier in (NITRO, EAT):
        only_appraisal_errors(verifier, data)


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=30),
    lambda children: (
        st.lists(children, max_size=5) | st.dictionaries(st.text(max_size=15), children, max_size=6)
    ),
    max_leaves=25,
)


@FUZZ
@given(obj=st.dictionaries(st.sampled_from(["report", "vcek", "cert_chain", "x"]), json_values, max_size=4))
def test_random_snp_containers_are_refused(obj):
    with pytest.raises(AppraisalError):
        SNP.appraise(json.dumps(obj).encode(), reference=REF, binding=None, as_of=TODAY)


def _paths(obj, prefix=()):
    """Every path to a value inside a JSON document."""
    yield prefix
    if isinstance(obj, dict):
        for key, value in obj.items():
            yield from _paths(value, (*prefix, key))
    elif isinstance(obj, list):
        for i, value in enumerate(obj):
            yield from _paths(value, (*prefix, i))


HELLO = sample_json("sigstore-slsa", "hello-world.sigstore.json")
HELLO_PATHS = [p for p in _paths(HELLO) if p]


@FUZZ
@given(path=st.sampled_from(HELLO_PATHS), value=json_values)
def test_replacing_any_member_of_a_real_bundle_never_crashes(path, value):
    bundle = json.loads(json.dumps(HELLO))
    target = bundle
    for key in path[:-1]:
        target = target[key]
    target[path[-1]] = value
    # Some members are not covered by any signature (timestampVerificationData, for one):
    # changing them may leave the bundle valid. Anything else must be a clean refusal.
    only_appraisal_errors(SIGSTORE, json.dumps(bundle).encode(), SIGSTORE_HELLO_AT)


@FUZZ
@given(
    obj=st.dictionaries(
        st.sampled_from(["mediaType", "verificationMaterial", "dsseEnvelope", "messageSignature"]),
        json_values,
    )
)
def test_random_sigstore_bundles_are_refused(obj):
    obj.setdefault("mediaType", "application/vnd.dev.sigstore.bundle.v0.3+json")
    with pytest.raises(AppraisalError):
        SIGSTORE.appraise(json.dumps(obj).encode(), reference=REF, binding=None, as_of=TODAY)
