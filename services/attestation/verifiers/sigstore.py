"""Sigstore bundles with optional in-toto/SLSA provenance (`sigstore`), verified offline.

Evidence: a Sigstore bundle (JSON, media types v0.1 to v0.3) for a DSSE envelope (in-toto
Statement) or a message signature over an artifact digest. The trust anchors come from the
operator's `trusted_root.json` (`SigstoreVerifier(trusted_root=...)`); nothing is fetched.

Checks, in order:

1. Rekor: the entry's log is in the trusted root and valid at `integratedTime`; the SET signs
   the body and `integratedTime`; the inclusion proof and its signed checkpoint (required from
   bundle v0.2) verify.
2. Time: `integratedTime` is not after `as_of`; if the tenant sets `max_provenance_age_s`, it is
   not older than that.
3. Certificate at `integratedTime`: the leaf is within its (ten-minute) validity window; it chains
   to a Fulcio CA of the trusted root whose `validFor` covers that time; it is a code-signing
   certificate; it carries a valid SCT from a trusted CT log.
4. Signature: ECDSA (P-256/SHA-256 or P-384/SHA-384) over the DSSE PAE, or over the artifact
   digest (message signature).
5. The Rekor body records this very signature, certificate and payload/artifact digest.
6. Policy: identity (OIDC issuer extension 1.3.6.1.4.1.57264.1.8 and SAN), artifact digest among
   the statement subjects (or the message digest), SLSA builder id, source repository/ref (from
   the Fulcio certificate extensions and the provenance, which must agree).

Why not the `sigstore` package: it refuses `intoto/0.0.2` entries that have no RFC 3161
timestamp (one of the real public bundles we must accept), its DSSE path does not check a
subject digest, and it verifies against the wall clock rather than an explicit appraisal time.
The protocol steps above are small and use `cryptography` for every primitive.

Only the Rekor-signed `integratedTime` dates the signature: RFC 3161 timestamps in
`timestampVerificationData` are not read, so a bundle must carry a signed entry timestamp (SET).

Time semantics: the short-lived certificate is judged at the log's signed `integratedTime`, so
a genuine bundle does not expire as time passes; it stays acceptable until the tenant's
`max_provenance_age_s` (when set) runs out. A bundle is never bound to a challenge.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import Prehashed
from cryptography.x509.oid import ExtendedKeyUsageOID

from . import _ct, _der, _rekor, _slsa, _x509
from ._codec import check_size
from ._sigstore_bundle import Bundle, parse_bundle
from ._sigstore_root import TrustedRoot
from .base import (
    AppraisalError,
    AppraisalResult,
    Binding,
    Reason,
    ReferenceValues,
    SlsaSource,
    check_freshness,
    refuse_unreadable,
    require_aware,
    utc_from_timestamp,
)

KIND = "sigstore"

_OID_ISSUER_V2 = "1.3.6.1.4.1.57264.1.8"  # DER UTF8String
_OID_ISSUER_V1 = "1.3.6.1.4.1.57264.1.1"  # raw bytes (deprecated, still issued)
_OID_SOURCE_URI = "1.3.6.1.4.1.57264.1.12"
_OID_SOURCE_DIGEST = "1.3.6.1.4.1.57264.1.13"
_OID_SOURCE_REF = "1.3.6.1.4.1.57264.1.14"

_HASH_FOR_CURVE: dict[type[ec.EllipticCurve], type[hashes.HashAlgorithm]] = {
    ec.SECP256R1: hashes.SHA256,
    ec.SECP384R1: hashes.SHA384,
}


@dataclass(frozen=True, slots=True)
class Identity:
    issuer: str
    subjects: tuple[str, ...]


class SigstoreVerifier:
    """Appraises Sigstore bundles against an operator-supplied trusted root."""

    kind = KIND

    def __init__(self, trusted_root: TrustedRoot | bytes | str | Mapping[str, Any] | None = None) -> None:
        if trusted_root is None or isinstance(trusted_root, TrustedRoot):
            self._root = trusted_root
        else:
            self._root = TrustedRoot.from_json(trusted_root)

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
        root = self._root
        if root is None:
            raise AppraisalError(Reason.NOT_CONFIGURED, "no Sigstore trusted root is configured")
        bundle = parse_bundle(check_size(evidence, "Sigstore bundle"))
        signed_at = _check_log(bundle, root)
        expires_at = _check_time(signed_at, reference, as_of)
        path = _check_certificate(bundle, root, signed_at)
        leaf = path[0]
        statement = _check_signature(bundle, leaf)
        identity = _identity(leaf)
        cert_source = _certificate_source(leaf)

        claims = _claims(bundle, signed_at, leaf, identity, cert_source, statement)
        unchecked = _apply_policy(reference, bundle, identity, cert_source, statement, claims)

        return AppraisalResult(
            kind=KIND,
            verified=not unchecked,
            bound=False,  # provenance is about an artifact, never about this challenge
            claims=claims,
            expires_at=expires_at,
            appraised_at=as_of,
            unchecked=unchecked,
        )


def _apply_policy(
    reference: ReferenceValues,
    bundle: Bundle,
    identity: Identity,
    cert_source: _slsa.Source | None,
    statement: _slsa.Statement | None,
    claims: dict[str, Any],
) -> tuple[str, ...]:
    """Compare with the tenant's reference values; return what they do not configure."""
    unchecked: list[str] = []
    if reference.sigstore_identities is None:
        unchecked.append("sigstore_identities")
    elif not any(
        identity.issuer == accepted.issuer and accepted.subject in identity.subjects
        for accepted in reference.sigstore_identities
    ):
        raise AppraisalError(
            Reason.IDENTITY_MISMATCH, f"signer {identity.subjects} from {identity.issuer} is not accepted"
        )
    subject_digests = statement.digests() if statement else {_message_digest(bundle)}
    if reference.artifact_digests is None:
        unchecked.append("artifact_digests")
    else:
        matched = {
            name: sorted(set(digests) & subject_digests)
            for name, digests in reference.artifact_digests.items()
            if set(digests) & subject_digests
        }
        if not matched:
            raise AppraisalError(Reason.DIGEST_MISMATCH, "no expected artifact digest is a signed subject")
        claims["matched_digests"] = matched
    provenance = statement.provenance if statement else None
    if reference.slsa_builder_ids is None:
        unchecked.append("slsa_builder_ids")
    elif provenance is None or provenance.builder_id not in reference.slsa_builder_ids:
        raise AppraisalError(
            Reason.BUILDER_UNTRUSTED,
            f"builder {provenance.builder_id if provenance else None!r} is not trusted",
        )
    if reference.slsa_sources is None:
        unchecked.append("slsa_sources")
    else:
        found = ([cert_source] if cert_source else []) + list(provenance.sources if provenance else ())
        _check_sources(found, reference.slsa_sources)
    return tuple(unchecked)


