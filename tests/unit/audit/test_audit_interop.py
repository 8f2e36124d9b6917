"""Our proofs and checkpoints as read by an independent implementation: sigstore-python.

sigstore verifies Rekor inclusion proofs with its own RFC 6962 code (derived from Trillian's),
and parses Rekor checkpoints, which are C2SP signed notes.
"""

from __future__ import annotations

import base64

import pytest
from cryptography.hazmat.primitives.asymmetric import ed25519
from hypothesis import given, settings
from hypothesis import strategies as st
from sigstore._internal.merkle import verify_merkle_inclusion
from sigstore._internal.rekor.checkpoint import SignedCheckpoint
from sigstore.errors import VerificationError
from sigstore.models import TransparencyLogEntry
from sigstore_models.common import v1 as common_v1
from sigstore_models.rekor import v1 as rekor_v1

from shared import checkpoint as ckpt
from shared import merkle
from shared import signed_note as sn

N_MAX = 600
LEAVES = [b'{"event":%d}' % i for i in range(N_MAX)]
TREE = merkle.MemoryTree.from_leaves(LEAVES)


def _entry(index: int, size: int, proof: list[bytes], root: bytes, body: bytes) -> TransparencyLogEntry:
    def b64(raw: bytes) -> bytes:
        return base64.b64encode(raw)

    inner = rekor_v1.TransparencyLogEntry(
        log_index=str(index),
        log_id=common_v1.LogId(key_id=b64(b"\x00" * 32)),
        kind_version=rekor_v1.KindVersion(kind="hashedrekord", version="0.0.1"),
        inclusion_proof=rekor_v1.InclusionProof(
            log_index=str(index),
            root_hash=b64(root),
            tree_size=str(size),
            hashes=[b64(h) for h in proof],
            checkpoint=rekor_v1.Checkpoint(envelope="unused by the Merkle check"),
        ),
        canonicalized_body=b64(body),
    )
    return TransparencyLogEntry(inner)


@st.composite
def size_and_index(draw: st.DrawFn) -> tuple[int, int]:
    n = draw(st.integers(min_value=1, max_value=N_MAX))
    return n, draw(st.integers(min_value=0, max_value=n - 1))


@settings(max_examples=200, deadline=None)
@given(size_and_index())
def test_sigstore_accepts_our_inclusion_proofs(case: tuple[int, int]) -> None:
    n, i = case
    verify_merkle_inclusion(_entry(i, n, TREE.inclusion_proof(i, n), TREE.root(n), LEAVES[i]))


def test_sigstore_accepts_every_proof_of_small_trees() -> None:
    for n in range(1, 70):
        for i in range(n):
            verify_merkle_inclusion(_entry(i, n, TREE.inclusion_proof(i, n), TREE.root(n), LEAVES[i]))


def test_sigstore_refuses_what_we_refuse() -> None:
    # Shows the independent check is really checking: a wrong root or leaf fails there too.
    proof = TREE.inclusion_proof(5, 13)
    with pytest.raises(VerificationError):
        verify_merkle_inclusion(_entry(5, 13, proof, TREE.root(12), LEAVES[5]))
    with pytest.raises(VerificationError):
        verify_merkle_inclusion(_entry(5, 13, proof, TREE.root(13), LEAVES[6]))


def test_sigstore_parses_our_signed_checkpoint() -> None:
    log = sn.Signer("log.example/agentid", ed25519.Ed25519PrivateKey.generate())
    cp = ckpt.Checkpoint(log.name, 437, TREE.root(437))
    parsed = SignedCheckpoint.from_text(ckpt.sign_checkpoint(cp, log))
    assert parsed.checkpoint.origin == cp.origin
    assert parsed.checkpoint.log_size == cp.size
    assert parsed.checkpoint.log_hash == cp.root_hash.hex()
    [signature] = parsed.signed_note.signatures
    assert signature.name == log.name and signature.sig_hash == log.key_id.to_bytes(4, "big")
    log.verifier().public_key.verify(base64.b64decode(signature.signature), cp.format().encode())
