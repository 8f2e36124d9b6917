"""AWS Nitro attestation documents: the real samples, then every check refusing."""

from __future__ import annotations

import base64
import hashlib
import io
import zipfile
from datetime import timedelta

import cbor2
import pytest
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec

from services.attestation.verifiers import AppraisalError, Binding, NitroVerifier, ReferenceValues
from services.attestation.verifiers.nitro import AWS_ROOT_G1_SHA256, aws_root
from tests.attestation_factory import (
    GOOD_PCRS,
    der,
    ec_public_jwk,
    make_cert,
    make_nitro_pki,
    nitro_document,
    nitro_pki,
    pem,
    thumbprint,
)
from tests.attestation_factory.samples import NITRO_DEBUG_AT, NITRO_PROD_AT, TODAY, sample

# Expected values from tests/data/attestation/nitro/MANIFEST.md
PROD_PCRS = {
    0: "e72a46ca80a260fb044a125442f0c7e331813bcbaf9724d9f3857758992766f2d65710a27aa94ae3949dd54e7c9fe86a",
    1: "0343b056cd8485ca7890ddd833476d78460aed2aa161548e4e26bedf321726696257d623e8805f3f605946b3d8b0c6aa",
    2: "d5dcbdea0aa39c802f9d55ced2ea6e4d74ecec5f08fe40c508882639c9090642669106a062a3e24ee2805a3024b9b75c",
    3: "00" * 48,
    4: "45706d7b621e4620a332e147a5ddb000b049f73d47d3e61f6b03d2069152d4df6a4a786ad1c10102b955799a9dc96b44",
    8: "00" * 48,
}
PROD_MODULE = "i-0a22e5c5f24d22174-enc0191cceb4289903f"
DEBUG_MODULE = "i-0a22e5c5f24d22174-enc0191ccebaf8feaba"
ONES_1024_SHA256 = "5a648d8015900d89664e00e125df179636301a2d8fa191c1aa2bd9358ea53a69"

PROD_REF = ReferenceValues(nitro_pcrs={i: (v,) for i, v in PROD_PCRS.items()})
AWS = NitroVerifier()


def prod() -> bytes:
    return sample("nitro", "nitro_attestation_prod.b64")


def reason(exc: pytest.ExceptionInfo[AppraisalError]) -> str:
    return exc.value.reason.value


# -- real samples ----------------------------------------------------------------------------


def test_prod_document_verifies_as_of_its_timestamp_with_manifest_values():
    result = AWS.appraise(prod(), reference=PROD_REF, binding=None, as_of=NITRO_PROD_AT)
    assert result.verified and not result.bound and result.unchecked == ()
    claims = result.claims
    assert claims["module_id"] == PROD_MODULE
    assert claims["timestamp"] == 1725719859545
    assert claims["digest"] == "SHA384"
    assert {int(k): v for k, v in claims["pcrs"].items() if int(k) in PROD_PCRS} == PROD_PCRS
    assert all(claims["pcrs"][str(i)] == "00" * 48 for i in range(5, 16))
    for name in ("public_key", "user_data", "nonce"):
        assert hashlib.sha256(bytes.fromhex(claims[name])).hexdigest() == ONES_1024_SHA256
    assert claims["root_sha256"] == AWS_ROOT_G1_SHA256
    assert claims["debug"] is False
    # Fresh for max_evidence_age_s (300 s) after the timestamp, well inside the chain window.
    assert result.expires_at == NITRO_PROD_AT + timedelta(seconds=300)


def test_prod_document_given_as_raw_cbor_also_verifies():
    raw = base64.b64decode(prod())
    assert AWS.appraise(raw, reference=PROD_REF, binding=None, as_of=NITRO_PROD_AT).verified


def test_debug_document_is_refused_as_debug_enclave():
    with pytest.raises(AppraisalError) as exc:
        AWS.appraise(
            sample("nitro", "nitro_attestation_debug.b64"),
            reference=PROD_REF,
            binding=None,
            as_of=NITRO_DEBUG_AT,
        )
    assert reason(exc) == "debug_enclave"


