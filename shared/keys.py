"""Asymmetric keys: the one module that turns key material into objects and back.

Two kinds of key are accepted anywhere an agent, orchestrator or service signs: Ed25519
(JOSE `EdDSA`, the default) and P-256 (`ES256`). Keys are loaded once into `cryptography`
objects; signatures are raw (64 bytes for both: Ed25519 as defined, ES256 as R||S per
RFC 7518 section 3.4, never DER).
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Mapping
from typing import Any, Literal

import base58
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature, encode_dss_signature

from shared.b64 import Base64Error, b64u_decode, b64u_encode

Alg = Literal["EdDSA", "ES256"]
ALGORITHMS: tuple[Alg, ...] = ("EdDSA", "ES256")

# Multicodec prefixes (varint-encoded) for did:key: ed25519-pub 0xed, p256-pub 0x1200.
_ED25519_CODEC = b"\xed\x01"
_P256_CODEC = b"\x80\x24"
_BASE58 = re.compile(r"[1-9A-HJ-NP-Za-km-z]{1,128}")
_PRIVATE_MEMBERS = frozenset({"d", "p", "q", "dp", "dq", "qi", "oth", "k"})


class InvalidKey(ValueError):
    """Key material that is malformed, of an unsupported type, or private where public was expected."""


class PublicKey:
    """A verified-shape public key: Ed25519 or P-256."""

    # The JWK, thumbprint and DID are derived on first use and kept: a key met only to check one
    # signature (a UCAN principal, a DPoP proof) never pays for the encodings it does not need.
    __slots__ = ("_key", "alg", "_jwk", "_thumbprint", "_did")

    def __init__(self, key: ed25519.Ed25519PublicKey | ec.EllipticCurvePublicKey) -> None:
        if isinstance(key, ed25519.Ed25519PublicKey):
            self.alg: Alg = "EdDSA"
        elif isinstance(key, ec.EllipticCurvePublicKey) and isinstance(key.curve, ec.SECP256R1):
            self.alg = "ES256"
        else:
            raise InvalidKey("only Ed25519 and P-256 keys are accepted")
        self._key = key
        self._jwk: dict[str, str] | None = None
        self._thumbprint: str | None = None
        self._did: str | None = None

    # -- loading ---------------------------------------------------------------------------
    @classmethod
    def from_jwk(cls, jwk: Mapping[str, Any]) -> PublicKey:
        """Load a public JWK, refusing private members, unknown curves and bad coordinates."""
        if not isinstance(jwk, Mapping):
            raise InvalidKey("a JWK is a JSON object")
        if _PRIVATE_MEMBERS & set(jwk):
            raise InvalidKey("a public JWK must not carry private members")
        kty, crv = jwk.get("kty"), jwk.get("crv")
        try:
            if kty == "OKP" and crv == "Ed25519":
                x = b64u_decode(_str(jwk, "x"))
                if len(x) != 32:
                    raise InvalidKey("Ed25519 x must be 32 bytes")
                return cls(ed25519.Ed25519PublicKey.from_public_bytes(x))
            if kty == "EC" and crv == "P-256":
                x, y = b64u_decode(_str(jwk, "x")), b64u_decode(_str(jwk, "y"))
                if len(x) != 32 or len(y) != 32:
                    raise InvalidKey("P-256 coordinates must be 32 bytes")
                numbers = ec.EllipticCurvePublicNumbers(
                    int.from_bytes(x, "big"), int.from_bytes(y, "big"), ec.SECP256R1()
                )
                return cls(numbers.public_key())  # raises ValueError when the point is off the curve
        except (Base64Error, ValueError) as exc:
            if isinstance(exc, InvalidKey):
                raise
            raise InvalidKey(f"bad {kty} key: {exc}") from exc
        raise InvalidKey(f"unsupported key type {kty!r}/{crv!r}")

    @classmethod
    def from_did(cls, did: str) -> PublicKey:
        """Resolve a did:key (Ed25519 or P-256) to its key, without any network."""
        if not isinstance(did, str) or not did.startswith("did:key:z"):
            raise InvalidKey("not a did:key")
        ident = did.split("#", 1)[0][len("did:key:z") :]
        # The alphabet only (the base58 codec would quietly strip whitespace), and no leading "1":
        # it would decode to a zero byte, which no multicodec prefix starts with. Without either,
        # a base58 string is the one spelling of its number, so the bytes below have one DID.
        if not _BASE58.fullmatch(ident) or ident[0] == "1":
            raise InvalidKey("did:key is not base58btc")
        number = base58.b58decode_int(ident)
        raw = number.to_bytes((number.bit_length() + 7) // 8, "big")
        if raw[:2] == _ED25519_CODEC and len(raw) == 34:
            key = cls(ed25519.Ed25519PublicKey.from_public_bytes(raw[2:]))
            key._did = "did:key:z" + ident  # an Ed25519 key gives back the very bytes it was made from
            return key
        if raw[:2] == _P256_CODEC and len(raw) == 35:
            try:  # its DID is re-encoded from the point when asked, so one point has one DID
                return cls(ec.EllipticCurvePublicKey.from_encoded_point(ec.SECP256R1(), raw[2:]))
            except ValueError as exc:
                raise InvalidKey("did:key P-256 point is invalid") from exc
        raise InvalidKey("did:key has an unsupported multicodec")

    @classmethod
    def from_pem(cls, pem: bytes | str) -> PublicKey:
        data = pem.encode() if isinstance(pem, str) else pem
        try:
            key = serialization.load_pem_public_key(data)
        except ValueError as exc:
            raise InvalidKey("not a PEM public key") from exc
        if not isinstance(key, ed25519.Ed25519PublicKey | ec.EllipticCurvePublicKey):
            raise InvalidKey("only Ed25519 and P-256 keys are accepted")
        return cls(key)

    # -- views -----------------------------------------------------------------------------
    @property
    def crypto(self) -> ed25519.Ed25519PublicKey | ec.EllipticCurvePublicKey:
        """The `cryptography` object, for PyJWT and X.509 builders."""
        return self._key

    def jwk(self, **extra: Any) -> dict[str, Any]:
        if self._jwk is None:
            if isinstance(self._key, ed25519.Ed25519PublicKey):
                raw = self._key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
                self._jwk = {"kty": "OKP", "crv": "Ed25519", "x": b64u_encode(raw)}
            else:
                numbers = self._key.public_numbers()
                self._jwk = {
                    "kty": "EC",
                    "crv": "P-256",
                    "x": b64u_encode(numbers.x.to_bytes(32, "big")),
                    "y": b64u_encode(numbers.y.to_bytes(32, "big")),
                }
        return {**self._jwk, **extra}

    @property
    def thumbprint(self) -> str:
        """RFC 7638 JWK SHA-256 thumbprint, base64url (used as `kid`, `jkt`)."""
        if self._thumbprint is None:
            members = self.jwk()
            canonical = json.dumps(members, separators=(",", ":"), sort_keys=True).encode()
            self._thumbprint = b64u_encode(hashlib.sha256(canonical).digest())
        return self._thumbprint

    @property
    def did(self) -> str:
        if self._did is None:
            self._did = self._encode_did()
        return self._did

    def _encode_did(self) -> str:
        if self.alg == "EdDSA":
            raw = _ED25519_CODEC + self._key.public_bytes(
                serialization.Encoding.Raw, serialization.PublicFormat.Raw
            )
        else:
            raw = _P256_CODEC + self._key.public_bytes(
                serialization.Encoding.X962, serialization.PublicFormat.CompressedPoint
            )
        return "did:key:z" + base58.b58encode(raw).decode("ascii")

    def pem(self) -> str:
        return self._key.public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        ).decode("ascii")

    # -- verification ----------------------------------------------------------------------
    def verify(self, signature: bytes, data: bytes) -> bool:
        """True when `signature` (raw, 64 bytes) is valid over `data`. Never raises on bad input."""
        if len(signature) != 64:
            return False
        try:
            if self.alg == "EdDSA":
                self._key.verify(signature, data)  # type: ignore[call-arg]
            else:
                der = encode_dss_signature(
                    int.from_bytes(signature[:32], "big"), int.from_bytes(signature[32:], "big")
                )
                self._key.verify(der, data, ec.ECDSA(hashes.SHA256()))  # type: ignore[call-arg]
        except InvalidSignature:
            return False
        return True

    def __eq__(self, other: object) -> bool:
        return isinstance(other, PublicKey) and other.thumbprint == self.thumbprint

    def __hash__(self) -> int:
        return hash(self.thumbprint)

    def __repr__(self) -> str:
        return f"PublicKey({self.alg}, {self.thumbprint})"


class PrivateKey:
    """A private signing key. Never serialised except on purpose (`private_jwk`, `pem`)."""

    __slots__ = ("_key", "public")

    def __init__(self, key: ed25519.Ed25519PrivateKey | ec.EllipticCurvePrivateKey) -> None:
        if isinstance(key, ec.EllipticCurvePrivateKey) and not isinstance(key.curve, ec.SECP256R1):
            raise InvalidKey("only P-256 EC keys are accepted")
        if not isinstance(key, ed25519.Ed25519PrivateKey | ec.EllipticCurvePrivateKey):
            raise InvalidKey("only Ed25519 and P-256 keys are accepted")
        self._key = key
        self.public = PublicKey(key.public_key())

    @classmethod
    def generate(cls, alg: Alg = "EdDSA") -> PrivateKey:
        if alg == "EdDSA":
            return cls(ed25519.Ed25519PrivateKey.generate())
        if alg == "ES256":
            return cls(ec.generate_private_key(ec.SECP256R1()))
        raise InvalidKey(f"unsupported algorithm {alg!r}")

    @classmethod
    def from_jwk(cls, jwk: Mapping[str, Any]) -> PrivateKey:
        if not isinstance(jwk, Mapping) or "d" not in jwk:
            raise InvalidKey("a private JWK needs d")
        public = PublicKey.from_jwk({k: v for k, v in jwk.items() if k != "d"})
        try:
            d = b64u_decode(_str(jwk, "d"))
            if public.alg == "EdDSA":
                if len(d) != 32:
                    raise InvalidKey("Ed25519 d must be 32 bytes")
                key: Any = ed25519.Ed25519PrivateKey.from_private_bytes(d)
            else:
                key = ec.derive_private_key(int.from_bytes(d, "big"), ec.SECP256R1())
        except (Base64Error, ValueError) as exc:
            if isinstance(exc, InvalidKey):
                raise
            raise InvalidKey("bad private key") from exc
        private = cls(key)
        if private.public != public:
            raise InvalidKey("private and public members do not match")
        return private

    @classmethod
    def from_pem(cls, pem: bytes | str) -> PrivateKey:
        data = pem.encode() if isinstance(pem, str) else pem
        try:
            key = serialization.load_pem_private_key(data, password=None)
        except (ValueError, TypeError) as exc:
            raise InvalidKey("not an unencrypted PEM private key") from exc
        return cls(key)  # type: ignore[arg-type]

    @property
    def alg(self) -> Alg:
        return self.public.alg

    @property
    def crypto(self) -> ed25519.Ed25519PrivateKey | ec.EllipticCurvePrivateKey:
        return self._key

    def sign(self, data: bytes) -> bytes:
        """Raw signature: 64 bytes (Ed25519, or ES256 R||S)."""
        if isinstance(self._key, ed25519.Ed25519PrivateKey):
            return self._key.sign(data)
        r, s = decode_dss_signature(self._key.sign(data, ec.ECDSA(hashes.SHA256())))
        return r.to_bytes(32, "big") + s.to_bytes(32, "big")

    def private_jwk(self) -> dict[str, Any]:
        if isinstance(self._key, ed25519.Ed25519PrivateKey):
            d = self._key.private_bytes(
                serialization.Encoding.Raw, serialization.PrivateFormat.Raw, serialization.NoEncryption()
            )
        else:
            d = self._key.private_numbers().private_value.to_bytes(32, "big")
        return {**self.public.jwk(), "d": b64u_encode(d)}

    def pem(self) -> str:
        return self._key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        ).decode("ascii")

    def __repr__(self) -> str:  # never print key material
        return f"PrivateKey({self.alg}, {self.public.thumbprint})"


def _str(jwk: Mapping[str, Any], name: str) -> str:
    value = jwk.get(name)
    if not isinstance(value, str):
        raise InvalidKey(f"JWK member {name} must be a string")
    return value