def _check_log(bundle: Bundle, root: TrustedRoot) -> datetime:
    entry = bundle.tlog
    log = root.tlogs.get(entry.log_id)
    if log is None:
        raise AppraisalError(Reason.TLOG_INVALID, "the entry is from a log the trusted root does not name")
    signed_at = utc_from_timestamp(entry.integrated_time, "integratedTime")
    if not log.window.contains(signed_at):
        raise AppraisalError(Reason.TLOG_INVALID, "the log's key was not valid at integratedTime")
    _rekor.verify_set(entry, log)
    if entry.proof is not None:
        _rekor.verify_inclusion(entry, log)
    return signed_at


def _check_certificate(bundle: Bundle, root: TrustedRoot, signed_at: datetime) -> list[x509.Certificate]:
    leaf, extra = bundle.certificates[0], bundle.certificates[1:]
    _x509.check_validity([leaf], signed_at)
    cas = [ca for ca in root.cas if ca.window.contains(signed_at)]
    if not cas:
        raise AppraisalError(Reason.CHAIN_UNTRUSTED, "no Fulcio CA of the trusted root covers integratedTime")
    failure: AppraisalError | None = None
    for ca in cas:
        try:
            # Only the trusted root's own certificates can add trust; the bundle's extra
            # chain certificates are mere candidates for path building.
            path = _x509.verify_path(
                leaf, [*ca.chain[:-1], *extra], [ca.chain[-1]], signed_at, what="Fulcio chain"
            )
        except AppraisalError as exc:
            failure = exc
            continue
        _require_code_signing(leaf)
        _ct.verify_embedded_scts(leaf, path[1], root.ctlogs)
        return path
    raise failure or AppraisalError(Reason.CHAIN_UNTRUSTED, "no Fulcio CA issued the certificate")


