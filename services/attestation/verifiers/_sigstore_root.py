"""A Sigstore `TrustedRoot` (trusted_root.json) supplied by the operator, read offline.

It names the Fulcio CAs (certificate chains), the Rekor transparency logs and the CT logs, each
with the time window in which it may be relied on (`validFor`). Entries whose key type is not
supported here are skipped, so a newer root still loads; a malformed root is a configuration
error (`ValueError`), raised when the verifier is built, never during an appraisal.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec

ROOT_MEDIA_TYPES = frozenset(
    {
        "application/vnd.dev.sigstore.trustedroot+json;version=0.1",
        "application/vnd.dev.sigstore.trustedroot.v0.2+json",
    }
)
# keyDetails -> (curve, hash). Ed25519 logs (Rekor v2) use entry kinds not supported here.
_KEY_DETAILS: dict[str, tuple[type[ec.EllipticCurve], type[hashes.HashAlgorithm]]] = {
    "PKIX_ECDSA_P256_SHA_256": (ec.SECP256R1, hashes.SHA256),
    "PKIX_ECDSA_P384_SHA_384": (ec.SECP384R1, hashes.SHA384),
}


@dataclass(frozen=True, slots=True)
class Window:
    start: datetime
    end: datetime | None

    def contains(self, at: datetime) -> bool:
        return self.start <= at and (self.end is None or at <= self.end)


@dataclass(frozen=True, slots=True)
class LogKey:
    key_id: bytes
    key: ec.EllipticCurvePublicKey
    hash: type[hashes.HashAlgorithm]
    window: Window
    base_url: str

    @property
    def host(self) -> str:
        return self.base_url.split("://", 1)[-1].split("/", 1)[0]


@dataclass(frozen=True, slots=True)
class CertificateAuthority:
    chain: tuple[x509.Certificate, ...]  # issuing CA first, root last
    window: Window


@dataclass(frozen=True, slots=True)
class TrustedRoot:
    tlogs: Mapping[bytes, LogKey]
    ctlogs: Mapping[bytes, LogKey]
    cas: tuple[CertificateAuthority, ...]

    @classmethod
    def from_json(cls, data: bytes | str | Mapping[str, Any]) -> TrustedRoot:
        """Parse trusted_root.json. Raises ValueError when it is not a usable root."""
        try:
            return cls._parse(json.loads(data) if isinstance(data, bytes | str) else data)
        except (AttributeError, TypeError, KeyError) as exc:
            raise ValueError(f"malformed trusted root: {exc}") from exc

    @classmethod
    def _parse(cls, obj: Any) -> TrustedRoot:
        if not isinstance(obj, Mapping) or obj.get("mediaType") not in ROOT_MEDIA_TYPES:
            raise ValueError("not a Sigstore trusted root (mediaType)")
        tlogs = _logs(obj.get("tlogs", []), "tlogs")
        ctlogs = _logs(obj.get("ctlogs", []), "ctlogs")
        cas = tuple(
            _ca(entry) for entry in _list(obj.get("certificateAuthorities", []), "certificateAuthorities")
        )
        if not tlogs or not cas:
            raise ValueError("a trusted root needs at least one transparency log and one CA")
        return cls(tlogs=tlogs, ctlogs=ctlogs, cas=cas)


def _list(value: Any, what: str) -> list[Any]:
    if not isinstance(value, list):
        raise ValueError(f"{what} must be a list")
    return value


def _b64(value: Any, what: str) -> bytes:
    if not isinstance(value, str):
        raise ValueError(f"{what} must be base64 text")
    try:
        return base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise ValueError(f"{what} is not base64") from exc


def _time(value: Any, what: str) -> datetime:
    if not isinstance(value, str):
        raise ValueError(f"{what} must be an RFC 3339 time")
    parsed = datetime.fromisoformat(value)
    if parsed.tzinfo is None:
        raise ValueError(f"{what} must carry a time zone")
    return parsed


def _window(obj: Any, what: str) -> Window:
    if not isinstance(obj, Mapping) or "start" not in obj:
        raise ValueError(f"{what}.validFor needs a start")
    end = obj.get("end")
    return Window(_time(obj["start"], f"{what} start"), _time(end, f"{what} end") if end else None)


def _logs(entries: Any, what: str) -> dict[bytes, LogKey]:
    logs: dict[bytes, LogKey] = {}
    for entry in _list(entries, what):
        public = entry.get("publicKey", {}) if isinstance(entry, Mapping) else {}
        spec = _KEY_DETAILS.get(public.get("keyDetails"))
        if spec is None:
            continue
        der = _b64(public.get("rawBytes"), f"{what} key")
        key = serialization.load_der_public_key(der)
        if not isinstance(key, ec.EllipticCurvePublicKey) or not isinstance(key.curve, spec[0]):
            raise ValueError(f"{what} key does not match its keyDetails")
        key_id = _b64(entry.get("logId", {}).get("keyId"), f"{what} logId")
        # A log's id is the SHA-256 of its DER public key (RFC 6962 3.2); a root that says
        # otherwise is corrupt.
        if key_id != hashlib.sha256(der).digest():
            raise ValueError(f"{what} logId does not match its key")
        logs[key_id] = LogKey(
            key_id=key_id,
            key=key,
            hash=spec[1],
            window=_window(public.get("validFor"), what),
            base_url=str(entry.get("baseUrl", "")),
        )
    return logs


def _ca(entry: Any) -> CertificateAuthority:
    if not isinstance(entry, Mapping):
        raise ValueError("a certificate authority must be an object")
    certs = _list(entry.get("certChain", {}).get("certificates"), "certChain.certificates")
    chain = tuple(x509.load_der_x509_certificate(_b64(c.get("rawBytes"), "CA certificate")) for c in certs)
    if not chain:
        raise ValueError("a certificate authority needs a chain")
    return CertificateAuthority(chain=chain, window=_window(entry.get("validFor"), "certificateAuthorities"))
