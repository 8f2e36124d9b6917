"""AWS Nitro Enclaves attestation documents (`aws-nitro`).

Evidence: the COSE_Sign1 document as returned by the NSM (tagged or untagged CBOR), or the same
bytes as base64 or hex text. Checks, in order (aws-nitro-enclaves-nsm-api attestation_process.md):

1. COSE_Sign1 shape; protected header alg ES384 only; payload fields and types (no nulls).
2. Chain `[certificate, *reversed(cabundle)]`: `cabundle[0]` is the pinned AWS Nitro Enclaves
   Root-G1 (DER SHA-256 `641a0321…bb5b`), every certificate is valid at `as_of`, every signature
   is ECDSA-SHA384, and the RFC 5280 path validates to that root.
3. The COSE signature, with the leaf's P-384 key, over `["Signature1", protected, h'', payload]`.
4. `timestamp` (ms) is not in the future and not older than `max_evidence_age_s`.
5. Binding: `nonce` == challenge nonce, `user_data` == binding digest (see base.py).
6. Debug enclave (PCR0, 1 and 2 all zero) refused unless `debug_allowed`; PCR allowlist.

`public_key` is reported (as hex) but not used for binding: the agent key is bound through
`user_data`, which the enclave application fills with the binding digest.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Sequence
from datetime import datetime
from importlib import resources
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec

from . import _cose, _x509
from ._codec import cbor_decode, check_size, is_array, is_map, is_uint, malformed, unarmour
from .base import (
    AppraisalError,
    AppraisalResult,
    Binding,
    Reason,
    ReferenceValues,
    check_freshness,
    refuse_unreadable,
    require_aware,
    utc_from_timestamp,
)

KIND = "aws-nitro"
AWS_ROOT_G1_SHA256 = "641a0321a3e244efe456463195d606317ed7cdcc3c1756e09893f3c68f79bb5b"
_ROOT_FILE = "aws_nitro_enclaves_root_g1.pem"

_REQUIRED = ("module_id", "digest", "timestamp", "pcrs", "certificate", "cabundle")
_OPTIONAL = ("public_key", "user_data", "nonce")
_DEBUG_PCRS = (0, 1, 2)


def aws_root() -> x509.Certificate:
    """The shipped AWS Nitro Enclaves Root-G1, checked against its published fingerprint."""
    pem = resources.files(__package__).joinpath(_ROOT_FILE).read_bytes()
    root = x509.load_pem_x509_certificate(pem)
    if _x509.fingerprint(root) != AWS_ROOT_G1_SHA256:
        raise RuntimeError("the shipped AWS Nitro root does not match its pinned fingerprint")
    return root


class NitroVerifier:
    """Appraises Nitro documents. `roots` replaces the pinned AWS root (tests, other partitions)."""

    kind = KIND

    def __init__(self, roots: Sequence[x509.Certificate] | None = None) -> None:
        self._roots = list(roots) if roots is not None else [aws_root()]
        self._root_ders = {_x509.der(r) for r in self._roots}

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
            check_size(evidence, "Nitro document"),
            binary_first_bytes=_cose.BINARY_FIRST_BYTES,
            what="Nitro document",
        )
        msg = _cose.decode_sign1(raw, "Nitro document")
        _cose.check_alg(msg, (_cose.ES384,), "Nitro document")
        doc = _parse_payload(msg.payload)

        chain = self._check_chain(doc, as_of)
        _cose.verify_sign1(
            msg, _x509.ec_public_key(chain[0], ec.SECP384R1, "Nitro leaf"), (_cose.ES384,), "Nitro document"
        )

        issued = utc_from_timestamp(doc["timestamp"] / 1000, "timestamp")
        fresh_until = check_freshness(
            issued,
            as_of=as_of,
            max_age_s=reference.max_evidence_age_s,
            skew_s=reference.clock_skew_s,
            what="Nitro document timestamp",
        )
        bound = _check_binding(doc, binding)
        pcrs: dict[int, bytes] = doc["pcrs"]
        unchecked = _check_policy(pcrs, reference)

        return AppraisalResult(
            kind=KIND,
            verified=not unchecked,
            bound=bound,
            claims=_claims(doc, chain, issued),
            expires_at=min(fresh_until, _x509.earliest_not_after(chain)),
            appraised_at=as_of,
            unchecked=unchecked,
        )

    def _check_chain(self, doc: dict[str, Any], as_of: datetime) -> list[x509.Certificate]:
        cabundle: list[bytes] = doc["cabundle"]
        if cabundle[0] not in self._root_ders:
            raise AppraisalError(Reason.CHAIN_UNTRUSTED, "cabundle does not start with the pinned root")
        leaf = _x509.load_der(doc["certificate"], "Nitro certificate")
        intermediates = [_x509.load_der(c, "Nitro cabundle entry") for c in cabundle[1:]]
        root = _x509.load_der(cabundle[0], "Nitro root")
        supplied = [leaf, *reversed(intermediates), root]
        _x509.check_validity(supplied, as_of)
        _x509.require_ecdsa_sha384(supplied[:-1], "Nitro chain")
        path = _x509.verify_path(leaf, intermediates, self._roots, as_of, what="Nitro chain")
        # The validated path must be the supplied chain, not some other route through the store.
        if [_x509.der(c) for c in path] != [_x509.der(c) for c in supplied]:
            raise AppraisalError(Reason.CHAIN_UNTRUSTED, "the validated path is not the supplied chain")
        return path


def _parse_payload(payload: bytes) -> dict[str, Any]:
    doc = cbor_decode(payload, "Nitro payload")
    if not is_map(doc):
        raise malformed("Nitro payload is not a map")
    unknown = set(doc) - set(_REQUIRED) - set(_OPTIONAL)
    if unknown:
        raise malformed(f"Nitro payload has unknown fields {sorted(map(str, unknown))}")
    for name in _REQUIRED:
        if name not in doc:
            raise malformed(f"Nitro payload lacks {name}")
    module_id, digest, timestamp = doc["module_id"], doc["digest"], doc["timestamp"]
    if not isinstance(module_id, str) or not module_id:
        raise malformed("module_id must be non-empty text")
    if digest != "SHA384":
        raise malformed("digest must be SHA384")
    if not is_uint(timestamp) or timestamp == 0 or timestamp >= 1 << 64:
        raise malformed("timestamp must be a positive 64-bit integer (ms)")
    pcrs = doc["pcrs"]
    if not is_map(pcrs) or not 1 <= len(pcrs) <= 32:
        raise malformed("pcrs must be a map of 1..32 entries")
    parsed_pcrs: dict[int, bytes] = {}
    for index, value in pcrs.items():
        if not is_uint(index) or index > 31:
            raise malformed("PCR index must be 0..31")
        # digest is SHA384, so every register is 48 bytes.
        if not isinstance(value, bytes) or len(value) != 48:
            raise malformed(f"PCR{index} must be 48 bytes")
        parsed_pcrs[index] = value
    certificate, cabundle = doc["certificate"], doc["cabundle"]
    if not isinstance(certificate, bytes) or not 1 <= len(certificate) <= 1024:
        raise malformed("certificate must be 1..1024 bytes")
    if not is_array(cabundle) or not cabundle:
        raise malformed("cabundle must be a non-empty array")
    for entry in cabundle:
        if not isinstance(entry, bytes) or not 1 <= len(entry) <= 1024:
            raise malformed("cabundle entries must be 1..1024 bytes")
    out: dict[str, Any] = {
        "module_id": module_id,
        "digest": digest,
        "timestamp": timestamp,
        "pcrs": parsed_pcrs,
        "certificate": certificate,
        "cabundle": list(cabundle),
    }
    for name in _OPTIONAL:
        if name in doc:
            value = doc[name]
            # The CDDL allows up to 1024 bytes (real documents carry 1024); null is not allowed.
            if not isinstance(value, bytes) or len(value) > 1024:
                raise malformed(f"{name} must be at most 1024 bytes")
            out[name] = value
    return out


def _check_binding(doc: dict[str, Any], binding: Binding | None) -> bool:
    if binding is None:
        return False
    nonce = doc.get("nonce")
    if nonce is None or not hmac.compare_digest(nonce, binding.nonce):
        raise AppraisalError(Reason.NONCE_MISMATCH, "the document's nonce is not the challenge")
    user_data = doc.get("user_data")
    if user_data is None or not hmac.compare_digest(user_data, binding.digest()):
        raise AppraisalError(Reason.KEY_BINDING_MISMATCH, "user_data does not bind the agent key")
    return True


def _check_policy(pcrs: dict[int, bytes], reference: ReferenceValues) -> tuple[str, ...]:
    # Debug-mode enclaves report PCR0..2 as zeros: their memory is observable from the parent.
    if not reference.debug_allowed and all(i in pcrs and not any(pcrs[i]) for i in _DEBUG_PCRS):
        raise AppraisalError(Reason.DEBUG_ENCLAVE, "PCR0, PCR1 and PCR2 are zero: a debug enclave")
    if reference.nitro_pcrs is None:
        return ("nitro_pcrs",)
    for index, accepted in reference.nitro_pcrs.items():
        value = pcrs.get(index)
        if value is None or value.hex() not in accepted:
            raise AppraisalError(Reason.PCR_NOT_ALLOWED, f"PCR{index} is not an accepted value")
    return ()


def _claims(doc: dict[str, Any], chain: list[x509.Certificate], issued: datetime) -> dict[str, Any]:
    claims: dict[str, Any] = {
        "module_id": doc["module_id"],
        "digest": doc["digest"],
        "timestamp": doc["timestamp"],
        "issued_at": issued.isoformat(),
        "pcrs": {str(i): v.hex() for i, v in sorted(doc["pcrs"].items())},
        "debug": all(not any(doc["pcrs"].get(i, b"\x01")) for i in _DEBUG_PCRS),
        "certificate_sha256": hashlib.sha256(doc["certificate"]).hexdigest(),
        "root_sha256": _x509.fingerprint(chain[-1]),
    }
    for name in _OPTIONAL:
        if name in doc:
            claims[name] = doc[name].hex()
    return claims
