"""AMD SEV-SNP reports: the real Milan sample, Azure's report with a foreign VCEK, then every
check refusing on reports built under a test ARK/ASK."""

from __future__ import annotations

import base64
import hashlib
import json
from datetime import UTC, datetime, timedelta
from importlib import resources

import pytest
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from services.attestation.verifiers import (
    AppraisalError,
    Binding,
    ReferenceValues,
    SevSnpVerifier,
    SnpTcb,
    _x509,
    pack_evidence,
)
from services.attestation.verifiers.sev_snp import PINNED_ARK_SHA256, ProductChain, amd_chains
from tests.attestation_factory import (
    der,
    ec_public_jwk,
    make_cert,
    make_vcek,
    pem,
    snp_pki,
    snp_report,
    tcb_raw,
    thumbprint,
)
from tests.attestation_factory.samples import AZURE_HCL_AT, SNP_MILAN_AT, TODAY, sample

# Expected values from tests/data/attestation/sev-snp/MANIFEST.md
MEASUREMENT = (
    "b07af9620f3b839b47996422ddec6058338951d984e312115131ea82705eaf5b6bdf8a9ece31a5a608eb0cf2e4872b01"
)
CHIP_ID = (
    "3ac3fe21e13fb0990eb28a802e3fb6a29483a6b0753590c951bdd3b8e5378618"
    "4ca39e359669a2b76a1936776b564ea464cdce40c05f63c9b610c5068b006b5d"
)
REPORT_ID = "8edc638e1857c555d21f6b11bda3c8b1b5a09dba4852b4c8ee7aa2f16f22cc0a"
VCEK_SHA256 = "0d057f9b6e29a69eda9c0154b259567d291c1c08d73a11e9d31ace07c435b6d8"
VCEK_NOT_AFTER = datetime(2029, 9, 24, 0, 55, 28, tzinfo=UTC)
MANIFEST_ARKS = {
    "Milan": "69d063b45344d26a2e94e1f4210de49ef555308287d4c174445c95639a540bcd",
    "Genoa": "4c6598d19c18719c5dfd4a7d335f674e5bfe1d8f800cea2cf270c10d103db2f1",
    "Turin": "1f084161a44bb6d93778a904877d4819cafa5d05ef4193b2ded9dd9c73dd3f6a",
}
MANIFEST_ASKS = {
    "Milan": "67d303bd3905fd38db8b20e0793699870e7fa612eaad5dec358293fd8c0bac1b",
    "Genoa": "5464738c1546aed5f2cecf1dc98c5c960a92e8913238a61711bc90ec6e828521",
    "Turin": "5b77ef5fe7a7a004fd9032668fba9d0fda22f88c4442069a479636a6ae3b3185",
}
# The Milan sample's guest policy is 0xB0000: bit 19 (DEBUG) is set, so it is only accepted
# when the tenant allows debug guests.
MILAN_REF = ReferenceValues(
    debug_allowed=True,
    snp_measurements=(MEASUREMENT,),
    snp_vmpl=0,
    snp_min_tcb=SnpTcb(bl=2, tee=0, snp=5, ucode=68),
)
AMD = SevSnpVerifier()


def milan() -> bytes:
    return pack_evidence(
        sample("sev-snp", "milan_report_no_idblock.bin"), sample("sev-snp", "milan_vcek.der")
    )


def reason(exc: pytest.ExceptionInfo[AppraisalError]) -> str:
    return exc.value.reason.value


def refused_real(
    evidence: bytes, ref: ReferenceValues = MILAN_REF, at: datetime = SNP_MILAN_AT, binding=None
) -> str:
    with pytest.raises(AppraisalError) as exc:
        AMD.appraise(evidence, reference=ref, binding=binding, as_of=at)
    return reason(exc)


# -- real samples ----------------------------------------------------------------------------


def test_milan_report_verifies_with_manifest_values():
    result = AMD.appraise(milan(), reference=MILAN_REF, binding=None, as_of=SNP_MILAN_AT)
    assert result.verified and not result.bound
    c = result.claims
    assert hashlib.sha256(sample("sev-snp", "milan_report_no_idblock.bin")).hexdigest() == (
        "377e6241d3b373ab1df80c0f96978594e7e21f4797dd6ea95e2957e1c1e26060"
    )
    assert c["version"] == 2 and c["guest_svn"] == 0 and c["vmpl"] == 0
    assert c["product"] == "Milan"
    assert c["policy"] == "0xb0000" and c["policy_bits"]["debug"] is True
    assert c["signature_algo"] == 1 and c["platform_info"] == 1 and c["signing_key"] == "vcek"
    assert c["measurement"] == MEASUREMENT
    assert c["report_data"] == "0102030405" + "00" * 59
    assert c["chip_id"] == CHIP_ID
    assert c["report_id"] == REPORT_ID and c["report_id_ma"] == "ff" * 32
    assert c["host_data"] == "00" * 32 and c["id_key_digest"] == "00" * 48
    for name in ("current_tcb", "reported_tcb", "committed_tcb", "launch_tcb"):
        assert c[name] == {"raw": "4405000000000002", "bl": 2, "tee": 0, "snp": 5, "ucode": 68}
    assert c["current_firmware"] == c["committed_firmware"] == "1.49.3"
    assert c["vcek_sha256"] == VCEK_SHA256 and c["ark_sha256"] == MANIFEST_ARKS["Milan"]
    assert result.expires_at == VCEK_NOT_AFTER