def test_debug_document_is_genuine_when_debug_is_allowed():
    ref = ReferenceValues(debug_allowed=True, nitro_pcrs={0: ("00" * 48,), 4: (PROD_PCRS[4],)})
    result = AWS.appraise(
        sample("nitro", "nitro_attestation_debug.b64"), reference=ref, binding=None, as_of=NITRO_DEBUG_AT
    )
    assert result.verified
    assert result.claims["module_id"] == DEBUG_MODULE
    assert result.claims["debug"] is True
    assert all(result.claims["pcrs"][str(i)] == "00" * 48 for i in range(4))


def test_tampered_document_fails_its_signature():
    with pytest.raises(AppraisalError) as exc:
        AWS.appraise(
            sample("nitro", "nitro_attestation_prod_tampered.b64"),
            reference=PROD_REF,
            binding=None,
            as_of=NITRO_PROD_AT,
        )
    assert reason(exc) == "bad_signature"


def test_self_signed_document_is_refused():
    # Its unprotected header (and cabundle) is CBOR null: not a COSE_Sign1 we accept, long before
    # the chain would be found not to reach the AWS root (that refusal is tested below).
    doc = sample("nitro", "nitro_attestation_selfsigned_not_aws.b64")
    with pytest.raises(AppraisalError) as exc:
        AWS.appraise(doc, reference=PROD_REF, binding=None, as_of=NITRO_PROD_AT)
    assert reason(exc) == "malformed"
    # Even with a conformant unprotected header its null cabundle is refused.
    msg = cbor2.loads(base64.b64decode(doc))
    fixed = cbor2.dumps([msg[0], {}, msg[2], msg[3]])
    with pytest.raises(AppraisalError) as exc:
        AWS.appraise(fixed, reference=PROD_REF, binding=None, as_of=NITRO_PROD_AT)
    assert reason(exc) == "malformed"


def test_real_documents_are_expired_today():
    for name in ("nitro_attestation_prod.b64", "nitro_attestation_debug.b64"):
        with pytest.raises(AppraisalError) as exc:
            AWS.appraise(
                sample("nitro", name),
                reference=ReferenceValues(debug_allowed=True),
                binding=None,
                as_of=TODAY,
            )
        assert reason(exc) == "cert_expired"


def test_prod_document_before_its_leaf_is_valid():
    with pytest.raises(AppraisalError) as exc:
        AWS.appraise(prod(), reference=PROD_REF, binding=None, as_of=NITRO_PROD_AT - timedelta(minutes=10))
    assert reason(exc) == "cert_not_yet_valid"


def test_prod_document_is_stale_after_max_age_even_with_valid_certificates():
    with pytest.raises(AppraisalError) as exc:
        AWS.appraise(prod(), reference=PROD_REF, binding=None, as_of=NITRO_PROD_AT + timedelta(minutes=30))
    assert reason(exc) == "stale"


def test_prod_document_with_other_pcrs_accepted_is_refused():
    ref = ReferenceValues(nitro_pcrs={0: ("ab" * 48,)})
    with pytest.raises(AppraisalError) as exc:
        AWS.appraise(prod(), reference=ref, binding=None, as_of=NITRO_PROD_AT)
    assert reason(exc) == "pcr_not_allowed"


def test_prod_document_is_not_bound_to_our_challenge():
    binding = Binding(
        nonce=b"\x07" * 32, key_thumbprint=thumbprint(ec_public_jwk(ec.generate_private_key(ec.SECP256R1())))
    )
    with pytest.raises(AppraisalError) as exc:
        AWS.appraise(prod(), reference=PROD_REF, binding=binding, as_of=NITRO_PROD_AT)
    assert reason(exc) == "nonce_mismatch"


def test_shipped_root_is_the_pinned_aws_root_g1():
    root = aws_root()
    assert hashlib.sha256(der(root)).hexdigest() == AWS_ROOT_G1_SHA256
    assert pem(root).strip() == sample("nitro", "AWS_NitroEnclaves_Root-G1.pem").strip()
    archive = sample("nitro", "AWS_NitroEnclaves_Root-G1.zip")
    assert (
        hashlib.sha256(archive).hexdigest()
        == sample("nitro", "AWS_NitroEnclaves_Root-G1.zip.sha256.hex").decode().split()[0]
    )
    with zipfile.ZipFile(io.BytesIO(archive)) as z:
        assert z.read("root.pem").strip() == pem(root).strip()


# -- built documents: every check refuses ----------------------------------------------------

