"""Log identities: each tenant's log has its own origin and Ed25519 key; an optional witness cosigns.

One key per log, not one per deployment: a tenant's auditors trust exactly their log's key, a
tenant's log can be handed over or retired with its key, and a key compromise stays within one
tenant. The origin (`<public host>/agentid/<tenant>`, c2sp.org/tlog-checkpoint's schema-less URL)
is fixed when the log is created and stored with it, so a later change of the public URL never
renames a log. The private key is sealed under the keyring's key-encryption key, bound to the log
and origin, and unsealed into memory once per worker.

The witness is a second key the operator holds (`AGENTID_AUDIT_WITNESS_KEY`): it cosigns every
checkpoint with a tlog-cosignature/v1 timestamped signature, after checking the log's own.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519

from shared.checkpoint import Checkpoint, sign_checkpoint
from shared.keys import PrivateKey
from shared.sealing import seal_key, unseal_key
from shared.signed_note import (
    CosignatureSigner,
    Signer,
    add_signature,
    valid_name,
    verifier_key_string,
)

# Events that fail verification and name no tenant with a log go here, never nowhere.
DEPLOYMENT_LOG = "_deployment"


def origin_for(base_url: str, log: str) -> str:
    parts = urlsplit(base_url)
    host = parts.netloc.rpartition("@")[2]  # never a password in a log's name
    origin = f"{host}{parts.path.rstrip('/')}/agentid/{log}"
    if not host or not valid_name(origin):
        raise ValueError(f"the public URL {base_url!r} does not make a valid log origin")
    return origin


@dataclass(frozen=True)
class NewLog:
    origin: str
    public_key: bytes
    sealed_key: bytes


class LogKeys:
    def __init__(self, kek: bytes, base_url: str, witness: CosignatureSigner | None = None) -> None:
        self._kek = kek
        self._base_url = base_url
        self.witness = witness
        self._signers: dict[str, Signer] = {}

    def create(self, log: str) -> NewLog:
        return self.new_key(log, origin_for(self._base_url, log))

    def new_key(self, log: str, origin: str) -> NewLog:
        """A fresh key for the log named `origin` (a new log, or a rotation: the origin never changes)."""
        key = PrivateKey.generate("EdDSA")
        public = key.crypto.public_key().public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
        return NewLog(origin, public, seal_key(self._kek, key, _context(log, origin)))

    def signer(self, log: str, origin: str, public_key: bytes, sealed_key: bytes) -> Signer:
        signer = self._signers.get(log)
        # Keyed by the stored public key too: after a rotation (by any replica) the next append
        # reads the new key from the locked head row and unseals it here.
        if signer is None or signer.name != origin or signer.verifier().public_bytes != bytes(public_key):
            crypto = unseal_key(self._kek, sealed_key, _context(log, origin)).crypto
            if not isinstance(crypto, ed25519.Ed25519PrivateKey):
                raise ValueError(f"log {log}: the sealed key is not Ed25519")
            signer = Signer(origin, crypto)
            # The stored public key is what readers are told to trust: it must be this key's.
            if signer.verifier().public_bytes != bytes(public_key):
                raise ValueError(f"log {log}: the stored public key does not match the sealed key")
            self._signers[log] = signer
        return signer

    def sign(self, signer: Signer, size: int, root: bytes) -> str:
        note = sign_checkpoint(Checkpoint(signer.name, size, root), signer)
        if self.witness is not None:
            note = add_signature(note, self.witness, [signer.verifier()])
        return note

    def sign_handover(self, old: Signer, new: Signer, size: int, root: bytes) -> str:
        """The tree head signed by the outgoing key and the incoming one (then the witness): a reader
        who trusts either key learns the other from this one checkpoint."""
        note = sign_checkpoint(Checkpoint(old.name, size, root), old)
        note = add_signature(note, new, [old.verifier()])
        if self.witness is not None:
            note = add_signature(note, self.witness, [old.verifier()])
        return note

    def witness_keys(self) -> list[str]:
        return [self.witness.verifier_key_string()] if self.witness is not None else []


def log_key(origin: str, public_key: bytes) -> str:
    return verifier_key_string(origin, bytes(public_key))


def load_witness(path: Path | None, name: str) -> CosignatureSigner | None:
    """The witness signer from a PKCS#8 PEM file, or None when none is configured."""
    if path is None:
        return None
    key = serialization.load_pem_private_key(Path(path).read_bytes(), password=None)
    if not isinstance(key, ed25519.Ed25519PrivateKey):
        raise TypeError("the audit witness key must be an Ed25519 private key")
    return CosignatureSigner(name, key)


def _context(log: str, origin: str) -> str:
    return f"audit-log-key:{log}:{origin}"
