"""The deployment keyring: each service's and operator's signing key, and the key-encryption key.

Services and operators are senders whose keys come from deployment configuration (DESIGN section 6).
In production each worker is given its own private key and everyone's public keys (`public()`
writes that part); the embedded stack keeps one file, mode 0600, in its data directory.
Sender ids are SPIFFE IDs in the deployment's own trust domain:
`spiffe://<system trust domain>/service/<name>` and `.../operator/<name>`.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from shared.b64 import b64u_decode, b64u_encode
from shared.bus.registry import SenderKey, StaticRegistry
from shared.bus.signing import Signer
from shared.keys import PrivateKey, PublicKey

SERVICES = ("registration", "issuance", "token", "delegation", "attestation", "audit", "gateway")
DEFAULT_SYSTEM_TRUST_DOMAIN = "agentid.system"


def sender_id(trust_domain: str, kind: str, name: str) -> str:
    return f"spiffe://{trust_domain}/{kind}/{name}"


@dataclass
class Keyring:
    trust_domain: str = DEFAULT_SYSTEM_TRUST_DOMAIN
    public_keys: dict[tuple[str, str], PublicKey] = field(default_factory=dict)   # (kind, name)
    private_keys: dict[tuple[str, str], PrivateKey] = field(default_factory=dict)
    kek: bytes | None = None  # encrypts CA and issuer keys at rest

    @classmethod
    def generate(cls, *, trust_domain: str = DEFAULT_SYSTEM_TRUST_DOMAIN,
                 operators: Iterable[str] = ("admin",)) -> Keyring:
        ring = cls(trust_domain=trust_domain, kek=os.urandom(32))
        for kind, name in [("service", s) for s in SERVICES] + [("operator", o) for o in operators]:
            key = PrivateKey.generate()
            ring.private_keys[(kind, name)] = key
            ring.public_keys[(kind, name)] = key.public
        return ring

    def sender(self, kind: str, name: str) -> str:
        return sender_id(self.trust_domain, kind, name)

    def signer(self, kind: str, name: str) -> Signer:
        key = self.private_keys.get((kind, name))
        if key is None:
            raise KeyError(f"this keyring holds no private key for {kind} {name}")
        return Signer(self.sender(kind, name), key)

    def registry(self) -> StaticRegistry:
        """Every service and operator of the deployment, as accepted senders."""
        return StaticRegistry(
            SenderKey(sender=self.sender(kind, name), kind=kind, key=key, subject_id=name)
            for (kind, name), key in self.public_keys.items()
        )

    # -- files -------------------------------------------------------------------------------
    def to_json(self, *, private: bool) -> dict[str, Any]:
        doc: dict[str, Any] = {"version": 1, "trust_domain": self.trust_domain, "senders": []}
        for (kind, name), key in sorted(self.public_keys.items()):
            entry: dict[str, Any] = {"kind": kind, "name": name, "public_jwk": key.jwk()}
            if private and (kind, name) in self.private_keys:
                entry["private_jwk"] = self.private_keys[(kind, name)].private_jwk()
            doc["senders"].append(entry)
        if private and self.kek is not None:
            doc["kek"] = b64u_encode(self.kek)
        return doc

    def public(self) -> dict[str, Any]:
        return self.to_json(private=False)

    @classmethod
    def from_json(cls, doc: Mapping[str, Any]) -> Keyring:
        if doc.get("version") != 1:
            raise ValueError("unsupported keyring version")
        ring = cls(trust_domain=str(doc["trust_domain"]))
        for entry in doc["senders"]:
            ident = (str(entry["kind"]), str(entry["name"]))
            if ident[0] not in ("service", "operator"):
                raise ValueError(f"keyring sender of unknown kind {ident[0]!r}")
            ring.public_keys[ident] = PublicKey.from_jwk(entry["public_jwk"])
            if "private_jwk" in entry:
                private = PrivateKey.from_jwk(entry["private_jwk"])
                if private.public != ring.public_keys[ident]:
                    raise ValueError(f"keyring entry {ident} has mismatched keys")
                ring.private_keys[ident] = private
        if "kek" in doc:
            ring.kek = b64u_decode(doc["kek"])
            if len(ring.kek) != 32:
                raise ValueError("the key-encryption key must be 32 bytes")
        return ring

    @classmethod
    def load(cls, path: Path) -> Keyring:
        return cls.from_json(json.loads(path.read_text()))

    def save(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as f:
            json.dump(self.to_json(private=True), f, indent=2)
        os.replace(tmp, path)

    @classmethod
    def load_or_create(cls, path: Path) -> Keyring:
        if path.exists():
            return cls.load(path)
        ring = cls.generate()
        ring.save(path)
        return ring
