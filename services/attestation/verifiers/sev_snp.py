"""AMD SEV-SNP attestation reports (`amd-sev-snp`).

Evidence container. An SNP report does not carry its signing certificate, so the evidence is
the report plus the VCEK (as fetched from AMD KDS for this chip and TCB), in one of two forms:

* JSON (preferred; `pack_evidence` writes it)::

      {"report": "<base64 of the 1184-byte report>",
       "vcek": "<base64 of the VCEK DER>"  or  "-----BEGIN CERTIFICATE-----…",
       "cert_chain": "-----BEGIN CERTIFICATE-----… (optional: ASK, then ARK)"}

* raw concatenation, for command lines (`cat report.bin vcek.der > evidence`): the 0x4A0 report
  bytes, then the VCEK as DER, or as PEM optionally followed by the ASK/ARK PEMs.

Checks (SPECS 13, SEV-SNP ABI): report layout; VCEK -> ASK -> ARK with RSASSA-PSS/SHA-384, the
ARK pinned by fingerprint per product (Milan, Genoa, Turin; the ARKs and ASKs ship with this
package) and a supplied ASK used only if it chains to the pinned ARK; every certificate valid at
`as_of`; VCEK hwID == CHIP_ID and VCEK TCB extensions == REPORTED_TCB; SIG_ALGO == 1 and the
report signed by a VCEK; ECDSA P-384/SHA-384 over report[0:0x2A0] with little-endian r, s; then
DEBUG policy bit, VMPL, REPORT_DATA == binding digest, MEASUREMENT allowlist, TCB minimums.

The report has no timestamp: it stays acceptable while its certificate chain is valid, and its
freshness comes only from the binding (REPORT_DATA).
"""

from __future__ import annotations

import base64
import hmac
import json
from collections.abc import Mapping
from datetime import datetime
from importlib import resources

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import encode_dss_signature

from . import _der, _x509
from ._codec import b64decode, check_size, json_object, malformed
from ._snp_report import (
    REPORT_SIZE,
    SIG_ALGO_ECDSA_P384_SHA384,
    SIGNING_KEY_VCEK,
    Report,
    Tcb,
    parse_report,
    report_claims,
)
from .base import (
    AppraisalError,
    AppraisalResult,
    Binding,
    Reason,
    ReferenceValues,
    SnpTcb,
    refuse_unreadable,
    require_aware,
)

KIND = "amd-sev-snp"

# DER SHA-256 of AMD's root keys, as served by AMD KDS (`/vcek/v1/{product}/cert_chain`).
PINNED_ARK_SHA256: dict[str, str] = {
    "Milan": "69d063b45344d26a2e94e1f4210de49ef555308287d4c174445c95639a540bcd",
    "Genoa": "4c6598d19c18719c5dfd4a7d335f674e5bfe1d8f800cea2cf270c10d103db2f1",
    "Turin": "1f084161a44bb6d93778a904877d4819cafa5d05ef4193b2ded9dd9c73dd3f6a",
}

_OID_PRODUCT = "1.3.6.1.4.1.3704.1.2"
_OID_HWID = "1.3.6.1.4.1.3704.1.4"
_OID_SPL = {
    "bl": "1.3.6.1.4.1.3704.1.3.1",
    "tee": "1.3.6.1.4.1.3704.1.3.2",
    "snp": "1.3.6.1.4.1.3704.1.3.3",
    "ucode": "1.3.6.1.4.1.3704.1.3.8",
    "fmc": "1.3.6.1.4.1.3704.1.3.9",
}


class ProductChain:
    """The pinned ARK and AMD's ASK for one product line."""

    def __init__(self, ask: x509.Certificate, ark: x509.Certificate) -> None:
        self.ask = ask
        self.ark = ark


def amd_chains() -> dict[str, ProductChain]:
    """The shipped ASK/ARK pairs, each ARK checked against its pinned fingerprint."""
    chains = {}
    for product, pinned in PINNED_ARK_SHA256.items():
        pem = resources.files(__package__).joinpath(f"amd_ask_ark_{product.lower()}.pem").read_bytes()
        ask, ark = x509.load_pem_x509_certificates(pem)
        if _x509.fingerprint(ark) != pinned:
            raise RuntimeError(f"the shipped {product} ARK does not match its pinned fingerprint")
        chains[product] = ProductChain(ask, ark)
    return chains