def test_milan_report_in_raw_and_pem_containers_verifies():
    report, vcek = sample("sev-snp", "milan_report_no_idblock.bin"), sample("sev-snp", "milan_vcek.der")
    vcek_pem = pem(_x509.load_der(vcek, "VCEK"))
    chain = sample("sev-snp", "ask_ark_milan.pem")
    for evidence in (report + vcek, report + vcek_pem + chain, pack_evidence(report, vcek_pem, chain)):
        assert AMD.appraise(evidence, reference=MILAN_REF, binding=None, as_of=SNP_MILAN_AT).verified


def test_milan_report_is_refused_when_debug_is_not_allowed():
    ref = ReferenceValues(snp_measurements=(MEASUREMENT,), snp_vmpl=0)
    assert refused_real(milan(), ref) == "policy_debug"


def test_milan_report_still_verifies_today_and_expires_with_its_vcek():
    assert AMD.appraise(milan(), reference=MILAN_REF, binding=None, as_of=TODAY).verified
    assert refused_real(milan(), at=datetime(2030, 1, 1, tzinfo=UTC)) == "cert_expired"
    assert refused_real(milan(), at=datetime(2022, 1, 1, tzinfo=UTC)) == "cert_not_yet_valid"


def test_tampered_report_fails_its_signature():
    tampered = pack_evidence(
        sample("sev-snp", "milan_report_no_idblock_tampered.bin"), sample("sev-snp", "milan_vcek.der")
    )
    assert refused_real(tampered) == "bad_signature"


def test_milan_report_against_other_reference_values():
    assert refused_real(milan(), ReferenceValues(debug_allowed=True, snp_measurements=("00" * 48,))) == (
        "measurement_not_allowed"
    )
    assert (
        refused_real(milan(), ReferenceValues(debug_allowed=True, snp_min_tcb=SnpTcb(bl=3))) == "tcb_too_low"
    )
    assert refused_real(milan(), ReferenceValues(debug_allowed=True, snp_vmpl=1)) == "vmpl_mismatch"


def test_milan_report_is_not_bound_to_our_challenge():
    binding = Binding(
        nonce=bytes(range(1, 17)),
        key_thumbprint=thumbprint(ec_public_jwk(ec.generate_private_key(ec.SECP256R1()))),
    )
    assert refused_real(milan(), binding=binding) == "binding_mismatch"


def test_azure_report_with_another_chips_vcek_is_refused():
    # Bytes 0x20..0x4C0 of the Azure HCL report are a raw SNP report; the VCEK in the folder
    # belongs to another chip (azure/MANIFEST.md): its chain is genuine, its hwID is not ours.
    report = sample("azure", "azure_cvm_hcl_report_snp.bin")[0x20:0x4C0]
    chain = sample("azure", "azure_vcek_ask_ark_chain_other_chip.pem")
    assert refused_real(report + chain, at=AZURE_HCL_AT) == "chip_id_mismatch"


def test_shipped_amd_roots_are_the_pinned_ones():
    chains = amd_chains()
    assert PINNED_ARK_SHA256 == MANIFEST_ARKS
    for product, chain in chains.items():
        assert _x509.fingerprint(chain.ark) == MANIFEST_ARKS[product]
        assert _x509.fingerprint(chain.ask) == MANIFEST_ASKS[product]
        _x509.verify_issued_by(chain.ark, chain.ark, "ARK")
        _x509.verify_issued_by(chain.ask, chain.ark, "ASK")
        shipped = resources.files("services.attestation.verifiers").joinpath(
            f"amd_ask_ark_{product.lower()}.pem"
        )
        assert shipped.read_bytes() == sample("sev-snp", f"ask_ark_{product.lower()}.pem")


