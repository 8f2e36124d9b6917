"""X.509 helpers: strict loading, validity at an explicit time, and path validation.

Two ways to validate a chain, both through `cryptography`:

* `verify_path`: RFC 5280 path building and validation by `cryptography.x509.verification`
  (name chaining, basic constraints and path length, signature algorithms, validity), for the
  ECDSA PKIs (AWS Nitro, Sigstore Fulcio).
* `verify_issued_by`: one link at a time with `Certificate.verify_directly_issued_by`, for AMD's
  fixed VCEK -> ASK -> ARK chain. AMD signs with RSASSA-PSS/SHA-384, which the path validator
  refuses as a signature algorithm, so those three links are checked one by one instead.

Validity is checked separately first (`check_validity`) so that the refusal names the precise
reason (`cert_expired` / `cert_not_yet_valid`) rather than a generic path failure.
"""

from __future__ import annotations

import hashlib
import warnings
from collections.abc import Iterable, Sequence
from datetime import datetime
from typing import Any

from cryptography import x509
from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from cryptography.utils import CryptographyDeprecationWarning
from cryptography.x509 import verification
from cryptography.x509.oid import SignatureAlgorithmOID

from ._codec import malformed
from .base import AppraisalError, Reason


def load_der(data: bytes, what: str) -> x509.Certificate:
    if not isinstance(data, bytes) or not data:
        raise malformed(f"{what} must be DER bytes")
    with warnings.catch_warnings():
        # AMD issues VCEKs with serial number 0, which RFC 5280 forbids; cryptography warns and
        # still parses it. The VCEK is trusted for its AMD signature, not for its serial.
        warnings.simplefilter("ignore", CryptographyDeprecationWarning)
        try:
            return x509.load_der_x509_certificate(data)
        except ValueError as exc:
            raise malformed(f"{what} is not a DER certificate") from exc


def load_pem_all(data: bytes, what: str) -> list[x509.Certificate]:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", CryptographyDeprecationWarning)
        try:
            return x509.load_pem_x509_certificates(data)
        except ValueError as exc:
            raise malformed(f"{what} is not PEM certificates") from exc


def load_der_or_pem(data: bytes, what: str) -> x509.Certificate:
    if data.lstrip().startswith(b"-----BEGIN"):
        certs = load_pem_all(data, what)
        if len(certs) != 1:
            raise malformed(f"{what} must hold exactly one certificate")
        return certs[0]
    return load_der(data, what)


def der(cert: x509.Certificate) -> bytes:
    return cert.public_bytes(serialization.Encoding.DER)


def fingerprint(cert: x509.Certificate) -> str:
    """SHA-256 of the DER encoding, lower-case hex."""
    return hashlib.sha256(der(cert)).hexdigest()


def _name(cert: x509.Certificate) -> str:
    return cert.subject.rfc4514_string() or "(empty subject)"


def check_validity(certs: Iterable[x509.Certificate], at: datetime) -> None:
    """Every certificate must be within its validity window at `at`."""
    for cert in certs:
        if at < cert.not_valid_before_utc:
            raise AppraisalError(
                Reason.CERT_NOT_YET_VALID,
                f"certificate {_name(cert)} is valid from {cert.not_valid_before_utc.isoformat()}",
            )
        if at > cert.not_valid_after_utc:
            raise AppraisalError(
                Reason.CERT_EXPIRED,
                f"certificate {_name(cert)} expired at {cert.not_valid_after_utc.isoformat()}",
            )


def earliest_not_after(certs: Iterable[x509.Certificate]) -> datetime:
    return min(cert.not_valid_after_utc for cert in certs)


def require_ecdsa_sha384(certs: Iterable[x509.Certificate], what: str) -> None:
    for cert in certs:
        if cert.signature_algorithm_oid != SignatureAlgorithmOID.ECDSA_WITH_SHA384:
            raise AppraisalError(
                Reason.CHAIN_UNTRUSTED, f"{what}: {_name(cert)} is not signed with ECDSA-SHA384"
            )


def _ca_key_usage(policy: object, cert: x509.Certificate, ku: x509.KeyUsage | None) -> None:
    if ku is not None and not ku.key_cert_sign:
        raise ValueError("a CA certificate's key usage must allow keyCertSign")


def _ca_basic_constraints(policy: object, cert: x509.Certificate, bc: x509.BasicConstraints) -> None:
    if not bc.ca:
        raise ValueError("an issuing certificate must be a CA")