def pack_evidence(report: bytes, vcek: bytes, cert_chain: bytes | None = None) -> bytes:
    """The JSON evidence container. `vcek` is DER or PEM; `cert_chain` is PEM (ASK, ARK)."""
    obj: dict[str, str] = {"report": base64.b64encode(report).decode("ascii")}
    if vcek.lstrip().startswith(b"-----BEGIN"):
        obj["vcek"] = vcek.decode("ascii")
    else:
        obj["vcek"] = base64.b64encode(vcek).decode("ascii")
    if cert_chain is not None:
        obj["cert_chain"] = cert_chain.decode("ascii")
    return json.dumps(obj).encode("ascii")


def _unpack(evidence: bytes) -> tuple[bytes, x509.Certificate, list[x509.Certificate]]:
    if evidence[:1] == b"{":
        obj = json_object(evidence, "SNP evidence")
        unknown = set(obj) - {"report", "vcek", "cert_chain"}
        if unknown:
            raise malformed(f"SNP evidence has unknown members {sorted(unknown)}")
        report = b64decode(obj.get("report"), "SNP report")
        vcek_text = obj.get("vcek")
        if not isinstance(vcek_text, str):
            raise malformed("SNP evidence lacks the VCEK")
        if vcek_text.lstrip().startswith("-----BEGIN"):
            vcek = _x509.load_der_or_pem(vcek_text.encode("ascii", "replace"), "VCEK")
        else:
            vcek = _x509.load_der(b64decode(vcek_text, "VCEK"), "VCEK")
        chain_text = obj.get("cert_chain")
        extra: list[x509.Certificate] = []
        if chain_text is not None:
            if not isinstance(chain_text, str):
                raise malformed("cert_chain must be PEM text")
            extra = _x509.load_pem_all(chain_text.encode("ascii", "replace"), "cert_chain")
        return report, vcek, extra
    report, rest = evidence[:REPORT_SIZE], evidence[REPORT_SIZE:]
    if not rest:
        raise malformed("SNP evidence has no VCEK after the report")
    if rest.lstrip().startswith(b"-----BEGIN"):
        certs = _x509.load_pem_all(rest, "VCEK and chain")
        return report, certs[0], certs[1:]
    return report, _x509.load_der(rest, "VCEK"), []


class SevSnpVerifier:
    """Appraises SNP reports. `chains` replaces the pinned AMD roots (tests only)."""

    kind = KIND

    def __init__(self, chains: Mapping[str, ProductChain] | None = None) -> None:
        self._chains = dict(chains) if chains is not None else amd_chains()

    @refuse_unreadable
    def appraise(
        self,
        evidence: bytes,
        *,
        reference: ReferenceValues,
        binding: Binding | None,
        as_of: datetime,
    ) -> AppraisalResult:
        as_of = require_aware(as_of)
        raw_report, vcek, supplied = _unpack(check_size(evidence, "SNP evidence"))
        report = parse_report(raw_report)

        product = _product(vcek)
        chain = self._chain(vcek, product, supplied)
        _x509.check_validity(chain, as_of)
        _check_vcek_identity(vcek, report, product)

        if report.sig_algo != SIG_ALGO_ECDSA_P384_SHA384:
            raise AppraisalError(Reason.UNSUPPORTED, f"SNP signature algorithm {report.sig_algo}")
        if report.signing_key != SIGNING_KEY_VCEK:
            # VLEK-signed reports chain to a different AMD key; not supported here.
            raise AppraisalError(Reason.UNSUPPORTED, "the report is not signed with a VCEK")
        _check_signature(report, _x509.ec_public_key(vcek, ec.SECP384R1, "VCEK"))

        if report.debug and not reference.debug_allowed:
            raise AppraisalError(Reason.POLICY_DEBUG, "the guest policy allows debugging")
        bound = _check_binding(report, binding)
        unchecked = _check_policy(report, product, reference)

        claims = report_claims(report, product)
        claims["vcek_sha256"] = _x509.fingerprint(vcek)
        claims["ark_sha256"] = _x509.fingerprint(chain[-1])
        return AppraisalResult(
            kind=KIND,
            verified=not unchecked,
            bound=bound,
            claims=claims,
            expires_at=_x509.earliest_not_after(chain),
            appraised_at=as_of,
            unchecked=unchecked,
        )

    def _chain(
        self, vcek: x509.Certificate, product: str, supplied: list[x509.Certificate]
    ) -> list[x509.Certificate]:
        pinned = self._chains.get(product)
        if pinned is None:
            raise AppraisalError(Reason.CHAIN_UNTRUSTED, f"no pinned AMD root for {product}")
        _x509.verify_issued_by(pinned.ark, pinned.ark, f"{product} ARK")
        # A supplied ASK is only a candidate; the pinned ARK decides. The shipped ASK is last.
        candidates = [c for c in supplied if c.subject == vcek.issuer] + [pinned.ask]
        failure: AppraisalError | None = None
        for ask in candidates:
            try:
                _x509.verify_issued_by(ask, pinned.ark, f"{product} ASK")
                _x509.verify_issued_by(vcek, ask, "VCEK")
            except AppraisalError as exc:
                failure = exc
                continue
            return [vcek, ask, pinned.ark]
        raise failure or AppraisalError(Reason.CHAIN_UNTRUSTED, "no ASK chains to the ARK")


