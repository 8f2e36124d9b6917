"""A private Sigstore: Fulcio CA, Rekor log and CT log with test keys, and bundles they vouch for.

`SigstoreWorld.trusted_root()` is the trusted_root.json to give the verifier; `dsse_bundle` and
`message_bundle` return bundle dicts (so a test can tamper with any member before encoding with
`encode`). Certificates carry a real embedded SCT, log entries a real SET, inclusion proof and
signed checkpoint, so every verification step runs for real.
"""

from __future__ import annotations

import base64
import datetime as dt
import functools
import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID

from .common import LONG_AGO, make_cert

LOG_HOST = "rekor.test.dev"
GITHUB_ISSUER = "https://token.actions.githubusercontent.com"
WORKFLOW = "https://github.com/acme/model/.github/workflows/release.yml@refs/heads/main"
BUILDER = "https://github.com/actions/runner/github-hosted"
REPO = "https://github.com/acme/model"


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def _spki(key: ec.EllipticCurvePublicKey) -> bytes:
    return key.public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)


def _utf8(text: str) -> bytes:
    raw = text.encode("utf-8")
    assert len(raw) < 128
    return bytes([0x0C, len(raw)]) + raw


def _canonical(obj: Any) -> bytes:
    return json.dumps(obj, sort_keys=True, separators=(",", ":")).encode("utf-8")


@dataclass(frozen=True)
class SigstoreWorld:
    root_key: ec.EllipticCurvePrivateKey
    root: x509.Certificate
    inter_key: ec.EllipticCurvePrivateKey
    inter: x509.Certificate
    rekor_key: ec.EllipticCurvePrivateKey
    ct_key: ec.EllipticCurvePrivateKey

    @property
    def log_id(self) -> bytes:
        return hashlib.sha256(_spki(self.rekor_key.public_key())).digest()

    @property
    def ct_log_id(self) -> bytes:
        return hashlib.sha256(_spki(self.ct_key.public_key())).digest()

    def trusted_root(
        self,
        *,
        ca_valid: tuple[dt.datetime, dt.datetime | None] = (LONG_AGO, None),
        tlog_valid: tuple[dt.datetime, dt.datetime | None] = (LONG_AGO, None),
        with_ctlog: bool = True,
        ct_key: ec.EllipticCurvePrivateKey | None = None,
    ) -> dict[str, Any]:
        def window(w: tuple[dt.datetime, dt.datetime | None]) -> dict[str, str]:
            out = {"start": w[0].isoformat().replace("+00:00", "Z")}
            if w[1] is not None:
                out["end"] = w[1].isoformat().replace("+00:00", "Z")
            return out

        def log(
            key: ec.EllipticCurvePrivateKey, url: str, w: tuple[dt.datetime, dt.datetime | None]
        ) -> dict[str, Any]:
            der = _spki(key.public_key())
            return {
                "baseUrl": url,
                "hashAlgorithm": "SHA2_256",
                "publicKey": {
                    "rawBytes": b64(der),
                    "keyDetails": "PKIX_ECDSA_P256_SHA_256",
                    "validFor": window(w),
                },
                "logId": {"keyId": b64(hashlib.sha256(der).digest())},
            }

        def der(c: x509.Certificate) -> bytes:
            return c.public_bytes(serialization.Encoding.DER)

        return {
            "mediaType": "application/vnd.dev.sigstore.trustedroot+json;version=0.1",
            "tlogs": [log(self.rekor_key, f"https://{LOG_HOST}", tlog_valid)],
            "certificateAuthorities": [
                {
                    "subject": {"organization": "agentid tests", "commonName": "fulcio"},
                    "uri": "https://fulcio.test.dev",
                    "certChain": {
                        "certificates": [
                            {"rawBytes": b64(der(self.inter))},
                            {"rawBytes": b64(der(self.root))},
                        ]
                    },
                    "validFor": window(ca_valid),
                }
            ],
            "ctlogs": [log(ct_key or self.ct_key, "https://ctfe.test.dev", (LONG_AGO, None))]
            if with_ctlog
            else [],
        }


