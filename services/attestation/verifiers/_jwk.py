"""Trusted verification keys from reference values: public EC JWKs (P-256, P-384).

Private members are refused: a reference value that carries a private key is a configuration
mistake that must not go unnoticed.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from cryptography.hazmat.primitives.asymmetric import ec

from shared.b64 import Base64Error, b64u_decode

from .base import AppraisalError, Reason

_CURVES: dict[str, tuple[ec.EllipticCurve, int]] = {
    "P-256": (ec.SECP256R1(), 32),
    "P-384": (ec.SECP384R1(), 48),
}
_PRIVATE = frozenset({"d", "p", "q", "dp", "dq", "qi", "oth", "k"})


@dataclass(frozen=True, slots=True)
class TrustedKey:
    key: ec.EllipticCurvePublicKey
    kid: str | None


def load_trusted_keys(jwks: tuple[Mapping[str, Any], ...], what: str) -> list[TrustedKey]:
    """Load every JWK; a bad one is a configuration error (not_configured), not evidence."""
    keys = []
    for jwk in jwks:
        keys.append(_load(jwk, what))
    return keys


def _load(jwk: Mapping[str, Any], what: str) -> TrustedKey:
    def bad(message: str) -> AppraisalError:
        return AppraisalError(Reason.NOT_CONFIGURED, f"{what}: {message}")

    if not isinstance(jwk, Mapping):
        raise bad("a JWK is a JSON object")
    if _PRIVATE & set(jwk):
        raise bad("a trusted key must be public (it carries private members)")
    if jwk.get("kty") != "EC" or jwk.get("crv") not in _CURVES:
        raise bad(f"unsupported key {jwk.get('kty')!r}/{jwk.get('crv')!r} (EC P-256 or P-384)")
    curve, size = _CURVES[jwk["crv"]]
    try:
        x, y = b64u_decode(jwk.get("x", "")), b64u_decode(jwk.get("y", ""))
    except (Base64Error, TypeError) as exc:
        raise bad("x/y are not base64url") from exc
    if len(x) != size or len(y) != size:
        raise bad(f"{jwk['crv']} coordinates must be {size} bytes")
    try:
        key = ec.EllipticCurvePublicNumbers(
            int.from_bytes(x, "big"), int.from_bytes(y, "big"), curve
        ).public_key()
    except ValueError as exc:  # point not on the curve
        raise bad("point is not on the curve") from exc
    kid = jwk.get("kid")
    return TrustedKey(key, kid if isinstance(kid, str) else None)


def candidates(keys: list[TrustedKey], kid: Any, what: str) -> list[TrustedKey]:
    """Keys to try: those with a matching kid when the evidence names one, else all."""
    if not keys:
        raise AppraisalError(Reason.UNTRUSTED_VERIFIER_KEY, f"{what}: no trusted keys configured")
    if kid is None:
        return keys
    if isinstance(kid, bytes):
        try:
            kid = kid.decode("utf-8")
        except UnicodeDecodeError:
            kid = kid.hex()
    named = [k for k in keys if k.kid is not None and k.kid == kid]
    if named:
        return named
    # Keys configured without a kid still apply; a kid that names no trusted key does not.
    unnamed = [k for k in keys if k.kid is None]
    if not unnamed:
        raise AppraisalError(Reason.UNTRUSTED_VERIFIER_KEY, f"{what}: kid {kid!r} is not trusted")
    return unnamed
