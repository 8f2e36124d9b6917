"""An outside verifier for the demo report's `audit` section (DESIGN section 9).

Nothing here uses agentid's own Merkle or signed-note code: signatures are checked with
`cryptography` directly from the C2SP texts, roots are recomputed with the RFC 9162 definition,
inclusion proofs go through sigstore's verifier, and consistency proofs through the RFC 9162
section 2.1.4.2 algorithm written out below.
"""

from __future__ import annotations

import base64
import hashlib
import json
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from sigstore._internal.merkle import verify_merkle_inclusion
from sigstore.models import TransparencyLogEntry
from sigstore_models.common import v1 as common_v1
from sigstore_models.rekor import v1 as rekor_v1

AUDIT_KEYS = {"checkpoint", "log_public_key", "entries", "inclusion_proofs", "old_checkpoint", "consistency_proof"}


def _h(data: bytes) -> bytes:
    return hashlib.sha256(data).digest()


def mth(leaves: list[bytes]) -> bytes:
    """RFC 9162 section 2.1.1, by its definition."""
    if not leaves:
        return _h(b"")
    if len(leaves) == 1:
        return _h(b"\x00" + leaves[0])
    k = 1 << ((len(leaves) - 1).bit_length() - 1)
    return _h(b"\x01" + mth(leaves[:k]) + mth(leaves[k:]))


def open_checkpoint(note: str, vkey: str) -> tuple[str, int, bytes]:
    """Check a C2SP checkpoint signed by the key `name+hex8+base64(0x01 || key)`; (origin, size, root)."""
    name, key_hex, key_b64 = vkey.split("+", 2)
    raw = base64.b64decode(key_b64)
    assert raw[0] == 0x01 and len(raw) == 33, "an Ed25519 log key"
    key_id = _h(name.encode() + b"\n" + raw)[:4]
    assert key_id.hex() == key_hex
    text, _, block = note.rpartition("\n\n")
    text += "\n"
    verified = False
    for line in block.splitlines():
        assert line.startswith("\u2014 ")
        signer, encoded = line[2:].split(" ")
        sig = base64.b64decode(encoded)
        if signer == name and sig[:4] == key_id:
            Ed25519PublicKey.from_public_bytes(raw[1:]).verify(sig[4:], text.encode())  # raises if forged
            verified = True
    assert verified, "no signature by the log's key"
    origin, size, root, *extensions = text[:-1].split("\n")
    assert origin == name and not extensions
    return origin, int(size), base64.b64decode(root)


def verify_consistency(first: int, second: int, first_root: bytes, second_root: bytes, proof: list[bytes]) -> bool:
    """RFC 9162 section 2.1.4.2, step by step."""
    if first == second:
        return not proof and first_root == second_root
    if first == 0 or first > second or not proof:
        return False
    if first & (first - 1) == 0:
        proof = [first_root, *proof]
    fn, sn = first - 1, second - 1
    while fn & 1:
        fn, sn = fn >> 1, sn >> 1
    fr = sr = proof[0]
    for c in proof[1:]:
        if sn == 0:
            return False
        if fn & 1 or fn == sn:
            fr, sr = _h(b"\x01" + c + fr), _h(b"\x01" + c + sr)
            if not fn & 1:
                while fn and not fn & 1:
                    fn, sn = fn >> 1, sn >> 1
        else:
            sr = _h(b"\x01" + sr + c)
        fn, sn = fn >> 1, sn >> 1
    return sn == 0 and fr == first_root and sr == second_root


def _sigstore_entry(index: int, size: int, hashes: list[str], root: bytes, leaf: bytes) -> TransparencyLogEntry:
    inner = rekor_v1.TransparencyLogEntry(
        log_index=str(index), log_id=common_v1.LogId(key_id=base64.b64encode(b"\x00" * 32)),
        kind_version=rekor_v1.KindVersion(kind="hashedrekord", version="0.0.1"),
        inclusion_proof=rekor_v1.InclusionProof(
            log_index=str(index), root_hash=base64.b64encode(root), tree_size=str(size),
            hashes=[h.encode() for h in hashes], checkpoint=rekor_v1.Checkpoint(envelope="unused")),
        canonicalized_body=base64.b64encode(leaf))
    return TransparencyLogEntry(inner)


def check_audit_report(audit: dict[str, Any], *, require_traces: bool = True) -> list[dict[str, Any]]:
    """Every check an auditor holding only the report can make; returns the parsed leaves."""
    assert set(audit) == AUDIT_KEYS
    _, size, root = open_checkpoint(audit["checkpoint"], audit["log_public_key"])
    leaves = [entry["leaf"].encode("utf-8") for entry in audit["entries"]]
    assert [entry["index"] for entry in audit["entries"]] == list(range(size))
    assert mth(leaves) == root, "the entries are exactly the log the checkpoint commits to"
    parsed = [json.loads(leaf) for leaf in leaves]
    for index, leaf in enumerate(parsed):
        assert leaf["seq"] == index and leaf["status"] == "verified"
        assert leaf["event_digest"].startswith("sha256:") and leaf["actor"]["id"]
        if require_traces:
            assert isinstance(leaf["trace_id"], str) and len(leaf["trace_id"]) == 32
    assert len(audit["inclusion_proofs"]) == size
    for proof, leaf in zip(audit["inclusion_proofs"], leaves):
        assert proof["tree_size"] == size
        verify_merkle_inclusion(_sigstore_entry(proof["leaf_index"], size, proof["hashes"], root, leaf))
    _, old_size, old_root = open_checkpoint(audit["old_checkpoint"], audit["log_public_key"])
    consistency = audit["consistency_proof"]
    assert (consistency["first"], consistency["second"]) == (old_size, size)
    assert mth(leaves[:old_size]) == old_root
    hashes = [base64.b64decode(h) for h in consistency["hashes"]]
    assert verify_consistency(old_size, size, old_root, root, hashes)
    if hashes:  # the check is real: any change to the proof fails it
        assert not verify_consistency(old_size, size, old_root, root, [_h(hashes[0])] + hashes[1:])
    return parsed