def test_a_supplied_ask_from_another_product_does_not_matter():
    report, vcek = sample("sev-snp", "milan_report_no_idblock.bin"), sample("sev-snp", "milan_vcek.der")
    evidence = pack_evidence(report, vcek, sample("sev-snp", "ask_ark_genoa.pem"))
    assert AMD.appraise(evidence, reference=MILAN_REF, binding=None, as_of=SNP_MILAN_AT).verified


def test_milan_vcek_does_not_chain_to_another_ark():
    genoa = amd_chains()["Genoa"]
    verifier = SevSnpVerifier(chains={"Milan": ProductChain(genoa.ask, genoa.ark)})
    with pytest.raises(AppraisalError) as exc:
        verifier.appraise(milan(), reference=MILAN_REF, binding=None, as_of=SNP_MILAN_AT)
    assert reason(exc) == "chain_untrusted"


# -- built reports: every check refuses ------------------------------------------------------

PKI = snp_pki()
AT = SNP_MILAN_AT
CHIP = bytes(range(64))
TCB = {"bl": 3, "tee": 0, "snp": 8, "ucode": 115}
VCEK_KEY, VCEK = make_vcek(chip_id=CHIP, tcb=TCB)
TEST = SevSnpVerifier(chains=PKI.chains("Milan"))
AGENT = ec_public_jwk(ec.generate_private_key(ec.SECP256R1()))
CHALLENGE = Binding(nonce=b"\x22" * 32, key_thumbprint=thumbprint(AGENT))
GOOD_REF = ReferenceValues(snp_measurements=(("5a" * 48),), snp_vmpl=0, snp_min_tcb=SnpTcb(**TCB))


def report(binding: Binding | None = CHALLENGE, *, key=VCEK_KEY, **kw) -> bytes:
    kw.setdefault("chip_id", CHIP)
    kw.setdefault("reported_tcb", tcb_raw(**TCB))
    data = binding.digest() if binding else bytes(64)
    return snp_report(key, report_data=data, **kw)


def evidence(rep: bytes | None = None, vcek: x509.Certificate = VCEK) -> bytes:
    return pack_evidence(rep if rep is not None else report(), der(vcek))


def refused(
    ev: bytes, *, ref: ReferenceValues = GOOD_REF, binding: Binding | None = CHALLENGE, verifier=TEST
) -> str:
    with pytest.raises(AppraisalError) as exc:
        verifier.appraise(ev, reference=ref, binding=binding, as_of=AT)
    return reason(exc)


def test_bound_report_verifies():
    result = TEST.appraise(evidence(), reference=GOOD_REF, binding=CHALLENGE, as_of=AT)
    assert result.verified and result.bound
    assert result.claims["report_data"] == CHALLENGE.digest().hex()
    assert result.claims["reported_tcb"]["ucode"] == 115
    result.require()


def test_binding_digest_layout_is_sha512_of_nonce_and_thumbprint():
    raw_tp = base64.urlsafe_b64decode(CHALLENGE.key_thumbprint + "=")
    assert CHALLENGE.digest() == hashlib.sha512(CHALLENGE.nonce + raw_tp).digest()


def test_wrong_nonce_old_nonce_and_other_key_are_refused():
    wrong = Binding(nonce=b"\x99" * 32, key_thumbprint=CHALLENGE.key_thumbprint)
    old = Binding(nonce=b"\x21" * 32, key_thumbprint=CHALLENGE.key_thumbprint)
    other = Binding(
        nonce=CHALLENGE.nonce,
        key_thumbprint=thumbprint(ec_public_jwk(ec.generate_private_key(ec.SECP256R1()))),
    )
    for b in (wrong, old, other):
        assert refused(evidence(report(b))) == "binding_mismatch"


def test_debug_policy_is_refused_unless_allowed():
    debug = evidence(report(policy=0x30000 | (1 << 19)))
    assert refused(debug) == "policy_debug"
    ref = ReferenceValues(
        debug_allowed=True,
        snp_measurements=GOOD_REF.snp_measurements,
        snp_vmpl=0,
        snp_min_tcb=GOOD_REF.snp_min_tcb,
    )
    assert TEST.appraise(debug, reference=ref, binding=CHALLENGE, as_of=AT).verified


def test_measurement_not_allowlisted_is_refused():
    assert refused(evidence(report(measurement=b"\x5b" * 48))) == "measurement_not_allowed"


@pytest.mark.parametrize("component", ["bl", "tee", "snp", "ucode"])
def test_tcb_below_minimum_is_refused(component):
    low = dict(TCB) | {component: TCB[component] + 1}
    assert refused(evidence(), ref=ReferenceValues(snp_min_tcb=SnpTcb(**low))) == "tcb_too_low"