# The webpki CA profile also checks EKUs against TLS client use, which Fulcio's code-signing CA
# does not carry; this profile keeps the checks that matter for these PKIs: basicConstraints
# present with cA=TRUE on every issuer, keyCertSign when key usage is present. Path length,
# name chaining, validity and signature algorithms stay with the path validator.
_CA_POLICY = (
    verification.ExtensionPolicy.permit_all()
    .require_present(x509.BasicConstraints, verification.Criticality.AGNOSTIC, _ca_basic_constraints)
    .may_be_present(x509.KeyUsage, verification.Criticality.AGNOSTIC, _ca_key_usage)
)
# End-entity rules are format-specific (Nitro has none, Fulcio needs codeSigning): the caller
# checks them after the path is built.
_EE_POLICY = verification.ExtensionPolicy.permit_all()


def verify_path(
    leaf: x509.Certificate,
    intermediates: Sequence[x509.Certificate],
    roots: Sequence[x509.Certificate],
    at: datetime,
    *,
    max_depth: int = 8,
    what: str,
) -> list[x509.Certificate]:
    """Build and validate a path from `leaf` to one of `roots` at `at`. Returns leaf..root."""
    if not roots:
        raise AppraisalError(Reason.CHAIN_UNTRUSTED, f"{what}: no trust anchors")
    builder = (
        verification.PolicyBuilder()
        .store(verification.Store(list(roots)))
        .time(at)
        .max_chain_depth(max_depth)
        .extension_policies(ca_policy=_CA_POLICY, ee_policy=_EE_POLICY)
    )
    try:
        verified = builder.build_client_verifier().verify(leaf, list(intermediates))
    except (verification.VerificationError, ValueError) as exc:
        raise AppraisalError(Reason.CHAIN_UNTRUSTED, f"{what}: {exc}") from exc
    return list(verified.chain)


def public_key(cert: x509.Certificate, what: str) -> Any:
    """The certificate's key; an unknown or broken key type is a refusal, not a crash."""
    try:
        return cert.public_key()
    except (UnsupportedAlgorithm, ValueError) as exc:
        raise AppraisalError(Reason.UNSUPPORTED, f"{what}: unsupported public key") from exc


def verify_issued_by(child: x509.Certificate, issuer: x509.Certificate, what: str) -> None:
    """One link, signed with RSASSA-PSS/SHA-384 (AMD). Issuer must be a CA."""
    try:
        is_pss = child.signature_algorithm_oid == SignatureAlgorithmOID.RSASSA_PSS
        hash_alg = child.signature_hash_algorithm if is_pss else None
        params = child.signature_algorithm_parameters if is_pss else None
    except (UnsupportedAlgorithm, ValueError) as exc:
        raise AppraisalError(Reason.CHAIN_UNTRUSTED, f"{what}: unknown signature algorithm") from exc
    if not is_pss or not isinstance(hash_alg, hashes.SHA384):
        raise AppraisalError(Reason.CHAIN_UNTRUSTED, f"{what}: {_name(child)} is not RSASSA-PSS/SHA-384")
    if not isinstance(params, padding.PSS):
        raise AppraisalError(Reason.CHAIN_UNTRUSTED, f"{what}: {_name(child)} has no PSS parameters")
    issuer_key = public_key(issuer, what)
    if not isinstance(issuer_key, rsa.RSAPublicKey) or issuer_key.key_size < 2048:
        raise AppraisalError(Reason.CHAIN_UNTRUSTED, f"{what}: {_name(issuer)} is not an RSA CA key")
    try:
        bc = issuer.extensions.get_extension_for_class(x509.BasicConstraints).value
    except x509.ExtensionNotFound:
        bc = None
    if bc is None or not bc.ca:
        raise AppraisalError(Reason.CHAIN_UNTRUSTED, f"{what}: {_name(issuer)} is not a CA")
    try:
        child.verify_directly_issued_by(issuer)
    except Exception as exc:  # noqa: BLE001 - InvalidSignature, ValueError (names), TypeError
        raise AppraisalError(
            Reason.CHAIN_UNTRUSTED, f"{what}: {_name(child)} is not issued by {_name(issuer)}"
        ) from exc


def ec_public_key(
    cert: x509.Certificate, curve: type[ec.EllipticCurve], what: str
) -> ec.EllipticCurvePublicKey:
    key = public_key(cert, what)
    if not isinstance(key, ec.EllipticCurvePublicKey) or not isinstance(key.curve, curve):
        raise AppraisalError(Reason.UNSUPPORTED, f"{what}: key is not on {curve.name}")
    return key


def unrecognized_extension(cert: x509.Certificate, dotted: str) -> bytes | None:
    """Raw value of a private extension (e.g. AMD's VCEK TCB fields, Fulcio's OIDC issuer)."""
    try:
        ext = cert.extensions.get_extension_for_oid(x509.ObjectIdentifier(dotted))
    except x509.ExtensionNotFound:
        return None
    except ValueError as exc:  # duplicate extensions and similar encoding faults
        raise malformed(f"certificate extensions are invalid: {exc}") from exc
    value = ext.value
    if not isinstance(value, x509.UnrecognizedExtension):
        return None
    return value.value
