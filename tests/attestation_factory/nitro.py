"""AWS Nitro-shaped attestation documents signed by a test PKI."""

from __future__ import annotations

import datetime as dt
import functools
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import cbor2
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec

from .common import FAR_AHEAD, LONG_AGO, der, make_cert, raw_ecdsa

# -- AWS Nitro -------------------------------------------------------------------------------


@dataclass(frozen=True)
class NitroPki:
    root_key: ec.EllipticCurvePrivateKey
    root: x509.Certificate
    intermediate_key: ec.EllipticCurvePrivateKey
    intermediate: x509.Certificate
    leaf_key: ec.EllipticCurvePrivateKey
    leaf: x509.Certificate


def make_nitro_pki(
    *,
    leaf_not_before: dt.datetime = LONG_AGO,
    leaf_not_after: dt.datetime = FAR_AHEAD,
    hash_alg: hashes.HashAlgorithm | None = None,
) -> NitroPki:
    root_key = ec.generate_private_key(ec.SECP384R1())
    root = make_cert("test.nitro-enclaves", root_key.public_key(), issuer=None, self_key=root_key, ca=True)
    inter_key = ec.generate_private_key(ec.SECP384R1())
    inter = make_cert(
        "zone.test.nitro-enclaves", inter_key.public_key(), issuer=(root, root_key), ca=True, path_length=1
    )
    leaf_key = ec.generate_private_key(ec.SECP384R1())
    leaf = make_cert(
        "i-test-enc.test.aws",
        leaf_key.public_key(),
        issuer=(inter, inter_key),
        ca=False,
        not_before=leaf_not_before,
        not_after=leaf_not_after,
        hash_alg=hash_alg,
        extensions=[(x509.KeyUsage(True, False, False, False, False, False, False, False, False), True)],
    )
    return NitroPki(root_key, root, inter_key, inter, leaf_key, leaf)


@functools.lru_cache(maxsize=1)
def nitro_pki() -> NitroPki:
    return make_nitro_pki()


GOOD_PCRS = {i: bytes([i + 1]) * 48 for i in (0, 1, 2)} | {3: bytes(48), 4: b"\x44" * 48, 8: bytes(48)}


def nitro_document(
    pki: NitroPki | None = None,
    *,
    timestamp: dt.datetime,
    pcrs: Mapping[int, bytes] = GOOD_PCRS,
    nonce: bytes | None = None,
    user_data: bytes | None = None,
    public_key: bytes | None = None,
    tagged: bool = True,
    alg: int = -35,
    sign_key: ec.EllipticCurvePrivateKey | None = None,
    fields: Mapping[str, Any] | None = None,
    drop: Sequence[str] = (),
) -> bytes:
    pki = pki or nitro_pki()
    payload: dict[str, Any] = {
        "module_id": "i-0test-enc0test",
        "digest": "SHA384",
        "timestamp": int(timestamp.timestamp() * 1000),
        "pcrs": dict(pcrs),
        "certificate": der(pki.leaf),
        "cabundle": [der(pki.root), der(pki.intermediate)],
    }
    for name, value in (("public_key", public_key), ("user_data", user_data), ("nonce", nonce)):
        if value is not None:
            payload[name] = value
    payload.update(fields or {})
    for name in drop:
        payload.pop(name, None)
    protected = cbor2.dumps({1: alg})
    body = cbor2.dumps(payload)
    to_sign = cbor2.dumps(["Signature1", protected, b"", body])
    key = sign_key or pki.leaf_key
    hash_alg = hashes.SHA384() if key.curve.key_size == 384 else hashes.SHA256()
    msg = [protected, {}, body, raw_ecdsa(key, to_sign, hash_alg)]
    return cbor2.dumps(cbor2.CBORTag(18, msg) if tagged else msg)