PKI = nitro_pki()
TEST = NitroVerifier(roots=[PKI.root])
AT = NITRO_PROD_AT
AGENT = ec_public_jwk(ec.generate_private_key(ec.SECP256R1()))
OTHER_AGENT = ec_public_jwk(ec.generate_private_key(ec.SECP256R1()))
CHALLENGE = Binding(nonce=b"\x11" * 32, key_thumbprint=thumbprint(AGENT))
GOOD_REF = ReferenceValues(nitro_pcrs={i: (GOOD_PCRS[i].hex(),) for i in (0, 1, 2, 8)})


def bound_doc(binding: Binding = CHALLENGE, **kw) -> bytes:
    return nitro_document(timestamp=AT, nonce=binding.nonce, user_data=binding.digest(), **kw)


def appraise(
    doc: bytes, *, ref: ReferenceValues = GOOD_REF, binding: Binding | None = CHALLENGE, verifier=TEST
):
    return verifier.appraise(doc, reference=ref, binding=binding, as_of=AT)


def refused(doc: bytes, **kw) -> str:
    with pytest.raises(AppraisalError) as exc:
        appraise(doc, **kw)
    return reason(exc)


def test_bound_document_verifies_and_is_bound():
    result = appraise(bound_doc())
    assert result.verified and result.bound
    assert result.claims["nonce"] == CHALLENGE.nonce.hex()
    result.require()


def test_untagged_and_text_armoured_documents_verify():
    for doc in (
        bound_doc(tagged=False),
        base64.b64encode(bound_doc()) + b"\n",
        base64.urlsafe_b64encode(bound_doc()),
        bound_doc().hex().encode(),
    ):
        assert appraise(doc).bound


def test_wrong_nonce_is_refused():
    doc = nitro_document(timestamp=AT, nonce=b"\x99" * 32, user_data=CHALLENGE.digest())
    assert refused(doc) == "nonce_mismatch"


def test_old_nonce_is_refused():
    earlier = Binding(nonce=b"\x10" * 32, key_thumbprint=CHALLENGE.key_thumbprint)
    assert refused(bound_doc(earlier)) == "nonce_mismatch"


def test_document_bound_to_another_key_is_refused():
    other = Binding(nonce=CHALLENGE.nonce, key_thumbprint=thumbprint(OTHER_AGENT))
    assert refused(bound_doc(other)) == "key_binding_mismatch"


def test_missing_nonce_or_user_data_is_refused():
    assert refused(nitro_document(timestamp=AT, user_data=CHALLENGE.digest())) == "nonce_mismatch"
    assert refused(nitro_document(timestamp=AT, nonce=CHALLENGE.nonce)) == "key_binding_mismatch"


def test_unbound_check_reports_bound_false_and_require_refuses():
    result = appraise(nitro_document(timestamp=AT), binding=None)
    assert result.verified and not result.bound
    with pytest.raises(AppraisalError) as exc:
        result.require()
    assert reason(exc) == "unbound"
    result.require(bound=False)


def test_all_zero_pcrs_mean_debug_enclave():
    pcrs = dict(GOOD_PCRS) | {0: bytes(48), 1: bytes(48), 2: bytes(48)}
    assert refused(bound_doc(pcrs=pcrs)) == "debug_enclave"
    ref = ReferenceValues(debug_allowed=True, nitro_pcrs={0: ("00" * 48,)})
    assert appraise(bound_doc(pcrs=pcrs), ref=ref).verified


def test_pcr_not_in_allowlist_or_absent_is_refused():
    assert refused(bound_doc(pcrs=dict(GOOD_PCRS) | {1: b"\x77" * 48})) == "pcr_not_allowed"
    assert refused(bound_doc(pcrs={k: v for k, v in GOOD_PCRS.items() if k != 8})) == "pcr_not_allowed"


def test_missing_policy_is_reported_not_passed():
    result = appraise(bound_doc(), ref=ReferenceValues())
    assert not result.verified and result.unchecked == ("nitro_pcrs",)
    with pytest.raises(AppraisalError) as exc:
        result.require()
    assert reason(exc) == "policy_incomplete"


