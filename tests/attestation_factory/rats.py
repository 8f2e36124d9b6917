"""PSA attestation tokens (COSE_Sign1) and EAR JWTs signed by test keys."""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from typing import Any

import cbor2
import jwt
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec

from .common import raw_ecdsa

# -- PSA (EAT) and EAR -----------------------------------------------------------------------


def psa_claims(
    *, nonce: bytes = bytes(range(32)), lifecycle: int = 0x3000, measurement: bytes = b"\x11" * 32
) -> dict[int, Any]:
    return {
        265: "http://arm.com/psa/2.0.0",
        2394: 1,
        2395: lifecycle,
        2396: b"\x50" * 32,
        2397: b"\xde" * 32,
        2399: [{1: "BL", 2: measurement, 5: b"\x51" * 32}],
        10: nonce,
        256: b"\x01" + b"\xa0" * 32,
    }


def psa_token(
    key: ec.EllipticCurvePrivateKey, claims: Mapping[int, Any], *, alg: int = -7, tagged: bool = True
) -> bytes:
    protected = cbor2.dumps({1: alg})
    body = cbor2.dumps(dict(claims))
    hash_alg = hashes.SHA256() if key.curve.key_size == 256 else hashes.SHA384()
    sig = raw_ecdsa(key, cbor2.dumps(["Signature1", protected, b"", body]), hash_alg)
    msg = [protected, {}, body, sig]
    return cbor2.dumps(cbor2.CBORTag(18, msg) if tagged else msg)


def ear_jwt(
    key: ec.EllipticCurvePrivateKey, claims: Mapping[str, Any], *, headers: Mapping[str, Any] | None = None
) -> bytes:
    return jwt.encode(dict(claims), key, algorithm="ES256", headers=dict(headers or {})).encode("ascii")


def ear_claims(
    *,
    iat: dt.datetime,
    nonce: str | None = None,
    status: str = "affirming",
    vector: Mapping[str, int] | None = None,
    submod: str = "agent",
) -> dict[str, Any]:
    claims: dict[str, Any] = {
        "eat_profile": "tag:github.com,2023:veraison/ear",
        "iat": int(iat.timestamp()),
        "ear.verifier-id": {"developer": "https://veraison.example", "build": "test"},
        "submods": {
            submod: {
                "ear.status": status,
                "ear.trustworthiness-vector": dict(
                    vector or {"instance-identity": 2, "executables": 2, "hardware": 2}
                ),
                "ear.appraisal-policy-id": "policy:test",
            }
        },
    }
    if nonce is not None:
        claims["eat_nonce"] = nonce
    return claims
