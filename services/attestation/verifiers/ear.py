"""EAT Attestation Results (draft-ietf-rats-ear) as signed JWTs (`ear`).

Evidence: the compact JWT. It is verified through `shared.jose` (PyJWT) with an explicit
algorithm allow-list (ES256; the key type decides, never the token) against the tenant's trusted
verifier keys (`ear_keys`). Then:

* `iat` is required: not in the future, not older than `max_evidence_age_s`; `exp` if present;
* `eat_profile` must be accepted (`ear_profiles`);
* every required submod must be `affirming`, and its trustworthiness vector must hold no
  warning or contraindicated claim (tiers: none -1..1, affirming 2..31, warning 32..95,
  contraindicated 96..127, and the mirrored negative ranges);
* `eat_nonce` must be base64url(binding digest).

Two layouts are read: the current one (`submods: {name: {ear.status, ear.trustworthiness-vector,
…}}`, profile `tag:github.com,2023:veraison/ear`) and Veraison's older one (status and vector at
top level, profile `tag:github.com/veraison/ar4si,2022-10-17`), which is read as one submod
named `legacy`.
"""

from __future__ import annotations

import hmac
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from typing import Any

from shared import jose
from shared.b64 import b64u_encode

from . import _jwk
from ._codec import check_size, is_int, malformed
from .base import (
    AppraisalError,
    AppraisalResult,
    Binding,
    Reason,
    ReferenceValues,
    refuse_unreadable,
    require_aware,
    utc_from_timestamp,
)

KIND = "ear"
LEGACY_PROFILE = "tag:github.com/veraison/ar4si,2022-10-17"
LEGACY_SUBMOD = "legacy"
_ALGORITHMS = ("ES256",)

TRUST_CLAIMS = (
    "instance-identity",
    "configuration",
    "executables",
    "file-system",
    "hardware",
    "runtime-opaque",
    "storage-opaque",
    "sourced-data",
)
_STATUS_NAMES = ("none", "affirming", "warning", "contraindicated")
_TIER_RANK = {name: rank for rank, name in enumerate(_STATUS_NAMES)}

_JOSE_REASONS = {
    "malformed": Reason.MALFORMED,
    "bad_typ": Reason.MALFORMED,
    "bad_alg": Reason.UNSUPPORTED,
    "bad_signature": Reason.BAD_SIGNATURE,
    "missing_claim": Reason.MALFORMED,
    "expired": Reason.EXPIRED,
    "not_yet_valid": Reason.FUTURE_TIMESTAMP,
    "too_old": Reason.STALE,
}


def tier(value: int) -> str:
    """AR4SI tier of a trustworthiness claim value (-128..127)."""
    magnitude = abs(value)
    if magnitude <= 1:
        return "none"
    if magnitude <= 31:
        return "affirming"
    if magnitude <= 95:
        return "warning"
    return "contraindicated"


class EarVerifier:
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
        try:
            token = check_size(evidence, "EAR").decode("ascii").strip()
        except UnicodeDecodeError as exc:
            raise malformed("an EAR JWT is ASCII text") from exc
        try:
            header, _, _ = jose.split(token)
        except jose.JoseError as exc:
            raise AppraisalError(_JOSE_REASONS.get(exc.reason, Reason.MALFORMED), str(exc)) from exc
        keys = _jwk.load_trusted_keys(reference.ear_keys, "ear_keys")
        claims = _verify(token, _jwk.candidates(keys, header.get("kid"), "EAR"), reference, as_of)

        profile = claims.get("eat_profile")
        if not isinstance(profile, str) or profile not in reference.ear_profiles:
            raise AppraisalError(Reason.PROFILE_MISMATCH, f"EAR profile {profile!r} is not accepted")
        submods = _submods(claims, legacy=profile == LEGACY_PROFILE)
        _require_affirming(submods, reference.ear_required_submods)
        bound = _check_binding(claims, binding)

        iat = utc_from_timestamp(claims["iat"], "iat")
        ends = iat + timedelta(seconds=reference.max_evidence_age_s)
        if "exp" in claims:
            ends = min(ends, _time(claims["exp"], default=ends))
        out: dict[str, Any] = {
            "eat_profile": profile,
            "iat": claims["iat"],
            "submods": submods,
        }
        for name in ("ear.verifier-id", "eat_nonce", "exp"):
            if name in claims:
                out[name] = claims[name]
        return AppraisalResult(
            kind=KIND,
            verified=True,
            bound=bound,
            claims=out,
            expires_at=ends,
            appraised_at=as_of,
        )


