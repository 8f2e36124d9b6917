"""Sigstore verification against a private Fulcio/Rekor/CT: every bundle shape, every refusal."""

from __future__ import annotations

import copy
import hashlib
from datetime import UTC, datetime, timedelta

import pytest
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID

from services.attestation.verifiers import (
    AppraisalError,
    ReferenceValues,
    SigstoreIdentity,
    SigstoreVerifier,
    SlsaSource,
)
from tests.attestation_factory import make_cert
from tests.attestation_factory.sigstore import (
    BUILDER,
    GITHUB_ISSUER,
    REPO,
    WORKFLOW,
    dsse_bundle,
    encode,
    message_bundle,
    sigstore_world,
    statement,
)

WORLD = sigstore_world()
V = SigstoreVerifier(WORLD.trusted_root())
AT = datetime(2025, 3, 1, 12, 0, tzinfo=UTC)
MODEL = b"model weights, version 7"
DIGEST = "sha256:" + hashlib.sha256(MODEL).hexdigest()
FULL = ReferenceValues(
    sigstore_identities=(SigstoreIdentity(issuer=GITHUB_ISSUER, subject=WORKFLOW),),
    artifact_digests={"model": (DIGEST,)},
    slsa_builder_ids=(BUILDER,),
    slsa_sources=(SlsaSource(repository=REPO, ref="refs/heads/main"),),
)
STMT = statement({"sha256": DIGEST.split(":")[1]})


def reason(exc: pytest.ExceptionInfo[AppraisalError]) -> str:
    return exc.value.reason.value


def refused(
    bundle: dict, ref: ReferenceValues = FULL, verifier: SigstoreVerifier = V, at: datetime = AT
) -> str:
    with pytest.raises(AppraisalError) as exc:
        verifier.appraise(encode(bundle), reference=ref, binding=None, as_of=at)
    return reason(exc)


def ok(bundle: dict, ref: ReferenceValues = FULL, at: datetime = AT):
    return V.appraise(encode(bundle), reference=ref, binding=None, as_of=at)


@pytest.mark.parametrize("kind", ["dsse", "intoto"])
@pytest.mark.parametrize("version", ["0.1", "0.2", "0.3"])
def test_dsse_bundles_of_every_version_verify(kind, version):
    bundle = dsse_bundle(
        WORLD, STMT, signed_at=AT, kind=kind, version=version, entry_options={"proof": version != "0.1"}
    )
    result = ok(bundle)
    assert result.verified and result.claims["matched_digests"] == {"model": [DIGEST]}
    assert result.claims["bundle_version"] == version


def test_message_signature_bundle_verifies():
    result = ok(
        message_bundle(WORLD, MODEL, signed_at=AT), ReferenceValues(artifact_digests={"model": (DIGEST,)})
    )
    assert result.claims["entry_kind"] == "hashedrekord/0.0.1"
    assert result.claims["subjects"] == [{"name": "", "digest": {"sha256": DIGEST.split(":")[1]}}]


def test_message_signature_over_another_artifact_is_refused():
    other = ReferenceValues(artifact_digests={"model": ("sha256:" + "11" * 32,)})
    assert refused(message_bundle(WORLD, MODEL, signed_at=AT), other) == "digest_mismatch"
    # A plain signature carries no provenance: a builder policy cannot be met.
    assert refused(
        message_bundle(WORLD, MODEL, signed_at=AT), ReferenceValues(slsa_builder_ids=(BUILDER,))
    ) == ("builder_untrusted")


def test_slsa_v02_provenance_is_read():
    v02 = statement({"sha256": DIGEST.split(":")[1]}, predicate_type="https://slsa.dev/provenance/v0.2")
    v02["predicate"] = {
        "builder": {"id": BUILDER},
        "buildType": "https://github.com/slsa-framework/slsa-github-generator/generic@v1",
        "invocation": {
            "configSource": {"uri": f"git+{REPO}.git@refs/heads/main", "digest": {"sha1": "ab" * 20}}
        },
    }
    result = ok(dsse_bundle(WORLD, v02, signed_at=AT))
    assert result.verified
    assert result.claims["slsa"]["sources"] == [
        {"repository": REPO, "ref": "refs/heads/main", "digest": "ab" * 20}
    ]


def test_leaf_not_valid_at_integrated_time_is_refused():
    late = dsse_bundle(
        WORLD, STMT, signed_at=AT, entry_options={"integrated_time": AT + timedelta(minutes=20)}
    )
    assert refused(late, at=AT + timedelta(hours=1)) == "cert_expired"
    early = dsse_bundle(
        WORLD, STMT, signed_at=AT, entry_options={"integrated_time": AT - timedelta(minutes=5)}
    )
    assert refused(early) == "cert_not_yet_valid"


def test_log_entry_for_another_signature_is_refused():
    a = dsse_bundle(WORLD, STMT, signed_at=AT)
    b = dsse_bundle(WORLD, STMT, signed_at=AT)
    b["verificationMaterial"]["tlogEntries"] = a["verificationMaterial"]["tlogEntries"]
    assert refused(b) == "body_mismatch"
    m1, m2 = message_bundle(WORLD, MODEL, signed_at=AT), message_bundle(WORLD, MODEL, signed_at=AT)
    m2["verificationMaterial"]["tlogEntries"] = m1["verificationMaterial"]["tlogEntries"]
    assert refused(m2, ReferenceValues()) == "body_mismatch"


def test_missing_or_untrusted_sct_is_refused():
    assert refused(dsse_bundle(WORLD, STMT, signed_at=AT, cert_options={"sct": False})) == "sct_invalid"
    rogue_ct = ec.generate_private_key(ec.SECP256R1())
    assert refused(dsse_bundle(WORLD, STMT, signed_at=AT, cert_options={"ct_key": rogue_ct})) == "sct_invalid"


