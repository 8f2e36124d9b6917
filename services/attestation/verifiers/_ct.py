"""Embedded Signed Certificate Timestamps (RFC 6962 section 3.2) in Fulcio certificates.

An SCT is a CT log's promise that it logged the precertificate. Fulcio embeds it, so a signing
certificate that no trusted CT log has seen is refused: certificates issued outside the public
record are exactly what CT is there to expose.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime, timedelta

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.certificate_transparency import LogEntryType, SignatureAlgorithm, Version

from ._sigstore_root import LogKey
from .base import AppraisalError, Reason

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def _ms(ts: datetime) -> int:
    if ts.tzinfo is None:  # cryptography reports SCT times as naive UTC
        ts = ts.replace(tzinfo=UTC)
    return (ts - _EPOCH) // timedelta(milliseconds=1)


def _signed_data(
    sct: x509.certificate_transparency.SignedCertificateTimestamp, issuer_key_hash: bytes, tbs: bytes
) -> bytes:
    return b"".join(
        (
            b"\x00",  # sct_version v1
            b"\x00",  # signature_type certificate_timestamp
            _ms(sct.timestamp).to_bytes(8, "big"),
            b"\x00\x01",  # entry_type precert_entry
            issuer_key_hash,
            len(tbs).to_bytes(3, "big"),
            tbs,
            len(sct.extension_bytes).to_bytes(2, "big"),
            sct.extension_bytes,
        )
    )


def verify_embedded_scts(
    leaf: x509.Certificate, issuer: x509.Certificate, ctlogs: Mapping[bytes, LogKey]
) -> int:
    """Require at least one valid SCT from a trusted CT log. Returns how many verified."""
    try:
        scts = leaf.extensions.get_extension_for_class(x509.PrecertificateSignedCertificateTimestamps).value
    except x509.ExtensionNotFound as exc:
        raise AppraisalError(Reason.SCT_INVALID, "the signing certificate has no SCT") from exc
    except ValueError as exc:  # an SCT list that does not parse
        raise AppraisalError(Reason.SCT_INVALID, "the certificate's SCT list is malformed") from exc
    issuer_key_hash = hashes.Hash(hashes.SHA256())
    issuer_key_hash.update(
        issuer.public_key().public_bytes(
            serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
        )
    )
    key_hash = issuer_key_hash.finalize()
    tbs = leaf.tbs_precertificate_bytes
    verified = 0
    for sct in scts:
        log = ctlogs.get(sct.log_id)
        if (
            log is None
            or sct.version != Version.v1
            or sct.entry_type != LogEntryType.PRE_CERTIFICATE
            or sct.signature_algorithm != SignatureAlgorithm.ECDSA
            or not isinstance(sct.signature_hash_algorithm, log.hash)
            or not log.window.contains(sct.timestamp.replace(tzinfo=UTC))
        ):
            continue
        try:
            log.key.verify(sct.signature, _signed_data(sct, key_hash, tbs), ec.ECDSA(log.hash()))
        except InvalidSignature:
            # A trusted log's signature that does not verify is a forgery, not an unknown log.
            raise AppraisalError(Reason.SCT_INVALID, "an SCT from a trusted CT log does not verify") from None
        verified += 1
    if not verified:
        raise AppraisalError(Reason.SCT_INVALID, "no SCT from a trusted CT log")
    return verified
