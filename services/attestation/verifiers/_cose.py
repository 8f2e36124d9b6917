"""COSE_Sign1 (RFC 9052) decoding and ECDSA verification, for Nitro documents and PSA tokens.

Only what the evidence formats need: one signer, attached payload, ES256 or ES384 with raw
r||s signatures. The algorithm comes from the protected header and must be in the caller's
allow-list AND fit the key's curve; nothing else selects it.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping
from dataclasses import dataclass
from typing import Any

import cbor2
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import encode_dss_signature

from ._codec import cbor_decode, is_array, is_int, is_map, malformed
from .base import AppraisalError, Reason

COSE_SIGN1_TAG = 18
ES256 = -7
ES384 = -35

_HEADER_ALG = 1
_HEADER_CRIT = 2

# alg -> (curve type, hash, size of r and of s)
_ALGS: dict[int, tuple[type[ec.EllipticCurve], type[hashes.HashAlgorithm], int]] = {
    ES256: (ec.SECP256R1, hashes.SHA256, 32),
    ES384: (ec.SECP384R1, hashes.SHA384, 48),
}

# First bytes of a CBOR-encoded COSE_Sign1: tag 18 (0xD2) or a bare 4-element array (0x84).
BINARY_FIRST_BYTES = frozenset({0xD2, 0x84})


@dataclass(frozen=True, slots=True)
class Sign1:
    protected: bytes  # the serialized protected header, exactly as signed
    alg: int
    unprotected: Mapping[Any, Any]
    payload: bytes
    signature: bytes


def decode_sign1(data: bytes, what: str) -> Sign1:
    """Parse a tagged or untagged COSE_Sign1. Raises malformed / unsupported."""
    item = cbor_decode(data, what)
    if isinstance(item, cbor2.CBORTag):
        if item.tag != COSE_SIGN1_TAG:
            raise malformed(f"{what}: CBOR tag {item.tag} is not COSE_Sign1 (18)")
        item = item.value
    if not is_array(item) or len(item) != 4:
        raise malformed(f"{what}: COSE_Sign1 is an array of four items")
    protected, unprotected, payload, signature = item
    if not isinstance(protected, bytes) or not protected:
        raise malformed(f"{what}: protected header must be a non-empty byte string")
    if not is_map(unprotected):
        raise malformed(f"{what}: unprotected header must be a map")
    if not isinstance(payload, bytes):
        # A nil payload means "detached", which none of our formats use.
        raise malformed(f"{what}: payload must be an attached byte string")
    if not isinstance(signature, bytes):
        raise malformed(f"{what}: signature must be a byte string")
    header = cbor_decode(protected, f"{what} protected header")
    if not is_map(header):
        raise malformed(f"{what}: protected header must be a map")
    if _HEADER_CRIT in header or _HEADER_CRIT in unprotected:
        # We understand no critical header parameters, so we must refuse any that are declared.
        raise AppraisalError(Reason.UNSUPPORTED, f"{what}: critical header parameters present")
    if _HEADER_ALG in unprotected:
        raise malformed(f"{what}: alg must only be in the protected header")
    alg = header.get(_HEADER_ALG)
    if not is_int(alg):
        raise malformed(f"{what}: protected header has no integer alg")
    return Sign1(protected, alg, unprotected, payload, signature)


def sig_structure(msg: Sign1) -> bytes:
    """The bytes that are signed: CBOR ["Signature1", protected, h'', payload]."""
    return cbor2.dumps(["Signature1", msg.protected, b"", msg.payload])


def check_alg(msg: Sign1, allowed: Collection[int], what: str) -> None:
    if msg.alg not in allowed or msg.alg not in _ALGS:
        raise AppraisalError(Reason.UNSUPPORTED, f"{what}: COSE alg {msg.alg} is not accepted")


def key_fits(msg: Sign1, key: Any) -> bool:
    """True when `key` is an EC key on the curve the message's algorithm requires."""
    spec = _ALGS.get(msg.alg)
    return spec is not None and isinstance(key, ec.EllipticCurvePublicKey) and isinstance(key.curve, spec[0])


def verify_sign1(msg: Sign1, key: ec.EllipticCurvePublicKey, allowed: Collection[int], what: str) -> None:
    """Verify the ECDSA signature. Raises unsupported (alg/key) or bad_signature."""
    check_alg(msg, allowed, what)
    if not key_fits(msg, key):
        raise AppraisalError(Reason.UNSUPPORTED, f"{what}: key does not fit COSE alg {msg.alg}")
    if not signature_valid(msg, key):
        raise AppraisalError(Reason.BAD_SIGNATURE, f"{what}: signature does not verify")


def signature_valid(msg: Sign1, key: ec.EllipticCurvePublicKey) -> bool:
    _, hash_type, size = _ALGS[msg.alg]
    if len(msg.signature) != 2 * size:
        return False
    der = encode_dss_signature(
        int.from_bytes(msg.signature[:size], "big"), int.from_bytes(msg.signature[size:], "big")
    )
    try:
        key.verify(der, sig_structure(msg), ec.ECDSA(hash_type()))
    except InvalidSignature:
        return False
    return True
