"""Entity Attestation Tokens (RFC 9711) in the Arm PSA profile (`eat`).

Evidence: a COSE_Sign1 PSA attestation token (tagged or untagged CBOR), or the same bytes as hex
or base64 text. Two claim layouts are read:

* `http://arm.com/psa/2.0.0` and RFC 9783's `tag:psacertified.org,2023:psa#tfm`: EAT claim keys
  (nonce 10, instance id 256, profile 265, PSA claims 2394..2400);
* the legacy `PSA_IOT_PROFILE_1`: private claim keys -75000..-75010.

Checks: profile accepted by the tenant (`eat_profiles`); ES256/ES384 signature by a trusted
Initial Attestation Key (`eat_keys`, public JWKs). A JWK with a `kid` applies only to the device
whose instance id (lower-case hex) it names; a JWK without `kid` applies to any device. Then the
security lifecycle must be "secured" (debug lifecycles only with `debug_allowed`), the nonce must
equal the binding digest, and every software component measurement must be allowlisted
(`psa_measurements`).

PSA tokens carry no time claims: they never expire by time (`expires_at` is None), and their
freshness comes from the nonce alone.
"""

from __future__ import annotations

import hmac
from collections.abc import Mapping
from datetime import datetime
from typing import Any

from . import _cose, _jwk
from ._codec import cbor_decode, check_size, is_array, is_int, is_map, is_uint, malformed, unarmour
from .base import (
    AppraisalError,
    AppraisalResult,
    Binding,
    Reason,
    ReferenceValues,
    refuse_unreadable,
    require_aware,
)

KIND = "eat"

# Claim names -> (EAT/PSA 2.0 key, legacy PSA_IOT_PROFILE_1 key)
_KEYS: dict[str, tuple[int, int]] = {
    "profile": (265, -75000),
    "client_id": (2394, -75001),
    "security_lifecycle": (2395, -75002),
    "implementation_id": (2396, -75003),
    "boot_seed": (2397, -75004),
    "certification_reference": (2398, -75005),
    "software_components": (2399, -75006),
    "nonce": (10, -75008),
    "instance_id": (256, -75009),
    "verification_service": (2400, -75010),
}
LEGACY_PROFILE = "PSA_IOT_PROFILE_1"
_LEGACY_NO_SW_MEASUREMENTS = -75007  # legacy only: "this device reports no measurements"

_LIFECYCLE_SECURED = 0x3000
_LIFECYCLE_DEBUG = frozenset({0x4000, 0x5000})  # non-PSA-RoT debug, recoverable PSA-RoT debug
_LIFECYCLE_NAMES = {
    0x0000: "unknown",
    0x1000: "assembly_and_test",
    0x2000: "psa_rot_provisioning",
    0x3000: "secured",
    0x4000: "non_psa_rot_debug",
    0x5000: "recoverable_psa_rot_debug",
    0x6000: "decommissioned",
}
# Software component map keys (PSA token spec / RFC 9783).
_SW_TYPE, _SW_VALUE, _SW_VERSION, _SW_SIGNER, _SW_DESC = 1, 2, 4, 5, 6


class EatVerifier:
    kind = KIND

    @refuse_unreadable
    def appraise(
        self,
        evidence: bytes,
        *,
        reference: ReferenceValues,
        binding: Binding | None,
        as_of: datetime,
    ) -> AppraisalResult:
        as_of = require_aware(as_of)
        raw = unarmour(
            check_size(evidence, "PSA token"), binary_first_bytes=_cose.BINARY_FIRST_BYTES, what="PSA token"
        )
        msg = _cose.decode_sign1(raw, "PSA token")
        _cose.check_alg(msg, (_cose.ES256, _cose.ES384), "PSA token")
        payload = cbor_decode(msg.payload, "PSA claims")
        if not is_map(payload):
            raise malformed("PSA claims are not a map")

        profile = _profile(payload)
        if profile not in reference.eat_profiles:
            raise AppraisalError(Reason.PROFILE_MISMATCH, f"EAT profile {profile!r} is not accepted")
        claims = _parse_claims(payload, legacy=profile == LEGACY_PROFILE)
        claims["profile"] = profile

        keys = _jwk.load_trusted_keys(reference.eat_keys, "eat_keys")
        tried = [
            k for k in _jwk.candidates(keys, claims["instance_id"], "PSA token") if _cose.key_fits(msg, k.key)
        ]
        if not tried:
            raise AppraisalError(Reason.UNTRUSTED_VERIFIER_KEY, "no trusted key fits the token's algorithm")
        if not any(_cose.signature_valid(msg, k.key) for k in tried):
            raise AppraisalError(Reason.BAD_SIGNATURE, "the token is not signed by a trusted key")

        lifecycle = claims["security_lifecycle"] & 0xFF00
        if lifecycle != _LIFECYCLE_SECURED and not (
            reference.debug_allowed and lifecycle in _LIFECYCLE_DEBUG
        ):
            raise AppraisalError(
                Reason.LIFECYCLE_NOT_SECURED,
                f"security lifecycle {claims['security_lifecycle_name']} is not 'secured'",
            )
        bound = False
        if binding is not None:
            if not hmac.compare_digest(bytes.fromhex(claims["nonce"]), binding.digest()):
                raise AppraisalError(Reason.BINDING_MISMATCH, "the token's nonce is not the binding digest")
            bound = True

        unchecked: tuple[str, ...] = ()
        if reference.psa_measurements is None:
            unchecked = ("psa_measurements",)
        else:
            for component in claims["software_components"]:
                if component["measurement_value"] not in reference.psa_measurements:
                    raise AppraisalError(
                        Reason.MEASUREMENT_NOT_ALLOWED,
                        f"software component {component.get('measurement_type', '?')} is not accepted",
                    )
        return AppraisalResult(
            kind=KIND,
            verified=not unchecked,
            bound=bound,
            claims=claims,
            expires_at=None,
            appraised_at=as_of,
            unchecked=unchecked,
        )