def _time(seconds: float, *, default: datetime) -> datetime:
    try:
        return datetime.fromtimestamp(seconds, UTC)
    except (OverflowError, OSError, ValueError):  # far beyond any datetime: no earlier bound
        return default


def _verify(
    token: str, keys: list[_jwk.TrustedKey], reference: ReferenceValues, as_of: datetime
) -> dict[str, Any]:
    unsupported = 0
    for trusted in keys:
        try:
            _, claims = jose.verify(
                token,
                trusted.key,
                algorithms=_ALGORITHMS,
                typ=None,  # EAR defines no JWS typ; the sample carries none
                require=("iat",),
                leeway=float(reference.clock_skew_s),
                now=as_of.timestamp,
                max_age=float(reference.max_evidence_age_s),
            )
        except jose.JoseError as exc:
            if exc.reason == "bad_signature":
                continue
            if exc.reason == "bad_alg":
                unsupported += 1
                continue
            raise AppraisalError(_JOSE_REASONS.get(exc.reason, Reason.MALFORMED), str(exc)) from exc
        return claims
    if unsupported == len(keys):
        raise AppraisalError(Reason.UNSUPPORTED, "no trusted key fits the token's algorithm")
    raise AppraisalError(Reason.BAD_SIGNATURE, "the EAR is not signed by a trusted verifier key")


def _submods(claims: Mapping[str, Any], *, legacy: bool) -> dict[str, dict[str, Any]]:
    if legacy:
        if "submods" in claims:
            raise malformed("a legacy EAR carries no submods")
        return {LEGACY_SUBMOD: _appraisal(claims, LEGACY_SUBMOD)}
    submods = claims.get("submods")
    if not isinstance(submods, dict) or not submods:
        raise malformed("EAR submods must be a non-empty object")
    return {str(name): _appraisal(value, str(name)) for name, value in submods.items()}


def _appraisal(obj: Any, name: str) -> dict[str, Any]:
    if not isinstance(obj, Mapping):
        raise malformed(f"EAR submod {name} is not an object")
    status = obj.get("ear.status")
    if is_int(status):
        status = tier(status)
    if status not in _TIER_RANK:
        raise malformed(f"EAR submod {name} has no valid ear.status")
    vector = obj.get("ear.trustworthiness-vector", {})
    if not isinstance(vector, Mapping):
        raise malformed(f"EAR submod {name}: trustworthiness vector is not an object")
    tiers: dict[str, str] = {}
    for claim, value in vector.items():
        if claim not in TRUST_CLAIMS:
            raise malformed(f"EAR submod {name}: unknown trustworthiness claim {claim!r}")
        if not is_int(value) or not -128 <= value <= 127:
            raise malformed(f"EAR submod {name}: {claim} must be an integer -128..127")
        tiers[claim] = tier(value)
    out: dict[str, Any] = {
        "status": status,
        "trustworthiness_vector": dict(vector),
        "tiers": tiers,
    }
    policy = obj.get("ear.appraisal-policy-id")
    if isinstance(policy, str):
        out["appraisal_policy_id"] = policy
    return out


def _require_affirming(submods: dict[str, dict[str, Any]], required: tuple[str, ...]) -> None:
    names = required or tuple(submods)
    for name in names:
        submod = submods.get(name)
        if submod is None:
            raise AppraisalError(Reason.STATUS_NOT_AFFIRMING, f"required submod {name} is missing")
        if submod["status"] != "affirming":
            raise AppraisalError(Reason.STATUS_NOT_AFFIRMING, f"submod {name} is {submod['status']}")
        worst = max((_TIER_RANK[t] for t in submod["tiers"].values()), default=0)
        # A status that claims more than its own vector supports is not believed.
        if worst > _TIER_RANK["affirming"]:
            raise AppraisalError(
                Reason.STATUS_NOT_AFFIRMING, f"submod {name} has a {_STATUS_NAMES[worst]} claim"
            )


def _check_binding(claims: Mapping[str, Any], binding: Binding | None) -> bool:
    if binding is None:
        return False
    expected = b64u_encode(binding.digest())
    nonce = claims.get("eat_nonce")
    nonces = nonce if isinstance(nonce, list) else [nonce]
    if not any(
        isinstance(n, str) and hmac.compare_digest(n.encode("utf-8"), expected.encode("ascii"))
        for n in nonces
    ):
        raise AppraisalError(Reason.BINDING_MISMATCH, "eat_nonce is not the binding digest")
    return True


__all__ = ["EarVerifier", "KIND", "tier"]
