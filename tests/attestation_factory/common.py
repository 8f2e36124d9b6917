"""Keys, certificates and encodings shared by the evidence builders."""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import json
from collections.abc import Mapping, Sequence
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature
from cryptography.x509.oid import NameOID

UTC = dt.UTC
LONG_AGO = dt.datetime(2020, 1, 1, tzinfo=UTC)
FAR_AHEAD = dt.datetime(2040, 1, 1, tzinfo=UTC)


# -- keys and certificates -------------------------------------------------------------------


def b64u(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def ec_public_jwk(
    key: ec.EllipticCurvePrivateKey | ec.EllipticCurvePublicKey, kid: str | None = None
) -> dict[str, str]:
    public = key.public_key() if isinstance(key, ec.EllipticCurvePrivateKey) else key
    size = (public.curve.key_size + 7) // 8
    numbers = public.public_numbers()
    jwk = {
        "kty": "EC",
        "crv": {256: "P-256", 384: "P-384"}[public.curve.key_size],
        "x": b64u(numbers.x.to_bytes(size, "big")),
        "y": b64u(numbers.y.to_bytes(size, "big")),
    }
    if kid is not None:
        jwk["kid"] = kid
    return jwk


def thumbprint(jwk: Mapping[str, str]) -> str:
    """RFC 7638 thumbprint of an EC public JWK."""
    canonical = json.dumps(
        {k: jwk[k] for k in ("crv", "kty", "x", "y")}, separators=(",", ":"), sort_keys=True
    )
    return b64u(hashlib.sha256(canonical.encode()).digest())


def _name(cn: str) -> x509.Name:
    return x509.Name(
        [
            x509.NameAttribute(NameOID.COMMON_NAME, cn),
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, "agentid tests"),
        ]
    )


def make_cert(
    cn: str,
    public_key: Any,
    *,
    issuer: tuple[x509.Certificate, Any] | None,
    self_key: Any = None,
    ca: bool,
    path_length: int | None = None,
    not_before: dt.datetime = LONG_AGO,
    not_after: dt.datetime = FAR_AHEAD,
    hash_alg: hashes.HashAlgorithm | None = None,
    pss: bool = False,
    extensions: Sequence[tuple[x509.ExtensionType, bool]] = (),
    serial: int | None = None,
    subject: x509.Name | None = None,
) -> x509.Certificate:
    """A certificate signed by `issuer` (cert, key) or self-signed with `self_key`."""
    subject_name = subject if subject is not None else _name(cn)
    issuer_name, signing_key = (issuer[0].subject, issuer[1]) if issuer else (subject_name, self_key)
    builder = (
        x509.CertificateBuilder()
        .subject_name(subject_name)
        .issuer_name(issuer_name)
        .public_key(public_key)
        .serial_number(serial if serial is not None else x509.random_serial_number())
        .not_valid_before(not_before)
        .not_valid_after(not_after)
        .add_extension(x509.BasicConstraints(ca=ca, path_length=path_length if ca else None), critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(public_key), critical=False)
    )
    if ca:
        builder = builder.add_extension(
            x509.KeyUsage(False, False, False, False, False, True, True, False, False), critical=True
        )
    if issuer:
        builder = builder.add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(issuer[1].public_key()), critical=False
        )
    for ext, critical in extensions:
        builder = builder.add_extension(ext, critical=critical)
    if isinstance(signing_key, rsa.RSAPrivateKey) and pss:
        algorithm = hash_alg or hashes.SHA384()
        return builder.sign(
            signing_key,
            algorithm,
            rsa_padding=padding.PSS(mgf=padding.MGF1(algorithm), salt_length=algorithm.digest_size),
        )
    return builder.sign(signing_key, hash_alg or hashes.SHA384())


def der(cert: x509.Certificate) -> bytes:
    return cert.public_bytes(serialization.Encoding.DER)


def pem(cert: x509.Certificate) -> bytes:
    return cert.public_bytes(serialization.Encoding.PEM)


def raw_ecdsa(key: ec.EllipticCurvePrivateKey, data: bytes, hash_alg: hashes.HashAlgorithm) -> bytes:
    r, s = decode_dss_signature(key.sign(data, ec.ECDSA(hash_alg)))
    size = (key.curve.key_size + 7) // 8
    return r.to_bytes(size, "big") + s.to_bytes(size, "big")