@functools.lru_cache(maxsize=1)
def sigstore_world() -> SigstoreWorld:
    root_key = ec.generate_private_key(ec.SECP384R1())
    root = make_cert("fulcio-root", root_key.public_key(), issuer=None, self_key=root_key, ca=True)
    inter_key = ec.generate_private_key(ec.SECP384R1())
    inter = make_cert(
        "fulcio-intermediate", inter_key.public_key(), issuer=(root, root_key), ca=True, path_length=0
    )
    return SigstoreWorld(
        root_key,
        root,
        inter_key,
        inter,
        ec.generate_private_key(ec.SECP256R1()),
        ec.generate_private_key(ec.SECP256R1()),
    )


# -- Fulcio ----------------------------------------------------------------------------------


def _octet(data: bytes) -> bytes:
    if len(data) < 128:
        return bytes([0x04, len(data)]) + data
    if len(data) < 256:
        return bytes([0x04, 0x81, len(data)]) + data
    return bytes([0x04, 0x82]) + len(data).to_bytes(2, "big") + data


def signing_certificate(
    world: SigstoreWorld,
    key: ec.EllipticCurvePrivateKey,
    *,
    signed_at: dt.datetime,
    san: str = WORKFLOW,
    issuer: str | None = GITHUB_ISSUER,
    source: tuple[str, str, str] | None = (REPO, "refs/heads/main", "ab" * 20),
    lifetime: dt.timedelta = dt.timedelta(minutes=10),
    eku: x509.ObjectIdentifier = ExtendedKeyUsageOID.CODE_SIGNING,
    sct: bool = True,
    ct_key: ec.EllipticCurvePrivateKey | None = None,
    claimed_ct_key: ec.EllipticCurvePrivateKey | None = None,
    signer: tuple[x509.Certificate, ec.EllipticCurvePrivateKey] | None = None,
) -> x509.Certificate:
    """A Fulcio-style leaf, with its SCT computed over the precertificate TBS."""
    exts: list[tuple[x509.ExtensionType, bool]] = [
        (x509.KeyUsage(True, False, False, False, False, False, False, False, False), True),
        (x509.ExtendedKeyUsage([eku]), False),
        (x509.SubjectAlternativeName([x509.UniformResourceIdentifier(san)]), True),
    ]
    if issuer is not None:
        exts.append(
            (x509.UnrecognizedExtension(x509.ObjectIdentifier("1.3.6.1.4.1.57264.1.8"), _utf8(issuer)), False)
        )
    if source is not None:
        for oid, value in zip(("12", "14", "13"), source, strict=True):
            exts.append(
                (
                    x509.UnrecognizedExtension(
                        x509.ObjectIdentifier(f"1.3.6.1.4.1.57264.1.{oid}"), _utf8(value)
                    ),
                    False,
                )
            )
    serial = x509.random_serial_number()
    common = dict(
        issuer=signer or (world.inter, world.inter_key),
        ca=False,
        not_before=signed_at - dt.timedelta(seconds=1),
        not_after=signed_at - dt.timedelta(seconds=1) + lifetime,
        serial=serial,
        subject=x509.Name([]),
    )
    precert = make_cert("", key.public_key(), extensions=exts, **common)  # type: ignore[arg-type]
    if not sct:
        return precert
    sct_ext = x509.UnrecognizedExtension(
        x509.ObjectIdentifier("1.3.6.1.4.1.11129.2.4.2"),
        _octet(
            _sct_list_body(
                world, precert.tbs_certificate_bytes, signed_at, ct_key or world.ct_key, claimed_ct_key
            )
        ),
    )
    return make_cert("", key.public_key(), extensions=[*exts, (sct_ext, False)], **common)  # type: ignore[arg-type]


def _sct_list_body(
    world: SigstoreWorld,
    tbs: bytes,
    at: dt.datetime,
    ct_key: ec.EllipticCurvePrivateKey,
    claimed: ec.EllipticCurvePrivateKey | None = None,
) -> bytes:
    """One SCT signed by `ct_key`, claiming to come from the log of `claimed` (default: same)."""
    ts = int(at.timestamp() * 1000).to_bytes(8, "big")
    issuer_key_hash = hashlib.sha256(_spki(world.inter_key.public_key())).digest()
    signed = (
        b"\x00\x00" + ts + b"\x00\x01" + issuer_key_hash + len(tbs).to_bytes(3, "big") + tbs + b"\x00\x00"
    )
    sig = ct_key.sign(signed, ec.ECDSA(hashes.SHA256()))
    log_id = hashlib.sha256(_spki((claimed or ct_key).public_key())).digest()
    sct = b"\x00" + log_id + ts + b"\x00\x00" + b"\x04\x03" + len(sig).to_bytes(2, "big") + sig
    item = len(sct).to_bytes(2, "big") + sct
    return len(item).to_bytes(2, "big") + item


