"""Compact JWS/JWT over PyJWT, with the checks PyJWT leaves to its caller.

Every verification names its algorithm allow-list and expected `typ`; `none` and HMAC are never
accepted; the key type must match `alg`; header and payload must be JSON objects without
duplicate members; time claims are checked here against an injectable clock, so tests can pin
time and verifiers can state their own leeway.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Collection, Iterable, Mapping
from typing import Any

import jwt
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from jwt.algorithms import OKPAlgorithm

from shared.b64 import Base64Error, b64u_decode
from shared.keys import PrivateKey, PublicKey

# RFC 9864 names Ed25519 explicitly; EdDSA is the older polymorphic name. Both mean Ed25519 here.
_jws = jwt.PyJWS()
_jws.register_algorithm("Ed25519", OKPAlgorithm())

ED25519_ALGS = frozenset({"EdDSA", "Ed25519"})
EC_ALGS = frozenset({"ES256"})
RSA_ALGS = frozenset({"RS256", "RS384", "RS512", "PS256", "PS384", "PS512"})
NEVER = frozenset({"none", "HS256", "HS384", "HS512"})

MAX_TOKEN_BYTES = 16 * 1024


class JoseError(ValueError):
    """A token that must not be trusted. `reason` is a short stable code."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason


def _strict_object(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    obj: dict[str, Any] = {}
    for k, v in pairs:
        if k in obj:
            raise JoseError("malformed", f"duplicate member {k!r}")
        obj[k] = v
    return obj


def parse_json_object(raw: bytes) -> dict[str, Any]:
    """Strict JSON object: UTF-8, no duplicate members, no NaN."""
    try:
        value = json.loads(
            raw.decode("utf-8"), object_pairs_hook=_strict_object, parse_constant=_no_constant
        )
    except (UnicodeDecodeError, json.JSONDecodeError, ValueError, RecursionError) as exc:
        if isinstance(exc, JoseError):
            raise
        raise JoseError("malformed", "not a JSON object") from exc
    if not isinstance(value, dict):
        raise JoseError("malformed", "not a JSON object")
    return value


def _no_constant(name: str) -> Any:
    raise JoseError("malformed", f"JSON constant {name} is not allowed")


def split(token: str) -> tuple[dict[str, Any], dict[str, Any], bytes]:
    """Header, payload and signature of a compact JWS, parsed strictly but NOT verified."""
    if not isinstance(token, str) or len(token) > MAX_TOKEN_BYTES:
        raise JoseError("malformed", "token missing or too large")
    parts = token.split(".")
    if len(parts) != 3:
        raise JoseError("malformed", "a compact JWS has three segments")
    try:
        header = parse_json_object(b64u_decode(parts[0]))
        payload = parse_json_object(b64u_decode(parts[1]))
        signature = b64u_decode(parts[2])
    except Base64Error as exc:
        raise JoseError("malformed", "segment is not base64url") from exc
    return header, payload, signature


def algs_for(key: Any) -> frozenset[str]:
    """The algorithms a key may verify: key type decides, never the token."""
    if isinstance(key, PublicKey):
        key = key.crypto
    if isinstance(key, ed25519.Ed25519PublicKey):
        return ED25519_ALGS
    if isinstance(key, ec.EllipticCurvePublicKey) and isinstance(key.curve, ec.SECP256R1):
        return EC_ALGS
    if isinstance(key, rsa.RSAPublicKey) and key.key_size >= 2048:
        return RSA_ALGS
    return frozenset()


def sign(
    claims: Mapping[str, Any],
    key: PrivateKey,
    *,
    typ: str | None,
    kid: str | None = None,
    headers: Mapping[str, Any] | None = None,
    alg: str | None = None,
) -> str:
    """Sign `claims` as a compact JWS with `key` (EdDSA or ES256)."""
    alg = alg or key.alg
    if alg not in algs_for(key.public):
        raise JoseError("bad_alg", f"{alg} does not fit a {key.alg} key")
    hdr: dict[str, Any] = dict(headers or {})
    if typ is not None:
        hdr["typ"] = typ
    if kid is not None:
        hdr["kid"] = kid
    payload = json.dumps(claims, separators=(",", ":"), ensure_ascii=False).encode("utf-8")
    return _jws.encode(payload, key.crypto, algorithm=alg, headers=hdr, sort_headers=False)


def verify(
    token: str,
    key: Any,
    *,
    algorithms: Collection[str],
    typ: str | Iterable[str] | None,
    audience: str | None = None,
    issuer: str | None = None,
    require: Iterable[str] = ("exp",),
    leeway: float = 60.0,
    now: Callable[[], float] = time.time,
    max_age: float | None = None,
) -> tuple[dict[str, Any], dict[str, Any]]:
    """Verify a compact JWS and its time/audience/issuer claims. Returns (header, claims).

    Raises `JoseError` with reason: malformed, bad_typ, bad_alg, bad_signature, missing_claim,
    expired, not_yet_valid, too_old, bad_audience, bad_issuer.
    """
    header, claims, _ = split(token)
    alg = header.get("alg")
    allowed = frozenset(algorithms) - NEVER
    if not isinstance(alg, str) or alg not in allowed or alg not in algs_for(key):
        raise JoseError("bad_alg", f"algorithm {alg!r} is not accepted here")
    if typ is not None:
        expected = {typ} if isinstance(typ, str) else set(typ)
        got = header.get("typ")
        if not isinstance(got, str) or got.lower() not in {t.lower() for t in expected}:
            raise JoseError("bad_typ", f"typ {got!r} is not {sorted(expected)}")
    crypto_key = key.crypto if isinstance(key, PublicKey) else key
    try:
        _jws.decode_complete(token, crypto_key, algorithms=[alg])
    except jwt.InvalidSignatureError as exc:
        raise JoseError("bad_signature", "signature does not verify") from exc
    except jwt.PyJWTError as exc:
        raise JoseError("malformed", f"token rejected: {exc}") from exc
    check_claims(claims, audience=audience, issuer=issuer, require=require, leeway=leeway,
                 now=now(), max_age=max_age)
    return header, claims


def check_claims(
    claims: Mapping[str, Any],
    *,
    audience: str | None,
    issuer: str | None,
    require: Iterable[str],
    leeway: float,
    now: float,
    max_age: float | None = None,
) -> None:
    for name in require:
        if name not in claims:
            raise JoseError("missing_claim", f"claim {name} is required")
    for name in ("exp", "nbf", "iat"):
        if name in claims and (not isinstance(claims[name], int | float) or isinstance(claims[name], bool)):
            raise JoseError("malformed", f"claim {name} must be a number")
    if "exp" in claims and now > claims["exp"] + leeway:
        raise JoseError("expired", "token has expired")
    if "nbf" in claims and now + leeway < claims["nbf"]:
        raise JoseError("not_yet_valid", "token is not yet valid")
    if "iat" in claims and now + leeway < claims["iat"]:
        raise JoseError("not_yet_valid", "token is issued in the future")
    if max_age is not None:
        if "iat" not in claims:
            raise JoseError("missing_claim", "claim iat is required")
        if now - claims["iat"] > max_age + leeway:
            raise JoseError("too_old", "token is too old")
    if audience is not None:
        aud = claims.get("aud")
        auds = [aud] if isinstance(aud, str) else aud if isinstance(aud, list) else None
        if not auds or audience not in auds:
            raise JoseError("bad_audience", "token is not for this audience")
    if issuer is not None and claims.get("iss") != issuer:
        raise JoseError("bad_issuer", "token is from another issuer")