def _check_time(signed_at: datetime, reference: ReferenceValues, as_of: datetime) -> datetime | None:
    if signed_at > as_of + timedelta(seconds=reference.clock_skew_s):
        raise AppraisalError(Reason.FUTURE_TIMESTAMP, "the bundle was logged after the appraisal time")
    if reference.max_provenance_age_s is None:
        return None
    return check_freshness(
        signed_at,
        as_of=as_of,
        max_age_s=reference.max_provenance_age_s,
        skew_s=reference.clock_skew_s,
        what="the bundle's integratedTime",
    )


def _require_code_signing(leaf: x509.Certificate) -> None:
    try:
        eku = leaf.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
        ku = leaf.extensions.get_extension_for_class(x509.KeyUsage).value
    except x509.ExtensionNotFound as exc:
        raise AppraisalError(Reason.CHAIN_UNTRUSTED, "the signing certificate lacks EKU/key usage") from exc
    if ExtendedKeyUsageOID.CODE_SIGNING not in eku or not ku.digital_signature:
        raise AppraisalError(Reason.CHAIN_UNTRUSTED, "not a code-signing certificate")


def _check_signature(bundle: Bundle, leaf: x509.Certificate) -> _slsa.Statement | None:
    """Verify the DSSE or message signature and match the log body. Returns the statement."""
    key = _x509.public_key(leaf, "signing certificate")
    if not isinstance(key, ec.EllipticCurvePublicKey) or type(key.curve) not in _HASH_FOR_CURVE:
        raise AppraisalError(Reason.UNSUPPORTED, "the signing key is not ECDSA P-256/P-384")
    hash_type = _HASH_FOR_CURVE[type(key.curve)]
    if bundle.dsse is not None:
        dsse = bundle.dsse
        try:
            key.verify(dsse.signature, dsse.pae(), ec.ECDSA(hash_type()))
        except InvalidSignature as exc:
            raise AppraisalError(Reason.BAD_SIGNATURE, "the DSSE signature does not verify") from exc
        _rekor.match_dsse(
            bundle.tlog,
            payload=dsse.payload,
            payload_type=dsse.payload_type,
            signature=dsse.signature,
            leaf=leaf,
        )
        if dsse.payload_type != _slsa.IN_TOTO_PAYLOAD_TYPE:
            raise AppraisalError(Reason.UNSUPPORTED, f"DSSE payloadType {dsse.payload_type!r}")
        return _slsa.parse_statement(dsse.payload)
    message = bundle.message
    assert message is not None
    if message.digest_alg != hash_type.name:
        raise AppraisalError(Reason.UNSUPPORTED, "the message digest does not fit the signing key")
    try:
        key.verify(message.signature, message.digest, ec.ECDSA(Prehashed(hash_type())))
    except InvalidSignature as exc:
        raise AppraisalError(Reason.BAD_SIGNATURE, "the artifact signature does not verify") from exc
    if message.digest_alg != "sha256":
        raise AppraisalError(Reason.UNSUPPORTED, "hashedrekord entries record SHA-256 digests")
    _rekor.match_hashedrekord(
        bundle.tlog, digest_hex=message.digest.hex(), signature=message.signature, leaf=leaf
    )
    return None


