"""EAR attestation results (JWT): the real Veraison sample, then every check refusing."""

from __future__ import annotations

import base64
import json
from datetime import timedelta

import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import ec

from services.attestation.verifiers import AppraisalError, Binding, EarVerifier, ReferenceValues
from services.attestation.verifiers.ear import tier
from tests.attestation_factory import b64u, ear_claims, ear_jwt, ec_public_jwk, thumbprint
from tests.attestation_factory.samples import EAR_IAT, TODAY, sample, sample_json

VERIFIER_KEY = sample_json("rats-ear", "ear_verifier_pub.jwk.json")
REF = ReferenceValues(ear_keys=(VERIFIER_KEY,))
V = EarVerifier()
SOON_AFTER = EAR_IAT + timedelta(minutes=1)


def reason(exc: pytest.ExceptionInfo[AppraisalError]) -> str:
    return exc.value.reason.value


def refused(
    token: bytes, *, ref: ReferenceValues = REF, at=SOON_AFTER, binding: Binding | None = None
) -> str:
    with pytest.raises(AppraisalError) as exc:
        V.appraise(token, reference=ref, binding=binding, as_of=at)
    return reason(exc)


# -- the real sample -------------------------------------------------------------------------


def test_real_ear_verifies_as_of_its_iat_with_manifest_values():
    result = V.appraise(
        sample("rats-ear", "ear_affirming.jwt"), reference=REF, binding=None, as_of=SOON_AFTER
    )
    assert result.verified and not result.bound
    assert result.claims["eat_profile"] == "tag:github.com/veraison/ar4si,2022-10-17"
    assert result.claims["iat"] == 1666091373
    legacy = result.claims["submods"]["legacy"]
    assert legacy["status"] == "affirming"
    assert legacy["appraisal_policy_id"] == "https://veraison.example/policy/1/60a0068d"
    assert legacy["trustworthiness_vector"] == {
        "instance-identity": 2,
        "configuration": 2,
        "executables": 3,
        "file-system": 2,
        "hardware": 2,
        "runtime-opaque": 2,
        "storage-opaque": 2,
        "sourced-data": 2,
    }
    assert set(legacy["tiers"].values()) == {"affirming"}
    assert result.expires_at == EAR_IAT + timedelta(seconds=300)


def test_real_ear_is_stale_today():
    assert refused(sample("rats-ear", "ear_affirming.jwt"), at=TODAY) == "stale"


def test_real_ear_from_before_its_iat_is_refused():
    assert (
        refused(sample("rats-ear", "ear_affirming.jwt"), at=EAR_IAT - timedelta(minutes=5))
        == "future_timestamp"
    )


def test_tampered_ear_fails_its_signature():
    assert refused(sample("rats-ear", "ear_affirming_tampered.jwt")) == "bad_signature"


def test_verifier_key_must_be_trusted():
    token = sample("rats-ear", "ear_affirming.jwt")
    assert refused(token, ref=ReferenceValues()) == "untrusted_verifier_key"
    stranger = ec_public_jwk(ec.generate_private_key(ec.SECP256R1()))
    assert refused(token, ref=ReferenceValues(ear_keys=(stranger,))) == "bad_signature"
    p384 = ec_public_jwk(ec.generate_private_key(ec.SECP384R1()))
    assert refused(token, ref=ReferenceValues(ear_keys=(p384,))) == "unsupported"


def test_legacy_profile_can_be_refused():
    ref = ReferenceValues(ear_keys=(VERIFIER_KEY,), ear_profiles=("tag:github.com,2023:veraison/ear",))
    assert refused(sample("rats-ear", "ear_affirming.jwt"), ref=ref) == "profile_mismatch"


def test_real_ear_is_not_bound_and_lacks_required_submods():
    binding = Binding(nonce=b"\x01" * 16, key_thumbprint=thumbprint(VERIFIER_KEY))
    assert refused(sample("rats-ear", "ear_affirming.jwt"), binding=binding) == "binding_mismatch"
    ref = ReferenceValues(ear_keys=(VERIFIER_KEY,), ear_required_submods=("cca-realm",))
    assert refused(sample("rats-ear", "ear_affirming.jwt"), ref=ref) == "status_not_affirming"


# -- built results ---------------------------------------------------------------------------

KEY = ec.generate_private_key(ec.SECP256R1())
BUILT_REF = ReferenceValues(ear_keys=(ec_public_jwk(KEY, kid="verifier-1"),))
AGENT = ec_public_jwk(ec.generate_private_key(ec.SECP256R1()))
CHALLENGE = Binding(nonce=b"\x44" * 32, key_thumbprint=thumbprint(AGENT))
AT = TODAY