# -- Rekor -----------------------------------------------------------------------------------


def _leaf(data: bytes) -> bytes:
    return hashlib.sha256(b"\x00" + data).digest()


def _mth(leaves: list[bytes]) -> bytes:
    if len(leaves) == 1:
        return _leaf(leaves[0])
    k = 1
    while k * 2 < len(leaves):
        k *= 2
    return hashlib.sha256(b"\x01" + _mth(leaves[:k]) + _mth(leaves[k:])).digest()


def _path(m: int, leaves: list[bytes]) -> list[bytes]:
    if len(leaves) == 1:
        return []
    k = 1
    while k * 2 < len(leaves):
        k *= 2
    if m < k:
        return _path(m, leaves[:k]) + [_mth(leaves[k:])]
    return _path(m - k, leaves[k:]) + [_mth(leaves[:k])]


def tlog_entry(
    world: SigstoreWorld,
    body: Mapping[str, Any],
    *,
    integrated_time: dt.datetime,
    tree_size: int = 7,
    index: int = 5,
    log_index: int = 1000,
    proof: bool = True,
    promise: bool = True,
) -> dict[str, Any]:
    body_bytes = _canonical(body)
    body_b64 = b64(body_bytes)
    t = int(integrated_time.timestamp())
    entry: dict[str, Any] = {
        "logIndex": str(log_index),
        "logId": {"keyId": b64(world.log_id)},
        "kindVersion": {"kind": body["kind"], "version": body["apiVersion"]},
        "integratedTime": str(t),
        "canonicalizedBody": body_b64,
    }
    if promise:
        payload = _canonical(
            {"body": body_b64, "integratedTime": t, "logID": world.log_id.hex(), "logIndex": log_index}
        )
        entry["inclusionPromise"] = {
            "signedEntryTimestamp": b64(world.rekor_key.sign(payload, ec.ECDSA(hashes.SHA256())))
        }
    if proof:
        leaves = [b"entry-%d" % i for i in range(tree_size)]
        leaves[index] = body_bytes
        root = _mth(leaves)
        note = f"{LOG_HOST} - 42\n{tree_size}\n{b64(root)}\n"
        sig = world.rekor_key.sign(note.encode(), ec.ECDSA(hashes.SHA256()))
        entry["inclusionProof"] = {
            "logIndex": str(index),
            "rootHash": b64(root),
            "treeSize": str(tree_size),
            "hashes": [b64(h) for h in _path(index, leaves)],
            "checkpoint": {"envelope": f"{note}\n\u2014 {LOG_HOST} {b64(world.log_id[:4] + sig)}\n"},
        }
    return entry


# -- bundles ---------------------------------------------------------------------------------


def statement(
    digest: Mapping[str, str],
    *,
    builder_id: str = BUILDER,
    repository: str = REPO,
    ref: str = "refs/heads/main",
    predicate_type: str = "https://slsa.dev/provenance/v1",
) -> dict[str, Any]:
    return {
        "_type": "https://in-toto.io/Statement/v1",
        "subject": [{"name": "model.safetensors", "digest": dict(digest)}],
        "predicateType": predicate_type,
        "predicate": {
            "buildDefinition": {
                "buildType": "https://actions.github.io/buildtypes/workflow/v1",
                "externalParameters": {
                    "workflow": {
                        "ref": ref,
                        "repository": repository,
                        "path": ".github/workflows/release.yml",
                    }
                },
                "resolvedDependencies": [
                    {"uri": f"git+{repository}@{ref}", "digest": {"gitCommit": "ab" * 20}}
                ],
            },
            "runDetails": {"builder": {"id": builder_id}},
        },
    }


def _pem_b64(cert: x509.Certificate) -> str:
    return b64(cert.public_bytes(serialization.Encoding.PEM))