def test_forged_sct_from_a_trusted_log_is_refused():
    # The SCT names the trusted CT log but was signed by another key.
    rogue_ct = ec.generate_private_key(ec.SECP256R1())
    options = {"ct_key": rogue_ct, "claimed_ct_key": WORLD.ct_key}
    assert refused(dsse_bundle(WORLD, STMT, signed_at=AT, cert_options=options)) == "sct_invalid"


def test_not_a_code_signing_certificate_is_refused():
    bundle = dsse_bundle(WORLD, STMT, signed_at=AT, cert_options={"eku": ExtendedKeyUsageOID.CLIENT_AUTH})
    assert refused(bundle) == "chain_untrusted"


def test_certificate_from_another_ca_is_refused():
    key = ec.generate_private_key(ec.SECP384R1())
    rogue = make_cert("rogue-ca", key.public_key(), issuer=None, self_key=key, ca=True)
    bundle = dsse_bundle(WORLD, STMT, signed_at=AT, cert_options={"signer": (rogue, key)})
    assert refused(bundle) == "chain_untrusted"


def test_identity_policy():
    assert refused(
        dsse_bundle(WORLD, STMT, signed_at=AT, cert_options={"san": "https://github.com/evil/x"})
    ) == ("identity_mismatch")
    assert refused(
        dsse_bundle(WORLD, STMT, signed_at=AT, cert_options={"issuer": "https://accounts.example"})
    ) == ("identity_mismatch")
    assert (
        refused(dsse_bundle(WORLD, STMT, signed_at=AT, cert_options={"issuer": None})) == "identity_mismatch"
    )


def test_source_in_certificate_and_provenance_must_agree():
    forked = statement({"sha256": DIGEST.split(":")[1]}, repository="https://github.com/evil/model")
    assert refused(dsse_bundle(WORLD, forked, signed_at=AT)) == "source_mismatch"
    other_ref = statement({"sha256": DIGEST.split(":")[1]}, ref="refs/heads/dev")
    assert refused(dsse_bundle(WORLD, other_ref, signed_at=AT)) == "source_mismatch"
    # With no source anywhere, a source policy cannot be met.
    bare = copy.deepcopy(STMT)
    bare["predicate"]["buildDefinition"] = {"buildType": "x"}
    no_cert_source = dsse_bundle(WORLD, bare, signed_at=AT, cert_options={"source": None})
    assert refused(no_cert_source) == "source_mismatch"


def test_untrusted_builder_is_refused():
    assert refused(
        dsse_bundle(
            WORLD, statement({"sha256": DIGEST.split(":")[1]}, builder_id="https://evil"), signed_at=AT
        )
    ) == ("builder_untrusted")


def test_log_and_ca_windows_are_enforced():
    bundle = dsse_bundle(WORLD, STMT, signed_at=AT)
    before = AT - timedelta(days=1)
    assert refused(
        bundle, verifier=SigstoreVerifier(WORLD.trusted_root(ca_valid=(before - timedelta(days=9), before)))
    ) == ("chain_untrusted")
    assert refused(
        bundle, verifier=SigstoreVerifier(WORLD.trusted_root(tlog_valid=(AT + timedelta(days=1), None)))
    ) == ("tlog_invalid")


def test_set_is_required_and_checked():
    assert refused(dsse_bundle(WORLD, STMT, signed_at=AT, entry_options={"promise": False})) == "tlog_invalid"
    bundle = dsse_bundle(WORLD, STMT, signed_at=AT)
    bundle["verificationMaterial"]["tlogEntries"][0]["logIndex"] = "1001"
    assert refused(bundle) == "tlog_invalid"


def test_unsupported_shapes_are_refused():
    assert refused(dsse_bundle(WORLD, STMT, signed_at=AT, payload_type="text/plain")) == "unsupported"
    keyed = dsse_bundle(WORLD, STMT, signed_at=AT)
    keyed["verificationMaterial"] = {
        "publicKey": {"hint": "k"},
        "tlogEntries": keyed["verificationMaterial"]["tlogEntries"],
    }
    assert refused(keyed) == "unsupported"
    unknown = dsse_bundle(WORLD, STMT, signed_at=AT)
    unknown["mediaType"] = "application/vnd.dev.sigstore.bundle.v9+json"
    assert refused(unknown) == "unsupported"


@pytest.mark.parametrize(
    "mutate",
    [
        lambda b: b.pop("dsseEnvelope"),
        lambda b: b.update(
            messageSignature={
                "messageDigest": {"algorithm": "SHA2_256", "digest": "AAAA"},
                "signature": "AAAA",
            }
        ),
        lambda b: b["verificationMaterial"].update(tlogEntries=[]),
        lambda b: b["verificationMaterial"]["tlogEntries"][0].update(integratedTime="-1"),
        lambda b: b["verificationMaterial"]["tlogEntries"][0].update(canonicalizedBody="%%%"),
        lambda b: b["dsseEnvelope"].update(signatures=[]),
        lambda b: b["verificationMaterial"]["certificate"].update(rawBytes="AAAA"),
    ],
)
def test_malformed_bundles_are_refused(mutate):
    bundle = dsse_bundle(WORLD, STMT, signed_at=AT)
    mutate(bundle)
    assert refused(bundle) == "malformed"


def test_signed_payload_that_is_not_a_statement_is_refused():
    bundle = dsse_bundle(WORLD, {"_type": "https://example.com/not-in-toto"}, signed_at=AT)
    assert refused(bundle) == "malformed"