def _product(vcek: x509.Certificate) -> str:
    raw = _x509.unrecognized_extension(vcek, _OID_PRODUCT)
    if raw is None:
        raise malformed("the VCEK has no product name")
    name = _der.read_string(raw, _der.TAG_IA5STRING, "VCEK product name")
    return name.split("-", 1)[0]


def _check_vcek_identity(vcek: x509.Certificate, report: Report, product: str) -> None:
    hwid = _x509.unrecognized_extension(vcek, _OID_HWID)
    if hwid is None:
        raise AppraisalError(Reason.CHIP_ID_MISMATCH, "the VCEK has no hwID")
    # Turin VCEKs carry an 8-byte hwID; the report's CHIP_ID is then that, zero-padded.
    expected = hwid if len(hwid) == 64 else hwid + bytes(64 - len(hwid)) if len(hwid) == 8 else None
    if expected is None or not hmac.compare_digest(expected, report.chip_id):
        raise AppraisalError(Reason.CHIP_ID_MISMATCH, "the VCEK is not this chip's (hwID != CHIP_ID)")
    reported = Tcb.decode(report.reported_tcb, product)
    fields = ["bl", "tee", "snp", "ucode"] + (["fmc"] if product == "Turin" else [])
    for name in fields:
        raw = _x509.unrecognized_extension(vcek, _OID_SPL[name])
        if raw is None or _der.read_uint(raw, f"VCEK {name} SPL") != getattr(reported, name):
            raise AppraisalError(
                Reason.TCB_MISMATCH, f"VCEK {name} SPL differs from the report's REPORTED_TCB"
            )


def _check_signature(report: Report, key: ec.EllipticCurvePublicKey) -> None:
    try:
        key.verify(
            encode_dss_signature(report.sig_r, report.sig_s),
            report.signed_bytes,
            ec.ECDSA(hashes.SHA384()),
        )
    except InvalidSignature as exc:
        raise AppraisalError(Reason.BAD_SIGNATURE, "the report signature does not verify") from exc


def _check_binding(report: Report, binding: Binding | None) -> bool:
    if binding is None:
        return False
    if not hmac.compare_digest(report.report_data, binding.digest()):
        raise AppraisalError(Reason.BINDING_MISMATCH, "REPORT_DATA is not SHA-512(nonce || key thumbprint)")
    return True


def _check_policy(report: Report, product: str, reference: ReferenceValues) -> tuple[str, ...]:
    unchecked: list[str] = []
    if reference.snp_vmpl is None:
        unchecked.append("snp_vmpl")
    elif report.vmpl != reference.snp_vmpl:
        raise AppraisalError(Reason.VMPL_MISMATCH, f"VMPL {report.vmpl} is not {reference.snp_vmpl}")
    if reference.snp_measurements is None:
        unchecked.append("snp_measurements")
    elif report.measurement.hex() not in reference.snp_measurements:
        raise AppraisalError(Reason.MEASUREMENT_NOT_ALLOWED, "MEASUREMENT is not an accepted value")
    if reference.snp_min_tcb is None:
        unchecked.append("snp_min_tcb")
    else:
        _check_tcb(Tcb.decode(report.reported_tcb, product), reference.snp_min_tcb)
    return tuple(unchecked)


def _check_tcb(tcb: Tcb, minimum: SnpTcb) -> None:
    fields: list[str] = ["bl", "tee", "snp", "ucode"] + (["fmc"] if tcb.fmc is not None else [])
    for name in fields:
        if getattr(tcb, name) < getattr(minimum, name):
            raise AppraisalError(
                Reason.TCB_TOO_LOW,
                f"reported {name} SPL {getattr(tcb, name)} is below {getattr(minimum, name)}",
            )