def _message_digest(bundle: Bundle) -> str:
    assert bundle.message is not None
    return f"{bundle.message.digest_alg}:{bundle.message.digest.hex()}"


def _utf8_ext(leaf: x509.Certificate, oid: str) -> str | None:
    raw = _x509.unrecognized_extension(leaf, oid)
    return None if raw is None else _der.read_string(raw, _der.TAG_UTF8STRING, f"extension {oid}")


def _identity(leaf: x509.Certificate) -> Identity:
    issuer = _utf8_ext(leaf, _OID_ISSUER_V2)
    if issuer is None:
        raw = _x509.unrecognized_extension(leaf, _OID_ISSUER_V1)
        try:
            issuer = raw.decode("utf-8") if raw is not None else None
        except UnicodeDecodeError:
            issuer = None
    if not issuer:
        raise AppraisalError(Reason.IDENTITY_MISMATCH, "the certificate names no OIDC issuer")
    try:
        san = leaf.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound as exc:
        raise AppraisalError(Reason.IDENTITY_MISMATCH, "the certificate has no SAN") from exc
    subjects = tuple(san.get_values_for_type(x509.UniformResourceIdentifier)) + tuple(
        san.get_values_for_type(x509.RFC822Name)
    )
    if not subjects:
        raise AppraisalError(Reason.IDENTITY_MISMATCH, "the certificate's SAN holds no URI or e-mail")
    return Identity(issuer, subjects)


def _certificate_source(leaf: x509.Certificate) -> _slsa.Source | None:
    uri = _utf8_ext(leaf, _OID_SOURCE_URI)
    if uri is None:
        return None
    return _slsa.Source(
        _slsa.normalise_repository(uri), _utf8_ext(leaf, _OID_SOURCE_REF), _utf8_ext(leaf, _OID_SOURCE_DIGEST)
    )


def _check_sources(found: list[_slsa.Source], accepted: tuple[SlsaSource, ...]) -> None:
    if not found:
        raise AppraisalError(Reason.SOURCE_MISMATCH, "neither certificate nor provenance names a source")
    for entry in accepted:
        repo = _slsa.normalise_repository(entry.repository)
        # Every place that names the source (certificate, provenance) must agree with one entry.
        if all(s.repository == repo and (entry.ref is None or s.ref == entry.ref) for s in found):
            return
    names = sorted({f"{s.repository}@{s.ref}" for s in found})
    raise AppraisalError(Reason.SOURCE_MISMATCH, f"source {names} is not accepted")


def _claims(
    bundle: Bundle,
    signed_at: datetime,
    leaf: x509.Certificate,
    identity: Identity,
    cert_source: _slsa.Source | None,
    statement: _slsa.Statement | None,
) -> dict[str, Any]:
    claims: dict[str, Any] = {
        "bundle_version": bundle.version,
        "log_index": bundle.tlog.log_index,
        "log_id": bundle.tlog.log_id.hex(),
        "entry_kind": f"{bundle.tlog.kind}/{bundle.tlog.version}",
        "integrated_time": signed_at.isoformat(),
        "identity": {"issuer": identity.issuer, "subjects": list(identity.subjects)},
        "certificate_sha256": _x509.fingerprint(leaf),
    }
    if cert_source is not None:
        claims["certificate_source"] = cert_source.as_dict()
    if statement is None:
        claims["subjects"] = [{"name": "", "digest": dict([_message_digest(bundle).split(":", 1)])}]
        return claims
    claims["subjects"] = [{"name": name, "digest": digests} for name, digests in statement.subjects]
    claims["predicate_type"] = statement.predicate_type
    if statement.provenance is not None:
        p = statement.provenance
        claims["slsa"] = {
            "predicate_type": p.predicate_type,
            "build_type": p.build_type,
            "builder_id": p.builder_id,
            "sources": [s.as_dict() for s in p.sources],
        }
    return claims
