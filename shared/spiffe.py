"""SPIFFE: IDs, the tenant CA, X.509-SVIDs, JWT-SVIDs and trust bundles, as the SPIFFE specs say.

- SPIFFE ID: `spiffe://<trust domain>/<path>`, trust domain lowercase `[a-z0-9._-]`, path segments
  `[A-Za-z0-9._-]`, no empty, `.` or `..` segments, no query, fragment, port or userinfo.
- X.509-SVID leaf: exactly one URI SAN (the ID), CA false, key usage digitalSignature (critical),
  no keyCertSign/cRLSign, EKU serverAuth + clientAuth. The subject carries the agent id as CN so
  services that read it (AWS IAM Roles Anywhere's source identity) see the agent.
- CA: CA true, pathLen 0 (it signs leaves only), keyCertSign + cRLSign, URI SAN `spiffe://<td>`.
- JWT-SVID: ES256, header only `alg`, `kid`, `typ` (`JWT`); claims `sub`, `aud`, `exp`, `iat`.
- Bundle: a JWKS with `use` `x509-svid` (one CA certificate in `x5c`, no `kid`) and `jwt-svid`
  (`kid` required) keys, plus `spiffe_sequence` and `spiffe_refresh_hint`.
"""

from __future__ import annotations

import base64
import re
import time
from collections.abc import Iterable, Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID
from cryptography.x509.verification import PolicyBuilder, Store, VerificationError

from shared import jose
from shared.keys import PrivateKey, PublicKey

_ID = re.compile(r"spiffe://([a-z0-9._-]+)((?:/[A-Za-z0-9._-]+)*)")
JWT_SVID_ALGS = ("ES256", "ES384", "ES512", "RS256", "RS384", "RS512", "PS256", "PS384", "PS512")
JWT_SVID_MAX_LIFETIME_S = 300


class SpiffeError(ValueError):
    """Not a valid SPIFFE ID, SVID or bundle."""


def parse_id(spiffe_id: str) -> tuple[str, str]:
    """(trust domain, path) of a valid SPIFFE ID; SpiffeError otherwise."""
    if not isinstance(spiffe_id, str) or len(spiffe_id.encode()) > 2048:
        raise SpiffeError("SPIFFE ID missing or too long")
    m = _ID.fullmatch(spiffe_id)
    if not m or len(m.group(1)) > 255:
        raise SpiffeError(f"not a SPIFFE ID: {spiffe_id!r}")
    if any(seg in (".", "..") for seg in m.group(2).split("/")[1:]):
        raise SpiffeError("SPIFFE ID path has dot segments")
    return m.group(1), m.group(2)


def _serial() -> int:
    return x509.random_serial_number()


def make_ca(key: PrivateKey, trust_domain: str, *, not_before: datetime, not_after: datetime) -> x509.Certificate:
    name = x509.Name([x509.NameAttribute(NameOID.ORGANIZATION_NAME, "agentid"),
                      # Unique per key: rotated CAs overlap in the bundle and must not share a name.
                      x509.NameAttribute(NameOID.COMMON_NAME, f"{trust_domain} CA {key.public.thumbprint[:16]}")])
    ski = x509.SubjectKeyIdentifier.from_public_key(key.public.crypto)
    return (
        x509.CertificateBuilder()
        .subject_name(name).issuer_name(name)
        .public_key(key.public.crypto)
        .serial_number(_serial())
        .not_valid_before(not_before).not_valid_after(not_after)
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(x509.KeyUsage(digital_signature=True, content_commitment=False, key_encipherment=False,
                                     data_encipherment=False, key_agreement=False, key_cert_sign=True,
                                     crl_sign=True, encipher_only=False, decipher_only=False), critical=True)
        .add_extension(x509.SubjectAlternativeName([x509.UniformResourceIdentifier(f"spiffe://{trust_domain}")]),
                       critical=False)
        .add_extension(ski, critical=False)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(ski), critical=False)
        .sign(key.crypto, hashes.SHA256())  # type: ignore[arg-type]
    )


def issue_svid(ca_key: PrivateKey, ca_cert: x509.Certificate, subject_key: PublicKey, spiffe_id: str, *,
               common_name: str, not_before: datetime, not_after: datetime) -> x509.Certificate:
    trust_domain, path = parse_id(spiffe_id)
    if not path:
        raise SpiffeError("an SVID's ID has a path")
    not_after = min(not_after, ca_cert.not_valid_after_utc)  # never outlive the CA
    return (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.ORGANIZATION_NAME, trust_domain),
                                 x509.NameAttribute(NameOID.COMMON_NAME, common_name)]))
        .issuer_name(ca_cert.subject)
        .public_key(subject_key.crypto)
        .serial_number(_serial())
        .not_valid_before(not_before).not_valid_after(not_after)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.KeyUsage(digital_signature=True, content_commitment=False, key_encipherment=False,
                                     data_encipherment=False, key_agreement=False, key_cert_sign=False,
                                     crl_sign=False, encipher_only=False, decipher_only=False), critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH]),
                       critical=False)
        .add_extension(x509.SubjectAlternativeName([x509.UniformResourceIdentifier(spiffe_id)]), critical=False)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(subject_key.crypto), critical=False)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public.crypto), critical=False)  # type: ignore[arg-type]
        .sign(ca_key.crypto, hashes.SHA256())  # type: ignore[arg-type]
    )


def pem(cert: x509.Certificate) -> str:
    return cert.public_bytes(serialization.Encoding.PEM).decode("ascii")


