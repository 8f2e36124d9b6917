"""PSA attestation tokens (EAT): the real P2 and P1 samples, then every check refusing."""

from __future__ import annotations

import json

import cbor2
import pytest
from cryptography.hazmat.primitives.asymmetric import ec

from services.attestation.verifiers import AppraisalError, Binding, EatVerifier, ReferenceValues
from tests.attestation_factory import ec_public_jwk, psa_claims, psa_token, thumbprint
from tests.attestation_factory.samples import TODAY, sample, sample_json

IAK = sample_json("rats-eat", "psa_iak_pub.jwk.json")
# Expected values from tests/data/attestation/rats-eat/MANIFEST.md
BL = {"measurement_type": "BL", "measurement_value": "00010204" * 8, "signer_id": "519200ff" * 8}
PROT = {"measurement_type": "PRoT", "measurement_value": "05060708" * 8, "signer_id": "519200ff" * 8}
EXPECTED = {
    "client_id": 1,
    "security_lifecycle": 12288,
    "security_lifecycle_name": "secured",
    "implementation_id": "5051525354555657" * 4,
    "boot_seed": "deadbeef" * 8,
    "nonce": "00010203" * 8,
    "instance_id": "01" + "a0a1a2a3" * 8,
    "verification_service": "https://psa-verifier.org",
    "software_components": [BL, PROT],
}
REF = ReferenceValues(eat_keys=(IAK,), psa_measurements=(BL["measurement_value"], PROT["measurement_value"]))
V = EatVerifier()


def reason(exc: pytest.ExceptionInfo[AppraisalError]) -> str:
    return exc.value.reason.value


def refused(token: bytes, ref: ReferenceValues = REF, binding: Binding | None = None) -> str:
    with pytest.raises(AppraisalError) as exc:
        V.appraise(token, reference=ref, binding=binding, as_of=TODAY)
    return reason(exc)


# -- real samples ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "profile"),
    [("psa_token_p2.hex", "http://arm.com/psa/2.0.0"), ("psa_token_p1.hex", "PSA_IOT_PROFILE_1")],
)
def test_real_tokens_verify_at_any_time_with_manifest_claims(name, profile):
    # PSA tokens carry no time claims: "today" is as good as any time.
    result = V.appraise(sample("rats-eat", name), reference=REF, binding=None, as_of=TODAY)
    assert result.verified and not result.bound and result.expires_at is None
    assert result.claims == EXPECTED | {"profile": profile}


def test_real_token_as_raw_cbor_verifies():
    raw = bytes.fromhex(sample("rats-eat", "psa_token_p2.hex").decode())
    assert V.appraise(raw, reference=REF, binding=None, as_of=TODAY).verified


def test_tampered_token_fails_its_signature():
    assert refused(sample("rats-eat", "psa_token_p2_tampered.hex")) == "bad_signature"


def test_real_token_is_not_bound_to_our_challenge():
    binding = Binding(nonce=bytes(range(32)), key_thumbprint=thumbprint(IAK))
    assert refused(sample("rats-eat", "psa_token_p2.hex"), binding=binding) == "binding_mismatch"


def test_key_selection_and_trust():
    token = sample("rats-eat", "psa_token_p2.hex")
    assert refused(token, ReferenceValues()) == "untrusted_verifier_key"
    stranger = ec_public_jwk(ec.generate_private_key(ec.SECP256R1()))
    assert refused(token, ReferenceValues(eat_keys=(stranger,))) == "bad_signature"
    # A key that names another device does not apply to this one.
    assert (
        refused(token, ReferenceValues(eat_keys=(IAK | {"kid": "01" + "00" * 32},)))
        == "untrusted_verifier_key"
    )
    named = IAK | {"kid": EXPECTED["instance_id"]}
    assert V.appraise(token, reference=ReferenceValues(eat_keys=(named,)), binding=None, as_of=TODAY).claims


def test_profile_must_be_accepted():
    ref = ReferenceValues(eat_keys=(IAK,), eat_profiles=("tag:psacertified.org,2023:psa#tfm",))
    assert refused(sample("rats-eat", "psa_token_p1.hex"), ref) == "profile_mismatch"


def test_software_measurements_must_be_allowlisted():
    ref = ReferenceValues(eat_keys=(IAK,), psa_measurements=(BL["measurement_value"],))
    assert refused(sample("rats-eat", "psa_token_p2.hex"), ref) == "measurement_not_allowed"
    result = V.appraise(
        sample("rats-eat", "psa_token_p2.hex"),
        reference=ReferenceValues(eat_keys=(IAK,)),
        binding=None,
        as_of=TODAY,
    )
    assert not result.verified and result.unchecked == ("psa_measurements",)