def _profile(payload: Mapping[Any, Any]) -> str:
    new, legacy = _KEYS["profile"]
    if new in payload and legacy in payload:
        raise malformed("the token names two profiles")
    profile = payload.get(new, payload.get(legacy))
    if not isinstance(profile, str):
        raise AppraisalError(Reason.PROFILE_MISMATCH, "the token has no EAT/PSA profile")
    return profile


def _get(payload: Mapping[Any, Any], name: str, legacy: bool) -> Any:
    return payload.get(_KEYS[name][1 if legacy else 0])


def _parse_claims(payload: Mapping[Any, Any], *, legacy: bool) -> dict[str, Any]:
    def need_bytes(name: str, sizes: tuple[int, ...]) -> bytes:
        value = _get(payload, name, legacy)
        if not isinstance(value, bytes) or len(value) not in sizes:
            raise malformed(f"PSA claim {name} must be {sizes} bytes")
        return value

    client_id = _get(payload, "client_id", legacy)
    lifecycle = _get(payload, "security_lifecycle", legacy)
    if not is_int(client_id):
        raise malformed("PSA claim client_id must be an integer")
    if not is_uint(lifecycle) or lifecycle > 0xFFFF:
        raise malformed("PSA claim security_lifecycle must be a 16-bit value")
    instance_id = need_bytes("instance_id", (33,))
    if instance_id[0] != 0x01:  # UEID type RAND
        raise malformed("PSA instance id must be a RAND UEID (first byte 0x01)")
    claims: dict[str, Any] = {
        "client_id": client_id,
        "security_lifecycle": lifecycle,
        "security_lifecycle_name": _LIFECYCLE_NAMES.get(lifecycle & 0xFF00, "invalid"),
        "implementation_id": need_bytes("implementation_id", (32,)).hex(),
        "instance_id": instance_id.hex(),
        "nonce": need_bytes("nonce", (32, 48, 64)).hex(),
    }
    seed = _get(payload, "boot_seed", legacy)
    if seed is not None:
        if not isinstance(seed, bytes) or not 8 <= len(seed) <= 32:
            raise malformed("PSA claim boot_seed must be 8..32 bytes")
        claims["boot_seed"] = seed.hex()
    for name in ("certification_reference", "verification_service"):
        value = _get(payload, name, legacy)
        if value is not None:
            if not isinstance(value, str):
                raise malformed(f"PSA claim {name} must be text")
            claims[name] = value
    components = _get(payload, "software_components", legacy)
    no_measurements = legacy and _LEGACY_NO_SW_MEASUREMENTS in payload
    if components is None:
        if not no_measurements:
            raise malformed("PSA token has no software components")
        components = []
    if not is_array(components) or (not components and not no_measurements):
        raise malformed("PSA software components must be a non-empty array")
    claims["software_components"] = [_component(c) for c in components]
    return claims


def _component(entry: Any) -> dict[str, Any]:
    if not is_map(entry):
        raise malformed("a software component is a map")
    value, signer = entry.get(_SW_VALUE), entry.get(_SW_SIGNER)
    if not isinstance(value, bytes) or not value:
        raise malformed("a software component needs a measurement value")
    if not isinstance(signer, bytes) or not signer:
        raise malformed("a software component needs a signer id")
    out: dict[str, Any] = {"measurement_value": value.hex(), "signer_id": signer.hex()}
    for key, name in (
        (_SW_TYPE, "measurement_type"),
        (_SW_VERSION, "version"),
        (_SW_DESC, "measurement_desc"),
    ):
        item = entry.get(key)
        if item is not None:
            if not isinstance(item, str):
                raise malformed(f"software component {name} must be text")
            out[name] = item
    return out
