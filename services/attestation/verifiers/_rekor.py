"""Rekor transparency-log evidence in a Sigstore bundle, checked offline.

* The Signed Entry Timestamp (SET, `inclusionPromise`): the log's signature over the canonical
  JSON `{"body","integratedTime","logID","logIndex"}`. It is what makes `integratedTime`
  trustworthy, so it is required.
* The inclusion proof (RFC 6962 hashing) of the entry body up to `rootHash`, and the signed
  checkpoint (a signed note) that commits the log to that root and tree size.
* The entry body (`canonicalizedBody`) must describe this bundle: same signature, same signing
  certificate, same payload or artifact digest; otherwise a valid log entry for something else
  could vouch for an unlogged signature.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric import ec

from shared.merkle import ProofError, leaf_hash
from shared.merkle import verify_inclusion as verify_merkle_inclusion

from . import _x509
from ._codec import b64decode, json_object
from ._sigstore_root import LogKey
from .base import AppraisalError, Reason

_EM_DASH = "\u2014"


@dataclass(frozen=True, slots=True)
class InclusionProof:
    log_index: int
    root_hash: bytes
    tree_size: int
    hashes: tuple[bytes, ...]
    checkpoint: str


@dataclass(frozen=True, slots=True)
class TlogEntry:
    log_index: int
    log_id: bytes
    kind: str
    version: str
    integrated_time: int
    body_b64: str  # kept as text: the SET signs this exact string
    body: bytes
    set: bytes | None
    proof: InclusionProof | None


def _invalid(message: str) -> AppraisalError:
    return AppraisalError(Reason.TLOG_INVALID, message)


def _ecdsa_valid(log: LogKey, signature: bytes, data: bytes) -> bool:
    try:
        log.key.verify(signature, data, ec.ECDSA(log.hash()))
    except InvalidSignature:
        return False
    return True


def verify_set(entry: TlogEntry, log: LogKey) -> None:
    if entry.set is None:
        raise _invalid("the log entry has no signed entry timestamp (inclusionPromise)")
    payload = json.dumps(
        {
            "body": entry.body_b64,
            "integratedTime": entry.integrated_time,
            "logID": entry.log_id.hex(),
            "logIndex": entry.log_index,
        },
        sort_keys=True,
        separators=(",", ":"),
    ).encode("ascii")
    if not _ecdsa_valid(log, entry.set, payload):
        raise _invalid("the signed entry timestamp does not verify")


def verify_inclusion(entry: TlogEntry, log: LogKey) -> None:
    proof = entry.proof
    if proof is None:
        raise _invalid("the log entry has no inclusion proof")
    try:
        verify_merkle_inclusion(
            leaf_hash(entry.body), proof.log_index, proof.tree_size, list(proof.hashes), proof.root_hash
        )
    except ProofError as exc:
        raise _invalid(f"the inclusion proof does not reproduce the root hash ({exc.reason})") from exc
    size, root = _verify_checkpoint(proof.checkpoint, log)
    if size != proof.tree_size or not hmac.compare_digest(root, proof.root_hash):
        raise _invalid("the checkpoint is for another tree")


def _verify_checkpoint(note: str, log: LogKey) -> tuple[int, bytes]:
    """A signed note: text, blank line, `— <name> <base64(keyhint[4] || signature)>` lines."""
    if len(note) > 8192 or "\n\n" not in note:
        raise _invalid("the checkpoint is not a signed note")
    text, _, sig_block = note.rpartition("\n\n")
    text += "\n"
    lines = text.split("\n")
    if len(lines) < 4:
        raise _invalid("the checkpoint lacks origin, size and root")
    origin, size_text, root_text = lines[0], lines[1], lines[2]
    if not size_text.isdigit() or (size_text.startswith("0") and size_text != "0"):
        raise _invalid("the checkpoint tree size is not a decimal number")
    try:
        root = base64.b64decode(root_text, validate=True)
    except ValueError as exc:
        raise _invalid("the checkpoint root is not base64") from exc
    # Rekor's note names the log by host ("rekor.sigstore.dev - <tree id>"), and its key hint is
    # the first four bytes of the log id.
    if not origin.startswith(log.host + " "):
        raise _invalid("the checkpoint origin is not this log")
    verified = False
    for line in sig_block.split("\n"):
        if not line:
            continue
        parts = line.split(" ")
        if len(parts) != 3 or parts[0] != _EM_DASH:
            raise _invalid("malformed checkpoint signature line")
        try:
            blob = base64.b64decode(parts[2], validate=True)
        except ValueError as exc:
            raise _invalid("checkpoint signature is not base64") from exc
        if parts[1] != log.host or blob[:4] != log.key_id[:4]:
            continue  # another party's cosignature: not ours to judge
        if not _ecdsa_valid(log, blob[4:], text.encode("utf-8")):
            raise _invalid("the checkpoint signature does not verify")
        verified = True
    if not verified:
        raise _invalid("the checkpoint is not signed by the log")
    return int(size_text), root


# -- entry body ------------------------------------------------------------------------------


def _mismatch(message: str) -> AppraisalError:
    return AppraisalError(Reason.BODY_MISMATCH, message)


def _cert_from_b64_pem(value: Any, what: str) -> x509.Certificate:
    return _x509.load_der_or_pem(b64decode(value, what), what)


def _same_cert(value: Any, leaf: x509.Certificate, what: str) -> bool:
    return _x509.der(_cert_from_b64_pem(value, what)) == _x509.der(leaf)


def parse_body(entry: TlogEntry) -> Mapping[str, Any]:
    body = json_object(entry.body, "Rekor entry body")
    if body.get("kind") != entry.kind or body.get("apiVersion") != entry.version:
        raise _mismatch("the entry body's kind/version differ from the bundle's")
    spec = body.get("spec")
    if not isinstance(spec, Mapping):
        raise _mismatch("the entry body has no spec")
    return spec


def match_dsse(
    entry: TlogEntry, *, payload: bytes, payload_type: str, signature: bytes, leaf: x509.Certificate
) -> None:
    """The log entry (dsse/0.0.1 or intoto/0.0.2) records this envelope's signature and key."""
    spec = parse_body(entry)
    payload_hash = hashlib.sha256(payload).hexdigest()
    if (entry.kind, entry.version) == ("dsse", "0.0.1"):
        # NOTE: envelopeHash is not recomputed: it hashes Rekor's own serialisation of the
        # envelope, which the bundle does not preserve; payloadHash plus the signature and
        # verifier below pin the same content.
        _expect_hash(spec.get("payloadHash"), payload_hash, "payloadHash")
        sigs = spec.get("signatures")
        if not isinstance(sigs, list) or len(sigs) != 1 or not isinstance(sigs[0], Mapping):
            raise _mismatch("the entry must record exactly one signature")
        if b64decode(sigs[0].get("signature"), "logged signature") != signature:
            raise _mismatch("the logged signature is not the envelope's")
        if not _same_cert(sigs[0].get("verifier"), leaf, "logged verifier"):
            raise _mismatch("the logged verifier is not the signing certificate")
        return
    if (entry.kind, entry.version) == ("intoto", "0.0.2"):
        content = spec.get("content")
        if not isinstance(content, Mapping):
            raise _mismatch("the intoto entry has no content")
        _expect_hash(content.get("payloadHash"), payload_hash, "payloadHash")
        envelope = content.get("envelope")
        if not isinstance(envelope, Mapping) or envelope.get("payloadType") != payload_type:
            raise _mismatch("the logged payloadType differs")
        sigs = envelope.get("signatures")
        if not isinstance(sigs, list) or len(sigs) != 1 or not isinstance(sigs[0], Mapping):
            raise _mismatch("the entry must record exactly one signature")
        # intoto/0.0.2 stores the signature base64-encoded twice.
        logged = b64decode(
            b64decode(sigs[0].get("sig"), "logged signature").decode("ascii", "replace"), "logged signature"
        )
        if logged != signature:
            raise _mismatch("the logged signature is not the envelope's")
        if not _same_cert(sigs[0].get("publicKey"), leaf, "logged public key"):
            raise _mismatch("the logged public key is not the signing certificate")
        return
    raise AppraisalError(Reason.UNSUPPORTED, f"Rekor entry kind {entry.kind}/{entry.version} for DSSE")