def built(binding: Binding | None = CHALLENGE, **kw) -> bytes:
    kw.setdefault("iat", AT - timedelta(seconds=10))
    nonce = b64u(binding.digest()) if binding else None
    return ear_jwt(KEY, ear_claims(nonce=nonce, **kw), headers={"kid": "verifier-1"})


def built_refused(token: bytes, ref: ReferenceValues = BUILT_REF, binding: Binding | None = CHALLENGE) -> str:
    return refused(token, ref=ref, at=AT, binding=binding)


def test_bound_ear_verifies():
    result = V.appraise(built(), reference=BUILT_REF, binding=CHALLENGE, as_of=AT)
    assert result.verified and result.bound
    assert result.claims["submods"]["agent"]["status"] == "affirming"
    result.require()


def test_wrong_nonce_old_nonce_and_other_key_are_refused():
    other = Binding(
        nonce=CHALLENGE.nonce,
        key_thumbprint=thumbprint(ec_public_jwk(ec.generate_private_key(ec.SECP256R1()))),
    )
    old = Binding(nonce=b"\x43" * 32, key_thumbprint=CHALLENGE.key_thumbprint)
    for b in (other, old):
        assert built_refused(built(b)) == "binding_mismatch"
    assert built_refused(built(None)) == "binding_mismatch"


@pytest.mark.parametrize("status", ["warning", "contraindicated", "none", 32])
def test_non_affirming_status_is_refused(status):
    assert built_refused(built(status=status)) == "status_not_affirming"


def test_affirming_status_with_a_contraindicated_claim_is_refused():
    assert built_refused(built(vector={"executables": 96, "hardware": 2})) == "status_not_affirming"
    assert built_refused(built(vector={"executables": -40})) == "status_not_affirming"


def test_required_submods_only_are_judged_when_listed():
    claims = ear_claims(iat=AT, nonce=b64u(CHALLENGE.digest()))
    claims["submods"]["extra"] = {"ear.status": "warning"}
    token = ear_jwt(KEY, claims, headers={"kid": "verifier-1"})
    assert built_refused(token) == "status_not_affirming"
    ref = ReferenceValues(ear_keys=BUILT_REF.ear_keys, ear_required_submods=("agent",))
    assert V.appraise(token, reference=ref, binding=CHALLENGE, as_of=AT).bound


def test_expired_and_stale_ears_are_refused():
    claims = ear_claims(iat=AT - timedelta(seconds=100), nonce=b64u(CHALLENGE.digest())) | {
        "exp": int((AT - timedelta(seconds=90)).timestamp())
    }
    assert built_refused(ear_jwt(KEY, claims, headers={"kid": "verifier-1"})) == "expired"
    assert built_refused(built(iat=AT - timedelta(minutes=10))) == "stale"


def test_unknown_kid_is_refused():
    token = ear_jwt(KEY, ear_claims(iat=AT), headers={"kid": "verifier-2"})
    assert built_refused(token, binding=None) == "untrusted_verifier_key"


def test_unsigned_and_hmac_tokens_are_refused():
    claims = ear_claims(iat=AT)
    none_token = jwt.encode(claims, None, algorithm="none").encode()
    assert built_refused(none_token, binding=None) == "unsupported"
    hmac_token = jwt.encode(claims, "s" * 32, algorithm="HS256").encode()
    assert built_refused(hmac_token, binding=None) == "unsupported"


@pytest.mark.parametrize(
    "change",
    [
        {"submods": {}},
        {"submods": {"agent": {"ear.status": "great"}}},
        {"submods": {"agent": {"ear.status": "affirming", "ear.trustworthiness-vector": {"mood": 2}}}},
        {"submods": {"agent": {"ear.status": "affirming", "ear.trustworthiness-vector": {"hardware": 300}}}},
        {"iat": "yesterday"},
    ],
)
def test_malformed_results_are_refused(change):
    claims = ear_claims(iat=AT) | change
    assert built_refused(ear_jwt(KEY, claims, headers={"kid": "verifier-1"}), binding=None) == "malformed"


def test_non_jwt_input_is_refused():
    for junk in (
        b"not.a.jwt",
        b"\xff\xfe",
        b"a.b",
        base64.b64encode(json.dumps({"alg": "ES256"}).encode()) + b"..x",
    ):
        assert built_refused(junk, binding=None) == "malformed"


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (0, "none"),
        (1, "none"),
        (-1, "none"),
        (2, "affirming"),
        (31, "affirming"),
        (32, "warning"),
        (95, "warning"),
        (96, "contraindicated"),
        (127, "contraindicated"),
        (-2, "affirming"),
        (-33, "warning"),
        (-128, "contraindicated"),
    ],
)
def test_tiers(value, expected):
    assert tier(value) == expected