def test_private_key_in_reference_values_is_a_configuration_error():
    private = ec_public_jwk(ec.generate_private_key(ec.SECP256R1())) | {"d": "AAAA"}
    assert (
        refused(sample("rats-eat", "psa_token_p2.hex"), ReferenceValues(eat_keys=(private,)))
        == "not_configured"
    )


# -- built tokens ----------------------------------------------------------------------------

KEY = ec.generate_private_key(ec.SECP256R1())
JWK = ec_public_jwk(KEY)
AGENT = ec_public_jwk(ec.generate_private_key(ec.SECP256R1()))
CHALLENGE = Binding(nonce=b"\x33" * 32, key_thumbprint=thumbprint(AGENT))
MEASURE = b"\x11" * 32
BUILT_REF = ReferenceValues(eat_keys=(JWK,), psa_measurements=(MEASURE.hex(),))


def built(binding: Binding = CHALLENGE, **kw) -> bytes:
    return psa_token(KEY, psa_claims(nonce=binding.digest(), **kw))


def test_bound_token_verifies():
    result = V.appraise(built(), reference=BUILT_REF, binding=CHALLENGE, as_of=TODAY)
    assert result.verified and result.bound
    result.require()


def test_wrong_nonce_old_nonce_and_other_key_are_refused():
    other = Binding(
        nonce=CHALLENGE.nonce,
        key_thumbprint=thumbprint(ec_public_jwk(ec.generate_private_key(ec.SECP256R1()))),
    )
    old = Binding(nonce=b"\x32" * 32, key_thumbprint=CHALLENGE.key_thumbprint)
    for b in (other, old):
        assert refused(built(b), BUILT_REF, CHALLENGE) == "binding_mismatch"
    wrong = psa_token(KEY, psa_claims(nonce=b"\x00" * 32))
    assert refused(wrong, BUILT_REF, CHALLENGE) == "binding_mismatch"


def test_debug_and_other_lifecycles_are_refused():
    assert refused(built(lifecycle=0x4000), BUILT_REF, CHALLENGE) == "lifecycle_not_secured"
    debug_ok = ReferenceValues(eat_keys=(JWK,), psa_measurements=(MEASURE.hex(),), debug_allowed=True)
    assert V.appraise(built(lifecycle=0x5001), reference=debug_ok, binding=CHALLENGE, as_of=TODAY).verified
    assert refused(built(lifecycle=0x6000), debug_ok, CHALLENGE) == "lifecycle_not_secured"
    assert refused(built(lifecycle=0x2000), debug_ok, CHALLENGE) == "lifecycle_not_secured"


def test_es384_tokens_and_algorithm_key_mismatch():
    key384 = ec.generate_private_key(ec.SECP384R1())
    token = psa_token(key384, psa_claims(nonce=CHALLENGE.digest()), alg=-35)
    ref = ReferenceValues(eat_keys=(ec_public_jwk(key384),), psa_measurements=(MEASURE.hex(),))
    assert V.appraise(token, reference=ref, binding=CHALLENGE, as_of=TODAY).bound
    # The token claims ES256 but only a P-384 key is trusted: no trusted key fits.
    assert refused(built(), ref, CHALLENGE) == "untrusted_verifier_key"
    # Algorithms outside the allow-list are refused before any key is tried.
    assert refused(psa_token(KEY, psa_claims(), alg=-8), BUILT_REF) == "unsupported"


@pytest.mark.parametrize(
    "change",
    [
        {2395: "secured"},
        {2396: b"short"},
        {256: b"\x02" + b"\xa0" * 32},
        {10: b"\x00" * 20},
        {2399: []},
        {2399: [{1: "BL"}]},
        {2394: None},
    ],
)
def test_malformed_claims_are_refused(change):
    claims = psa_claims() | change
    assert refused(psa_token(KEY, claims), BUILT_REF) == "malformed"


def test_token_without_profile_is_refused():
    claims = {k: v for k, v in psa_claims().items() if k != 265}
    assert refused(psa_token(KEY, claims), BUILT_REF) == "profile_mismatch"


def test_payload_must_be_a_map():
    protected = cbor2.dumps({1: -7})
    msg = cbor2.dumps(cbor2.CBORTag(18, [protected, {}, cbor2.dumps([1, 2]), b"\x00" * 64]))
    assert refused(msg, BUILT_REF) == "malformed"


def test_keys_load_from_json():
    ref = ReferenceValues.from_json(json.dumps({"eat_keys": [IAK]}))
    assert V.appraise(sample("rats-eat", "psa_token_p2.hex"), reference=ref, binding=None, as_of=TODAY).claims