def svid_id(cert: x509.Certificate) -> str:
    """The SPIFFE ID of an X.509-SVID leaf, enforcing the leaf rules of the X.509-SVID spec."""
    try:
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
        bc = cert.extensions.get_extension_for_class(x509.BasicConstraints).value
        ku_ext = cert.extensions.get_extension_for_class(x509.KeyUsage)
    except x509.ExtensionNotFound as exc:
        raise SpiffeError("SVID lacks a required extension") from exc
    uris = san.get_values_for_type(x509.UniformResourceIdentifier)
    if len(uris) != 1:
        raise SpiffeError("an X.509-SVID has exactly one URI SAN")
    if bc.ca:
        raise SpiffeError("an X.509-SVID leaf is not a CA")
    ku = ku_ext.value
    if not ku_ext.critical or not ku.digital_signature or ku.key_cert_sign or ku.crl_sign:
        raise SpiffeError("an X.509-SVID leaf has critical key usage digitalSignature only for signing")
    parse_id(uris[0])
    return uris[0]


def verify_x509_svid(chain: Sequence[x509.Certificate], authorities: Iterable[x509.Certificate], *,
                     now: datetime | None = None) -> str:
    """RFC 5280 path validation of `chain` (leaf first) to the trust domain's authorities, then
    the SPIFFE leaf rules. Returns the authenticated SPIFFE ID; SpiffeError otherwise."""
    if not chain:
        raise SpiffeError("empty chain")
    spiffe_id = svid_id(chain[0])
    trust_domain, _ = parse_id(spiffe_id)
    anchors = [a for a in authorities if f"spiffe://{trust_domain}" in _uris(a)]
    if not anchors:
        raise SpiffeError("no authority for this trust domain")
    verifier = PolicyBuilder().store(Store(anchors)).time(now or datetime.now(UTC)).build_client_verifier()
    try:
        verifier.verify(chain[0], list(chain[1:]))
    except VerificationError as exc:
        raise SpiffeError(f"chain does not verify: {exc}") from exc
    return spiffe_id


def _uris(cert: x509.Certificate) -> list[str]:
    try:
        return cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value.get_values_for_type(
            x509.UniformResourceIdentifier)
    except x509.ExtensionNotFound:
        return []


# -- JWT-SVIDs -------------------------------------------------------------------------------------
def mint_jwt_svid(key: PrivateKey, kid: str, spiffe_id: str, audience: Sequence[str], *,
                  lifetime_s: int = JWT_SVID_MAX_LIFETIME_S, now: float | None = None) -> str:
    if not audience:
        raise SpiffeError("a JWT-SVID needs an audience")
    parse_id(spiffe_id)
    iat = int(time.time() if now is None else now)
    aud: str | list[str] = audience[0] if len(audience) == 1 else list(audience)
    return jose.sign({"sub": spiffe_id, "aud": aud, "iat": iat,
                      "exp": iat + min(lifetime_s, JWT_SVID_MAX_LIFETIME_S)}, key, typ="JWT", kid=kid)


def verify_jwt_svid(token: str, keys: Mapping[str, PublicKey], *, audience: str,
                    now: float | None = None, leeway: float = 30) -> dict[str, Any]:
    """Check a JWT-SVID against the bundle's jwt-svid keys (by kid). Returns its claims."""
    header, _, _ = jose.split(token)
    if set(header) - {"alg", "kid", "typ"}:
        raise SpiffeError("JWT-SVID header has members beyond alg, kid, typ")
    if header.get("typ", "JWT") not in ("JWT", "JOSE"):
        raise SpiffeError("JWT-SVID typ must be JWT or JOSE")
    key = keys.get(header.get("kid", ""))
    if key is None:
        raise SpiffeError("JWT-SVID signed by an unknown key")
    try:
        _, claims = jose.verify(token, key, algorithms=JWT_SVID_ALGS, typ=None, audience=audience,
                                require=("sub", "aud", "exp"), leeway=leeway,
                                now=(lambda: now) if now is not None else time.time)
    except jose.JoseError as exc:
        raise SpiffeError(f"JWT-SVID rejected: {exc.reason}") from exc
    parse_id(claims["sub"])
    return claims


# -- bundles --------------------------------------------------------------------------------------
def bundle_jwks(x509_authorities: Iterable[x509.Certificate], jwt_authorities: Iterable[tuple[str, PublicKey]],
                *, sequence: int, refresh_hint_s: int = 300) -> dict[str, Any]:
    keys: list[dict[str, Any]] = []
    for cert in x509_authorities:
        der = cert.public_bytes(serialization.Encoding.DER)
        keys.append({**PublicKey(cert.public_key()).jwk(), "use": "x509-svid",  # type: ignore[arg-type]
                     "x5c": [base64.b64encode(der).decode("ascii")]})
    for kid, key in jwt_authorities:
        keys.append({**key.jwk(), "use": "jwt-svid", "kid": kid})
    return {"keys": keys, "spiffe_sequence": sequence, "spiffe_refresh_hint": refresh_hint_s}


def bundle_authorities(bundle: Mapping[str, Any]) -> tuple[list[x509.Certificate], dict[str, PublicKey]]:
    """The X.509 authorities and JWT keys of a bundle JWKS; entries we cannot use are skipped."""
    certs: list[x509.Certificate] = []
    jwt_keys: dict[str, PublicKey] = {}
    for entry in bundle.get("keys", []):
        try:
            if entry.get("use") == "x509-svid" and entry.get("x5c"):
                certs.append(x509.load_der_x509_certificate(base64.b64decode(entry["x5c"][0])))
            elif entry.get("use") == "jwt-svid" and entry.get("kid"):
                jwt_keys[entry["kid"]] = PublicKey.from_jwk(
                    {k: v for k, v in entry.items() if k in ("kty", "crv", "x", "y")})
        except (ValueError, TypeError):
            continue
    return certs, jwt_keys