def _material(cert: x509.Certificate, entry: dict[str, Any], version: str) -> tuple[str, dict[str, Any]]:
    raw = b64(cert.public_bytes(serialization.Encoding.DER))
    if version == "0.3":
        return "application/vnd.dev.sigstore.bundle.v0.3+json", {
            "certificate": {"rawBytes": raw},
            "tlogEntries": [entry],
        }
    return (
        f"application/vnd.dev.sigstore.bundle+json;version={version}",
        {"x509CertificateChain": {"certificates": [{"rawBytes": raw}]}, "tlogEntries": [entry]},
    )


def dsse_bundle(
    world: SigstoreWorld,
    stmt: Mapping[str, Any],
    *,
    signed_at: dt.datetime,
    kind: str = "dsse",
    version: str = "0.3",
    cert_options: Mapping[str, Any] | None = None,
    entry_options: Mapping[str, Any] | None = None,
    payload_type: str = "application/vnd.in-toto+json",
) -> dict[str, Any]:
    key = ec.generate_private_key(ec.SECP256R1())
    cert = signing_certificate(world, key, signed_at=signed_at, **(cert_options or {}))
    payload = _canonical(stmt)
    t = payload_type.encode()
    pae = b"DSSEv1 %d %s %d %s" % (len(t), t, len(payload), payload)
    sig = key.sign(pae, ec.ECDSA(hashes.SHA256()))
    payload_hash = {"algorithm": "sha256", "value": hashlib.sha256(payload).hexdigest()}
    if kind == "dsse":
        body = {
            "apiVersion": "0.0.1",
            "kind": "dsse",
            "spec": {
                "envelopeHash": {"algorithm": "sha256", "value": "00" * 32},
                "payloadHash": payload_hash,
                "signatures": [{"signature": b64(sig), "verifier": _pem_b64(cert)}],
            },
        }
    else:
        body = {
            "apiVersion": "0.0.2",
            "kind": "intoto",
            "spec": {
                "content": {
                    "envelope": {
                        "payloadType": payload_type,
                        "signatures": [{"publicKey": _pem_b64(cert), "sig": b64(b64(sig).encode())}],
                    },
                    "hash": {"algorithm": "sha256", "value": "00" * 32},
                    "payloadHash": payload_hash,
                }
            },
        }
    entry = tlog_entry(world, body, **({"integrated_time": signed_at} | dict(entry_options or {})))
    media_type, material = _material(cert, entry, version)
    return {
        "mediaType": media_type,
        "verificationMaterial": material,
        "dsseEnvelope": {
            "payload": b64(payload),
            "payloadType": payload_type,
            "signatures": [{"sig": b64(sig)}],
        },
    }


def message_bundle(
    world: SigstoreWorld,
    artifact: bytes,
    *,
    signed_at: dt.datetime,
    version: str = "0.3",
    cert_options: Mapping[str, Any] | None = None,
    entry_options: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    key = ec.generate_private_key(ec.SECP256R1())
    cert = signing_certificate(world, key, signed_at=signed_at, **(cert_options or {}))
    digest = hashlib.sha256(artifact).digest()
    sig = key.sign(artifact, ec.ECDSA(hashes.SHA256()))
    body = {
        "apiVersion": "0.0.1",
        "kind": "hashedrekord",
        "spec": {
            "data": {"hash": {"algorithm": "sha256", "value": digest.hex()}},
            "signature": {"content": b64(sig), "publicKey": {"content": _pem_b64(cert)}},
        },
    }
    entry = tlog_entry(world, body, **({"integrated_time": signed_at} | dict(entry_options or {})))
    media_type, material = _material(cert, entry, version)
    return {
        "mediaType": media_type,
        "verificationMaterial": material,
        "messageSignature": {
            "messageDigest": {"algorithm": "SHA2_256", "digest": b64(digest)},
            "signature": b64(sig),
        },
    }


def encode(bundle: Mapping[str, Any]) -> bytes:
    return json.dumps(bundle).encode("utf-8")


__all__ = [
    "BUILDER",
    "GITHUB_ISSUER",
    "REPO",
    "WORKFLOW",
    "SigstoreWorld",
    "dsse_bundle",
    "encode",
    "message_bundle",
    "sigstore_world",
    "signing_certificate",
    "statement",
    "tlog_entry",
]
