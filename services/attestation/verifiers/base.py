"""The one interface every evidence verifier implements, and the types it speaks.

A verifier appraises one piece of Evidence (RFC 9334) against the tenant's `ReferenceValues`,
checks that it is bound to the challenge (`Binding`), and either returns an `AppraisalResult` or
raises `AppraisalError` with a stable `reason` code. Verifiers never read the wall clock: every
certificate and freshness check uses the caller's explicit `as_of`, so a recorded sample can be
appraised as of the time it was made, and again as of today.

Binding layout (version 1), used by every format that can carry it:

    binding_digest = SHA-512( nonce || thumbprint_bytes )      -> 64 bytes

where `nonce` is the challenge nonce issued by `attestation.challenge` (16..64 bytes) and
`thumbprint_bytes` is the RFC 7638 SHA-256 thumbprint of the agent's public JWK, base64url-decoded
(always 32 bytes, so the concatenation splits one way only). Where it goes:

| kind        | nonce                              | key binding                                  |
|-------------|------------------------------------|----------------------------------------------|
| aws-nitro   | `nonce` == nonce                   | `user_data` == binding_digest                |
| amd-sev-snp | (inside the digest)                | REPORT_DATA (64 bytes) == binding_digest     |
| eat (PSA)   | (inside the digest)                | `eat_nonce` (claim 10 / -75008) == digest    |
| ear         | (inside the digest)                | `eat_nonce` == base64url(binding_digest)     |
| sigstore    | provenance is not per-challenge: never bound; `bound` is always false        |

Nitro carries the nonce in a field of its own, so a replayed document (old nonce) and a document
bound to another key are told apart (`nonce_mismatch` / `key_binding_mismatch`); the other formats
carry only the digest, so either failure is `binding_mismatch`.

Time semantics (what "expired" means per kind; `as_of` is the appraisal time):

| kind        | valid while                                                                 |
|-------------|-----------------------------------------------------------------------------|
| aws-nitro   | every certificate of the chain is valid at as_of, and timestamp + max age   |
| amd-sev-snp | VCEK, ASK and ARK are valid at as_of (the report itself has no timestamp)    |
| eat (PSA)   | no time claims: freshness comes from the nonce only                         |
| ear         | iat + max age (and `exp`, when present)                                      |
| sigstore    | the signing certificate was valid at the Rekor integratedTime, which the    |
|             | log signed; the bundle does not expire with time unless the tenant sets     |
|             | `max_provenance_age_s`                                                        |

Policy values a tenant did not configure are not silently passed: they are listed in
`AppraisalResult.unchecked`, and `verified` is true only when that list is empty. Consumers that
gate on a result call `result.require()`.
"""

from __future__ import annotations

import functools
import hashlib
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from typing import Any, Protocol, runtime_checkable

import msgspec
from cryptography.exceptions import UnsupportedAlgorithm

from shared.b64 import Base64Error, b64u_decode

BINDING_VERSION = 1
MIN_NONCE_BYTES = 16
MAX_NONCE_BYTES = 64


