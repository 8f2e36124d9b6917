"""Sigstore bundle (protobuf-specs `Bundle`, JSON form) parsing, versions 0.1 to 0.3.

Read strictly and only as far as verification needs: the signing certificate (v0.3
`certificate`, or the leaf of v0.1/v0.2 `x509CertificateChain`), exactly one Rekor entry, and
either a DSSE envelope with one signature or a message signature. Public-key bundles (`publicKey`
hint) are refused: the tenant trusts identities, which only Fulcio certificates carry.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from cryptography import x509

from . import _x509
from ._codec import b64decode, json_object, malformed
from ._rekor import InclusionProof, TlogEntry
from .base import AppraisalError, Reason

MEDIA_TYPES = {
    "application/vnd.dev.sigstore.bundle+json;version=0.1": "0.1",
    "application/vnd.dev.sigstore.bundle+json;version=0.2": "0.2",
    "application/vnd.dev.sigstore.bundle+json;version=0.3": "0.3",
    "application/vnd.dev.sigstore.bundle.v0.3+json": "0.3",
}
_MAX_INT64 = (1 << 63) - 1


@dataclass(frozen=True, slots=True)
class Dsse:
    payload: bytes
    payload_type: str
    signature: bytes

    def pae(self) -> bytes:
        """DSSE v1 pre-authentication encoding (the bytes that are signed)."""
        t = self.payload_type.encode("utf-8")
        return b"DSSEv1 %d %s %d %s" % (len(t), t, len(self.payload), self.payload)


@dataclass(frozen=True, slots=True)
class MessageSignature:
    digest_alg: str  # "sha256" | "sha384" | "sha512"
    digest: bytes
    signature: bytes


@dataclass(frozen=True, slots=True)
class Bundle:
    version: str
    certificates: tuple[x509.Certificate, ...]  # leaf first
    tlog: TlogEntry
    dsse: Dsse | None
    message: MessageSignature | None


def _obj(value: Any, what: str) -> Mapping[str, Any]:
    if not isinstance(value, Mapping):
        raise malformed(f"{what} must be an object")
    return value


def _int64(value: Any, what: str) -> int:
    # protobuf JSON writes int64 as a decimal string; accept that or a JSON integer.
    if isinstance(value, str) and value.isdigit() and len(value) <= 19:
        value = int(value)
    if not isinstance(value, int) or isinstance(value, bool) or not 0 <= value <= _MAX_INT64:
        raise malformed(f"{what} must be a non-negative int64")
    return value


def parse_bundle(data: bytes) -> Bundle:
    obj = json_object(data, "Sigstore bundle")
    media_type = obj.get("mediaType")
    version = MEDIA_TYPES.get(media_type) if isinstance(media_type, str) else None
    if version is None:
        raise AppraisalError(Reason.UNSUPPORTED, f"bundle mediaType {obj.get('mediaType')!r}")
    material = _obj(obj.get("verificationMaterial"), "verificationMaterial")
    certs = _certificates(material, version)
    entries = material.get("tlogEntries")
    if not isinstance(entries, list) or len(entries) != 1:
        raise malformed("the bundle must carry exactly one transparency log entry")
    tlog = _tlog_entry(_obj(entries[0], "tlogEntry"), version)
    has_dsse, has_message = "dsseEnvelope" in obj, "messageSignature" in obj
    if has_dsse == has_message:
        raise malformed("the bundle must carry either a DSSE envelope or a message signature")
    dsse = _dsse(_obj(obj["dsseEnvelope"], "dsseEnvelope")) if has_dsse else None
    message = _message(_obj(obj["messageSignature"], "messageSignature")) if has_message else None
    return Bundle(version, certs, tlog, dsse, message)


def _certificates(material: Mapping[str, Any], version: str) -> tuple[x509.Certificate, ...]:
    if "publicKey" in material:
        raise AppraisalError(Reason.UNSUPPORTED, "public-key bundles carry no verifiable identity")
    if "certificate" in material:
        if version != "0.3":
            raise malformed("a single certificate needs bundle v0.3")
        raw = _obj(material["certificate"], "certificate").get("rawBytes")
        return (_x509.load_der(b64decode(raw, "certificate"), "signing certificate"),)
    chain = _obj(material.get("x509CertificateChain"), "x509CertificateChain").get("certificates")
    if not isinstance(chain, list) or not chain or len(chain) > 4:
        raise malformed("x509CertificateChain must list 1..4 certificates")
    return tuple(
        _x509.load_der(b64decode(_obj(c, "certificate").get("rawBytes"), "certificate"), "certificate")
        for c in chain
    )


def _tlog_entry(entry: Mapping[str, Any], version: str) -> TlogEntry:
    kind_version = _obj(entry.get("kindVersion"), "kindVersion")
    kind, kversion = kind_version.get("kind"), kind_version.get("version")
    if not isinstance(kind, str) or not isinstance(kversion, str):
        raise malformed("kindVersion needs kind and version")
    body_b64 = entry.get("canonicalizedBody")
    body = b64decode(body_b64, "canonicalizedBody")
    promise = entry.get("inclusionPromise")
    set_sig = (
        b64decode(_obj(promise, "inclusionPromise").get("signedEntryTimestamp"), "signedEntryTimestamp")
        if promise is not None
        else None
    )
    proof = None
    if "inclusionProof" in entry:
        p = _obj(entry["inclusionProof"], "inclusionProof")
        hashes = p.get("hashes")
        if not isinstance(hashes, list):
            raise malformed("inclusionProof.hashes must be a list")
        checkpoint = _obj(p.get("checkpoint"), "checkpoint").get("envelope")
        if not isinstance(checkpoint, str):
            raise malformed("inclusionProof.checkpoint.envelope must be text")
        proof = InclusionProof(
            log_index=_int64(p.get("logIndex"), "inclusionProof.logIndex"),
            root_hash=b64decode(p.get("rootHash"), "rootHash"),
            tree_size=_int64(p.get("treeSize"), "treeSize"),
            hashes=tuple(b64decode(h, "proof hash") for h in hashes),
            checkpoint=checkpoint,
        )
    elif version != "0.1":
        raise malformed(f"bundle v{version} requires an inclusion proof")
    return TlogEntry(
        log_index=_int64(entry.get("logIndex"), "logIndex"),
        log_id=b64decode(_obj(entry.get("logId"), "logId").get("keyId"), "logId"),
        kind=kind,
        version=kversion,
        integrated_time=_int64(entry.get("integratedTime"), "integratedTime"),
        body_b64=body_b64,
        body=body,
        set=set_sig,
        proof=proof,
    )


def _dsse(env: Mapping[str, Any]) -> Dsse:
    payload_type = env.get("payloadType")
    if not isinstance(payload_type, str) or not payload_type:
        raise malformed("the DSSE envelope has no payloadType")
    sigs = env.get("signatures")
    if not isinstance(sigs, list) or len(sigs) != 1:
        raise malformed("the DSSE envelope must carry exactly one signature")
    return Dsse(
        payload=b64decode(env.get("payload"), "DSSE payload"),
        payload_type=payload_type,
        signature=b64decode(_obj(sigs[0], "DSSE signature").get("sig"), "DSSE signature"),
    )


_DIGEST_ALGS = {"SHA2_256": "sha256", "SHA2_384": "sha384", "SHA2_512": "sha512"}
_DIGEST_SIZES = {"sha256": 32, "sha384": 48, "sha512": 64}


def _message(msg: Mapping[str, Any]) -> MessageSignature:
    digest = _obj(msg.get("messageDigest"), "messageDigest")
    name = digest.get("algorithm")
    alg = _DIGEST_ALGS.get(name) if isinstance(name, str) else None
    if alg is None:
        raise AppraisalError(Reason.UNSUPPORTED, f"message digest {digest.get('algorithm')!r}")
    value = b64decode(digest.get("digest"), "messageDigest")
    if len(value) != _DIGEST_SIZES[alg]:
        raise malformed("the message digest has the wrong size")
    return MessageSignature(alg, value, b64decode(msg.get("signature"), "message signature"))