def test_future_and_stale_timestamps_are_refused():
    later = nitro_document(
        timestamp=AT + timedelta(minutes=5), nonce=CHALLENGE.nonce, user_data=CHALLENGE.digest()
    )
    assert refused(later) == "future_timestamp"
    older = nitro_document(
        timestamp=AT - timedelta(minutes=7), nonce=CHALLENGE.nonce, user_data=CHALLENGE.digest()
    )
    assert refused(older) == "stale"
    # Within max age and skew: accepted.
    recent = nitro_document(
        timestamp=AT - timedelta(minutes=4), nonce=CHALLENGE.nonce, user_data=CHALLENGE.digest()
    )
    assert appraise(recent).bound


def test_signature_by_another_key_is_refused():
    assert refused(bound_doc(sign_key=ec.generate_private_key(ec.SECP384R1()))) == "bad_signature"


def test_only_es384_is_accepted():
    assert refused(bound_doc(alg=-7, sign_key=ec.generate_private_key(ec.SECP256R1()))) == "unsupported"


def test_document_from_an_unpinned_root_is_refused_by_the_aws_verifier():
    assert refused(bound_doc(), verifier=AWS) == "chain_untrusted"


def test_leaf_not_issued_by_the_bundle_is_refused():
    stranger_key = ec.generate_private_key(ec.SECP384R1())
    stranger = make_cert("stranger", stranger_key.public_key(), issuer=None, self_key=stranger_key, ca=True)
    leaf_key = ec.generate_private_key(ec.SECP384R1())
    leaf = make_cert("leaf", leaf_key.public_key(), issuer=(stranger, stranger_key), ca=False)
    doc = nitro_document(
        timestamp=AT,
        nonce=CHALLENGE.nonce,
        user_data=CHALLENGE.digest(),
        sign_key=leaf_key,
        fields={"certificate": der(leaf)},
    )
    assert refused(doc) == "chain_untrusted"


def test_chain_signed_with_another_hash_is_refused():
    pki = make_nitro_pki(hash_alg=hashes.SHA256())
    doc = nitro_document(pki, timestamp=AT, nonce=CHALLENGE.nonce, user_data=CHALLENGE.digest())
    assert refused(doc, verifier=NitroVerifier(roots=[pki.root])) == "chain_untrusted"


def test_expired_and_not_yet_valid_leaves_are_refused():
    expired = make_nitro_pki(leaf_not_before=AT - timedelta(hours=4), leaf_not_after=AT - timedelta(hours=1))
    doc = nitro_document(expired, timestamp=AT, nonce=CHALLENGE.nonce, user_data=CHALLENGE.digest())
    assert refused(doc, verifier=NitroVerifier(roots=[expired.root])) == "cert_expired"
    early = make_nitro_pki(leaf_not_before=AT + timedelta(hours=1))
    doc = nitro_document(early, timestamp=AT, nonce=CHALLENGE.nonce, user_data=CHALLENGE.digest())
    assert refused(doc, verifier=NitroVerifier(roots=[early.root])) == "cert_not_yet_valid"


@pytest.mark.parametrize(
    "change",
    [
        {"fields": {"digest": "SHA256"}},
        {"fields": {"module_id": ""}},
        {"fields": {"timestamp": 0}},
        {"fields": {"pcrs": {0: b"\x01" * 32}}},
        {"fields": {"pcrs": {32: b"\x01" * 48}}},
        {"fields": {"pcrs": {}}},
        {"fields": {"cabundle": []}},
        {"fields": {"user_data": None}},
        {"fields": {"nonce": b"\x00" * 1025}},
        {"fields": {"extra": b""}},
        {"drop": ["pcrs"]},
        {"drop": ["certificate"]},
    ],
)
def test_malformed_payloads_are_refused(change):
    assert refused(nitro_document(timestamp=AT, **change)) == "malformed"


def test_critical_header_parameters_are_refused():
    doc = cbor2.loads(bound_doc())
    protected = cbor2.dumps({1: -35, 2: [99]})
    msg = cbor2.CBORTag(18, [protected, {}, doc.value[2], doc.value[3]])
    assert refused(cbor2.dumps(msg)) == "unsupported"


def test_trailing_bytes_and_wrong_tags_are_refused():
    assert refused(bound_doc() + b"\x00") == "malformed"
    wrong_tag = cbor2.dumps(cbor2.CBORTag(17, cbor2.loads(bound_doc()).value))
    assert refused(wrong_tag) == "malformed"