class Reason(StrEnum):
    """Stable reason codes. They cross the bus; never rename one."""

    # Reading the evidence
    MALFORMED = "malformed"  # not the format, or a field out of its allowed shape
    UNSUPPORTED = "unsupported"  # a valid but unsupported algorithm, version or key kind
    NOT_CONFIGURED = "not_configured"  # the verifier or reference values lack what it needs
    # Signatures and certificates
    BAD_SIGNATURE = "bad_signature"  # evidence signature invalid (or by no trusted key)
    CHAIN_UNTRUSTED = "chain_untrusted"  # no valid path to a pinned/trusted root
    CERT_EXPIRED = "cert_expired"
    CERT_NOT_YET_VALID = "cert_not_yet_valid"
    UNTRUSTED_VERIFIER_KEY = "untrusted_verifier_key"  # no trusted key configured/named
    # Binding to the challenge
    NONCE_MISMATCH = "nonce_mismatch"  # Nitro: not our nonce (wrong or replayed)
    KEY_BINDING_MISMATCH = "key_binding_mismatch"  # Nitro: our nonce, another agent key
    BINDING_MISMATCH = "binding_mismatch"  # SNP/EAT/EAR: binding digest differs
    # Time
    STALE = "stale"  # older than the allowed age
    FUTURE_TIMESTAMP = "future_timestamp"  # made after the appraisal time
    EXPIRED = "expired"  # past its own `exp`
    # TEE policy
    DEBUG_ENCLAVE = "debug_enclave"  # Nitro PCR0..2 all zero
    POLICY_DEBUG = "policy_debug"  # SNP guest policy allows debugging
    LIFECYCLE_NOT_SECURED = "lifecycle_not_secured"  # PSA lifecycle is not "secured"
    PCR_NOT_ALLOWED = "pcr_not_allowed"
    MEASUREMENT_NOT_ALLOWED = "measurement_not_allowed"
    TCB_TOO_LOW = "tcb_too_low"
    TCB_MISMATCH = "tcb_mismatch"  # VCEK TCB differs from the report's REPORTED_TCB
    CHIP_ID_MISMATCH = "chip_id_mismatch"  # VCEK hwID differs from the report's CHIP_ID
    VMPL_MISMATCH = "vmpl_mismatch"
    # Attestation results
    PROFILE_MISMATCH = "profile_mismatch"
    STATUS_NOT_AFFIRMING = "status_not_affirming"
    # Supply chain
    IDENTITY_MISMATCH = "identity_mismatch"  # signer issuer/SAN not accepted
    DIGEST_MISMATCH = "digest_mismatch"  # no expected artifact digest is signed
    BUILDER_UNTRUSTED = "builder_untrusted"
    SOURCE_MISMATCH = "source_mismatch"
    TLOG_INVALID = "tlog_invalid"  # SET, inclusion proof or checkpoint fails
    BODY_MISMATCH = "body_mismatch"  # the log entry records something else
    SCT_INVALID = "sct_invalid"  # no valid SCT from a trusted CT log
    # Consumers (AppraisalResult.require)
    POLICY_INCOMPLETE = "policy_incomplete"  # some reference values were not configured
    UNBOUND = "unbound"  # appraised without a binding


class AppraisalError(Exception):
    """Evidence that must not be trusted. `reason` is a `Reason` code; the message is for logs."""

    def __init__(self, reason: Reason | str, message: str) -> None:
        super().__init__(message)
        self.reason = Reason(reason)  # ValueError on an unknown code: a programming error
        self.message = message

    def __str__(self) -> str:
        return f"{self.reason}: {self.message}"


# -- reference values ------------------------------------------------------------------------

_HEX = re.compile(r"^(?:[0-9a-f]{2})+$")
_DIGEST = re.compile(r"^(sha256|sha384|sha512):((?:[0-9a-f]{2})+)$")
_DIGEST_HEX_LEN = {"sha256": 64, "sha384": 96, "sha512": 128}

DEFAULT_PSA_PROFILES: tuple[str, ...] = (
    "http://arm.com/psa/2.0.0",
    "tag:psacertified.org,2023:psa#tfm",
    "PSA_IOT_PROFILE_1",
)
DEFAULT_EAR_PROFILES: tuple[str, ...] = (
    "tag:github.com,2023:veraison/ear",
    # The older Veraison layout (status and trust vector at top level, no submods).
    "tag:github.com/veraison/ar4si,2022-10-17",
)


def _check_hex(values: Any, what: str) -> None:
    for value in values:
        if not _HEX.match(value):
            raise ValueError(f"{what}: {value!r} is not lower-case hex")