def test_vcek_tcb_must_equal_reported_tcb():
    key, vcek = make_vcek(chip_id=CHIP, tcb=dict(TCB) | {"snp": 9})
    assert refused(evidence(report(key=key), vcek)) == "tcb_mismatch"


def test_vcek_of_another_chip_is_refused():
    key, vcek = make_vcek(chip_id=b"\xee" * 64, tcb=TCB)
    assert refused(evidence(report(key=key), vcek)) == "chip_id_mismatch"


def test_unexpected_vmpl_is_refused():
    assert refused(evidence(report(vmpl=2))) == "vmpl_mismatch"


def test_report_signed_by_another_key_is_refused():
    assert refused(evidence(report(key=ec.generate_private_key(ec.SECP384R1())))) == "bad_signature"


def test_unsupported_signature_algorithm_or_vlek_is_refused():
    assert refused(evidence(report(sig_algo=2))) == "unsupported"
    assert refused(evidence(report(flags=1 << 2))) == "unsupported"


def test_vcek_from_an_unpinned_ask_is_refused():
    rogue_key = rsa.generate_private_key(65537, 2048)
    rogue = make_cert("SEV-Test", rogue_key.public_key(), issuer=None, self_key=rogue_key, ca=True, pss=True)
    key, vcek = make_vcek(chip_id=CHIP, tcb=TCB, signer=(rogue, rogue_key))
    ev = pack_evidence(report(key=key), der(vcek), pem(rogue))
    assert refused(ev) == "chain_untrusted"


def test_vcek_signed_without_rsa_pss_is_refused():
    key, vcek = make_vcek(chip_id=CHIP, tcb=TCB, pss=False)  # RSA PKCS#1 v1.5
    assert vcek.signature_hash_algorithm.name == "sha384"
    assert refused(evidence(report(key=key), vcek)) == "chain_untrusted"


def test_expired_vcek_is_refused():
    key, vcek = make_vcek(chip_id=CHIP, tcb=TCB, not_after=AT - timedelta(days=1))
    assert refused(evidence(report(key=key), vcek)) == "cert_expired"


def test_turin_tcb_layout_and_short_hwid():
    turin_tcb = {"bl": 1, "tee": 2, "snp": 3, "ucode": 4, "fmc": 5}
    chip = b"\x42" * 8 + bytes(56)
    key, vcek = make_vcek(chip_id=chip[:8], tcb=turin_tcb, product_name="Turin")
    verifier = SevSnpVerifier(chains=PKI.chains("Turin"))
    rep = snp_report(
        key, chip_id=chip, reported_tcb=tcb_raw("Turin", **turin_tcb), report_data=CHALLENGE.digest()
    )
    ref = ReferenceValues(snp_min_tcb=SnpTcb(**turin_tcb), snp_vmpl=0, snp_measurements=("5a" * 48,))
    result = verifier.appraise(pack_evidence(rep, der(vcek)), reference=ref, binding=CHALLENGE, as_of=AT)
    assert result.claims["reported_tcb"] == {"raw": f"{tcb_raw('Turin', **turin_tcb):016x}", **turin_tcb}
    low = ReferenceValues(snp_min_tcb=SnpTcb(**(turin_tcb | {"fmc": 6})))
    assert refused(pack_evidence(rep, der(vcek)), ref=low, verifier=verifier) == "tcb_too_low"


@pytest.mark.parametrize(
    "mutate",
    [
        lambda r: r[:-1],
        lambda r: (1).to_bytes(4, "little") + r[4:],  # version 1
        lambda r: r[:8] + (0).to_bytes(8, "little") + r[16:],  # policy bit 17 clear
        lambda r: r[:0x49F] + b"\x01",  # reserved bytes after the signature
    ],
)
def test_malformed_reports_are_refused(mutate):
    assert refused(evidence(mutate(report()))) == "malformed"


@pytest.mark.parametrize(
    "container",
    [
        b"{}",
        b'{"report": "AAAA"}',
        json.dumps({"report": base64.b64encode(bytes(0x4A0)).decode(), "vcek": "!!"}).encode(),
        json.dumps({"report": "", "vcek": "", "extra": 1}).encode(),
        json.dumps({"report": 1, "vcek": []}).encode(),
        b'{"report": "A", "report": "B"}',
        bytes(0x4A0),
        bytes(0x4A0) + b"not a certificate",
    ],
)
def test_malformed_containers_are_refused(container):
    assert refused(container) == "malformed"


def test_missing_policy_is_reported():
    result = TEST.appraise(evidence(), reference=ReferenceValues(), binding=CHALLENGE, as_of=AT)
    assert not result.verified
    assert set(result.unchecked) == {"snp_vmpl", "snp_measurements", "snp_min_tcb"}