def match_hashedrekord(
    entry: TlogEntry, *, digest_hex: str, signature: bytes, leaf: x509.Certificate
) -> None:
    """The log entry (hashedrekord/0.0.1) records this artifact digest, signature and key."""
    if (entry.kind, entry.version) != ("hashedrekord", "0.0.1"):
        raise AppraisalError(Reason.UNSUPPORTED, f"Rekor entry kind {entry.kind}/{entry.version}")
    spec = parse_body(entry)
    data = spec.get("data")
    _expect_hash(data.get("hash") if isinstance(data, Mapping) else None, digest_hex, "data.hash")
    sig = spec.get("signature")
    if not isinstance(sig, Mapping):
        raise _mismatch("the entry has no signature")
    if b64decode(sig.get("content"), "logged signature") != signature:
        raise _mismatch("the logged signature is not the bundle's")
    key = sig.get("publicKey")
    if not isinstance(key, Mapping) or not _same_cert(key.get("content"), leaf, "logged public key"):
        raise _mismatch("the logged public key is not the signing certificate")


def _expect_hash(obj: Any, expected_hex: str, what: str) -> None:
    if (
        not isinstance(obj, Mapping)
        or obj.get("algorithm") != "sha256"
        or not isinstance(obj.get("value"), str)
        or not hmac.compare_digest(obj["value"].encode("ascii", "replace"), expected_hex.encode("ascii"))
    ):
        raise _mismatch(f"the logged {what} is not this content's")