class SnpTcb(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """Minimum SEV-SNP TCB security patch levels. `fmc` exists on Turin only."""

    bl: int = 0
    tee: int = 0
    snp: int = 0
    ucode: int = 0
    fmc: int = 0

    def __post_init__(self) -> None:
        for name in ("bl", "tee", "snp", "ucode", "fmc"):
            if not 0 <= getattr(self, name) <= 255:
                raise ValueError(f"snp tcb {name} must be 0..255")


class SigstoreIdentity(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """An accepted signer: OIDC issuer and certificate SAN (URI or e-mail), both exact."""

    issuer: str
    subject: str


class SlsaSource(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """An accepted source repository (e.g. `https://github.com/org/repo`) and, optionally, ref."""

    repository: str
    ref: str | None = None


class ReferenceValues(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """What a tenant accepts. JSON-loadable with `ReferenceValues.from_json`.

    Hex values are lower case. Digests are `alg:hex` with alg sha256, sha384 or sha512.
    A field left `None` means "not configured": the check is not run and is reported in
    `AppraisalResult.unchecked`, which makes the result unverified.
    """

    # AWS Nitro: PCR index -> accepted values. Every listed index must match one of its values.
    nitro_pcrs: dict[int, tuple[str, ...]] | None = None
    # AMD SEV-SNP
    snp_measurements: tuple[str, ...] | None = None
    snp_min_tcb: SnpTcb | None = None
    snp_vmpl: int | None = None
    # Debug enclaves / debug SNP guests / non-secured PSA lifecycles are refused unless true.
    debug_allowed: bool = False
    # EAT (PSA): trusted Initial Attestation Keys as public JWKs; accepted profiles; accepted
    # software component measurements (hex).
    eat_keys: tuple[dict[str, Any], ...] = ()
    eat_profiles: tuple[str, ...] = DEFAULT_PSA_PROFILES
    psa_measurements: tuple[str, ...] | None = None
    # EAR: trusted verifier keys (public JWKs), accepted profiles, submods that must affirm
    # (empty: every submod present must affirm).
    ear_keys: tuple[dict[str, Any], ...] = ()
    ear_profiles: tuple[str, ...] = DEFAULT_EAR_PROFILES
    ear_required_submods: tuple[str, ...] = ()
    # Sigstore / SLSA
    sigstore_identities: tuple[SigstoreIdentity, ...] | None = None
    artifact_digests: dict[str, tuple[str, ...]] | None = None  # {"model": ("sha256:…",), …}
    slsa_builder_ids: tuple[str, ...] | None = None
    slsa_sources: tuple[SlsaSource, ...] | None = None
    # Time
    max_evidence_age_s: int = 300
    max_provenance_age_s: int | None = None
    clock_skew_s: int = 60

    def __post_init__(self) -> None:
        if self.nitro_pcrs is not None:
            for index, values in self.nitro_pcrs.items():
                if not 0 <= index <= 31:
                    raise ValueError("nitro PCR index must be 0..31")
                _check_hex(values, f"nitro_pcrs[{index}]")
        if self.snp_measurements is not None:
            _check_hex(self.snp_measurements, "snp_measurements")
        if self.psa_measurements is not None:
            _check_hex(self.psa_measurements, "psa_measurements")
        if self.snp_vmpl is not None and not 0 <= self.snp_vmpl <= 3:
            raise ValueError("snp_vmpl must be 0..3")
        if self.artifact_digests is not None:
            for name, digests in self.artifact_digests.items():
                for digest in digests:
                    m = _DIGEST.match(digest)
                    if not m or len(m.group(2)) != _DIGEST_HEX_LEN[m.group(1)]:
                        raise ValueError(f"artifact_digests[{name}]: {digest!r} is not alg:hex")
        if self.max_evidence_age_s <= 0 or self.clock_skew_s < 0:
            raise ValueError("max_evidence_age_s must be > 0 and clock_skew_s >= 0")
        if self.max_provenance_age_s is not None and self.max_provenance_age_s <= 0:
            raise ValueError("max_provenance_age_s must be > 0")

    @classmethod
    def from_json(cls, data: bytes | str) -> ReferenceValues:
        """Load from JSON. Raises `msgspec.ValidationError` / `msgspec.DecodeError` (ValueErrors)."""
        return msgspec.json.decode(data, type=cls)

    def to_json(self) -> bytes:
        return msgspec.json.encode(self)


# -- binding ---------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Binding:
    """What the evidence must be bound to: the challenge nonce and the agent key's thumbprint."""

    nonce: bytes
    key_thumbprint: str  # RFC 7638, base64url without padding

    def __post_init__(self) -> None:
        if not isinstance(self.nonce, bytes) or not MIN_NONCE_BYTES <= len(self.nonce) <= MAX_NONCE_BYTES:
            raise ValueError(f"nonce must be {MIN_NONCE_BYTES}..{MAX_NONCE_BYTES} bytes")
        try:
            raw = b64u_decode(self.key_thumbprint)
        except Base64Error as exc:
            raise ValueError("key_thumbprint is not base64url") from exc
        if len(raw) != 32:
            raise ValueError("key_thumbprint must be a SHA-256 thumbprint (32 bytes)")

    @property
    def thumbprint_bytes(self) -> bytes:
        return b64u_decode(self.key_thumbprint)

    def digest(self) -> bytes:
        """SHA-512(nonce || thumbprint_bytes): the 64 bytes every format binds (layout v1)."""
        return hashlib.sha512(self.nonce + self.thumbprint_bytes).digest()


# -- result ----------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class AppraisalResult:
    """The outcome of an appraisal that did not raise.

    `claims` holds JSON-ready values only (str, int, bool, lists, dicts; bytes as lower-case hex).
    `expires_at` is when this evidence stops being acceptable (None: it does not expire by time).
    """

    kind: str
    verified: bool
    bound: bool
    claims: dict[str, Any]
    expires_at: datetime | None
    appraised_at: datetime
    unchecked: tuple[str, ...] = field(default=())

    def require(self, *, bound: bool = True) -> AppraisalResult:
        """Raise unless every policy check ran (and, by default, the evidence is bound)."""
        if not self.verified:
            raise AppraisalError(
                Reason.POLICY_INCOMPLETE, f"no reference values for: {', '.join(self.unchecked)}"
            )
        if bound and not self.bound:
            raise AppraisalError(Reason.UNBOUND, "evidence was not checked against a binding")
        return self


@runtime_checkable
class Verifier(Protocol):
    """One evidence kind. Implementations raise `AppraisalError` and nothing else on bad input."""

    kind: str

    def appraise(
        self,
        evidence: bytes,
        *,
        reference: ReferenceValues,
        binding: Binding | None,
        as_of: datetime,
    ) -> AppraisalResult: ...


# -- helpers shared by the verifiers ---------------------------------------------------------

# What a gap in a parser could raise while reading hostile bytes.
_UNEXPECTED = (
    ValueError,
    TypeError,
    KeyError,
    IndexError,
    AttributeError,
    OverflowError,
    UnicodeError,
    RecursionError,
    UnsupportedAlgorithm,
)

_Appraise = Callable[..., AppraisalResult]


def refuse_unreadable(appraise: _Appraise) -> _Appraise:
    """Fail closed: an unexpected error while reading evidence is a refusal, never a crash.

    The verifiers raise `AppraisalError` themselves for everything they recognise; this net only
    catches a decoder gap, turns it into `malformed`, and chains the original for the logs.
    `as_of` is checked before the net, since a naive time is a caller bug, not bad evidence.
    """

    @functools.wraps(appraise)
    def wrapper(self: Any, evidence: bytes, *, as_of: datetime, **kwargs: Any) -> AppraisalResult:
        require_aware(as_of)
        try:
            return appraise(self, evidence, as_of=as_of, **kwargs)
        except AppraisalError:
            raise
        except _UNEXPECTED as exc:
            raise AppraisalError(Reason.MALFORMED, f"unreadable evidence ({type(exc).__name__})") from exc

    return wrapper


def require_aware(as_of: datetime) -> datetime:
    """`as_of` must carry a time zone: a naive time would silently mean the host's local time."""
    if not isinstance(as_of, datetime) or as_of.tzinfo is None or as_of.utcoffset() is None:
        raise ValueError("as_of must be a timezone-aware datetime")
    return as_of


def check_freshness(
    issued_at: datetime, *, as_of: datetime, max_age_s: int, skew_s: int, what: str
) -> datetime:
    """Refuse evidence from the future (beyond skew) or older than max age. Returns its end."""
    if issued_at > as_of + timedelta(seconds=skew_s):
        raise AppraisalError(Reason.FUTURE_TIMESTAMP, f"{what} is later than the appraisal time")
    ends = issued_at + timedelta(seconds=max_age_s)
    if as_of > ends + timedelta(seconds=skew_s):
        raise AppraisalError(Reason.STALE, f"{what} is older than {max_age_s} s")
    return ends


def utc_from_timestamp(seconds: float, what: str) -> datetime:
    """A POSIX time from evidence as an aware datetime; out-of-range values are malformed."""
    try:
        return datetime.fromtimestamp(seconds, UTC)
    except (OverflowError, OSError, ValueError) as exc:
        raise AppraisalError(Reason.MALFORMED, f"{what} is out of range") from exc


def earliest(*times: datetime | None) -> datetime | None:
    present = [t for t in times if t is not None]
    return min(present) if present else None


def hex_claims(values: Mapping[str, bytes]) -> dict[str, str]:
    return {k: v.hex() for k, v in values.items()}
