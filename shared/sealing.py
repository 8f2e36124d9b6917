"""Secrets at rest: CA and issuer private keys sealed under the deployment's key-encryption key.

AES-256-GCM with a fresh 96-bit nonce per seal; the associated data names what the secret is
(tenant, authority id, purpose), so a sealed key copied into another row does not open there.
"""

from __future__ import annotations

import os

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from shared.keys import PrivateKey

_VERSION = b"\x01"


class SealError(ValueError):
    """A sealed secret could not be opened: wrong key, wrong context, or tampered."""


def seal(kek: bytes, plaintext: bytes, context: str) -> bytes:
    nonce = os.urandom(12)
    return _VERSION + nonce + AESGCM(kek).encrypt(nonce, plaintext, context.encode())


def unseal(kek: bytes, sealed: bytes, context: str) -> bytes:
    if len(sealed) < 29 or sealed[:1] != _VERSION:
        raise SealError("not a sealed secret")
    try:
        return AESGCM(kek).decrypt(sealed[1:13], sealed[13:], context.encode())
    except InvalidTag as exc:
        raise SealError("sealed secret does not open in this context") from exc


def seal_key(kek: bytes, key: PrivateKey, context: str) -> bytes:
    return seal(kek, key.pem().encode(), context)


def unseal_key(kek: bytes, sealed: bytes, context: str) -> PrivateKey:
    return PrivateKey.from_pem(unseal(kek, sealed, context))
