"""c2sp.org/tlog-checkpoint: exact text, strict parsing, and opening against the log's key."""

from __future__ import annotations

import base64

import pytest
from cryptography.hazmat.primitives.asymmetric import ed25519
from hypothesis import given, settings
from hypothesis import strategies as st

from shared import checkpoint as ckpt
from shared import merkle
from shared import signed_note as sn
from shared.checkpoint import Checkpoint, CheckpointError

SEED = bytes.fromhex("9d61b19deffd5a60ba844af492ec2cc44449c5697b326919703bac031cae7f60")
ORIGIN = "example.com/log42"
LOG = sn.Signer(ORIGIN, ed25519.Ed25519PrivateKey.from_private_bytes(SEED))
WITNESS = sn.CosignatureSigner(
    "witness.example/w1", ed25519.Ed25519PrivateKey.generate(), clock=lambda: 1_700_000_000
)
RFC_LEAVES = [
    bytes.fromhex(h)
    for h in (
        *("", "00", "10", "2021", "3031", "40414243"),
        *("5051525354555657", "606162636465666768696a6b6c6d6e6f"),
    )
]
TREE = merkle.MemoryTree.from_leaves(RFC_LEAVES)
TEXT = "example.com/log42\n8\nXcnaeacGWamtVZy3Ad7ZoqudgjqtL0lgz+Nw7/RgQyg=\n"
NOTE = (
    TEXT
    + "\n\u2014 example.com/log42 "
    + "HMlJKvHR7vPG8wIjOj8iBv9cMBSXcLFm5a/ZKq4+szRgZFq+2qaCg87zGDtzFISS2bInneIN8AQ1HL7GV53gLYV5dww=\n"
)


def _refused(reason: str, fn, *args) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(CheckpointError) as info:
        fn(*args)
    assert info.value.reason == reason, info.value


def test_specs_example_checkpoint_is_reproduced_exactly() -> None:
    cp = Checkpoint(ORIGIN, 8, TREE.root(8))
    assert cp.format() == TEXT
    assert ckpt.sign_checkpoint(cp, LOG) == NOTE
    assert ckpt.parse(TEXT) == cp == Checkpoint.parse(TEXT)
    opened = ckpt.open_checkpoint(NOTE, [LOG.verifier()], ORIGIN)
    assert opened == (cp, [ORIGIN])


def test_extension_lines_and_the_empty_tree() -> None:
    cp = Checkpoint(ORIGIN, 3, TREE.root(3), ("ext one", "ext two"))
    assert cp.format().endswith("\next one\next two\n")
    assert ckpt.parse(cp.format()) == cp
    empty = Checkpoint(ORIGIN, 0, merkle.EMPTY_ROOT)
    assert empty.format().split("\n")[1] == "0" and ckpt.parse(empty.format()) == empty


ROOT_B64 = "XcnaeacGWamtVZy3Ad7ZoqudgjqtL0lgz+Nw7/RgQyg="


@pytest.mark.parametrize(
    "text",
    [
        f"{ORIGIN}\n8\n{ROOT_B64}",  # no final newline
        f"{ORIGIN}\n8\n",  # no root line
        f"\n8\n{ROOT_B64}\n",  # empty origin
        f"{ORIGIN}\n08\n{ROOT_B64}\n",  # leading zero
        f"{ORIGIN}\n+8\n{ROOT_B64}\n",
        f"{ORIGIN}\n-8\n{ROOT_B64}\n",
        f"{ORIGIN}\n 8\n{ROOT_B64}\n",
        f"{ORIGIN}\n8 \n{ROOT_B64}\n",
        f"{ORIGIN}\n\u0668\n{ROOT_B64}\n",  # a non-ASCII digit
        f"{ORIGIN}\n8\n{ROOT_B64.rstrip('=')}\n",  # unpadded
        f"{ORIGIN}\n8\n{ROOT_B64.replace('+', '-')}\n",  # URL-safe alphabet
        f"{ORIGIN}\n8\n{base64.b64encode(b'x' * 31).decode()}\n",  # 31 bytes
        f"{ORIGIN}\n8\n{ROOT_B64}\n\n",  # empty extension line
        f"{ORIGIN}\n8\n{ROOT_B64}\next\n\nmore\n",
        f"{ORIGIN}\t\n8\n{ROOT_B64}\n",  # control character
        f"{ORIGIN}\n9223372036854775808\n{ROOT_B64}\n",  # 2**63
        f"{ORIGIN}\n{'9' * 5000}\n{ROOT_B64}\n",  # beyond what int() should be asked to parse
        f"{ORIGIN}\n0\n{ROOT_B64}\n",  # the empty tree has one root
        f"{ORIGIN}\r\n8\n{ROOT_B64}\n",
    ],
)
def test_malformed_checkpoint_text_is_refused(text: str) -> None:
    _refused("malformed", ckpt.parse, text)


def test_constructor_refuses_what_parse_refuses() -> None:
    _refused("malformed", Checkpoint, "", 1, b"\x00" * 32)
    _refused("malformed", Checkpoint, ORIGIN, -1, b"\x00" * 32)
    _refused("malformed", Checkpoint, ORIGIN, True, b"\x00" * 32)
    _refused("malformed", Checkpoint, ORIGIN, 1, b"\x00" * 31)
    _refused("malformed", Checkpoint, ORIGIN, 1, b"\x00" * 32, ["list"])
    _refused("malformed", Checkpoint, ORIGIN, 1, b"\x00" * 32, ("two\nlines",))
    _refused("malformed", Checkpoint, ORIGIN, 0, b"\x00" * 32)


printable = st.characters(min_codepoint=0x20, blacklist_categories=("Cs",))  # no control characters


@settings(max_examples=100, deadline=None)
@given(
    st.text(alphabet=printable, min_size=1, max_size=30),
    st.integers(min_value=1, max_value=merkle.MAX_TREE_SIZE),
    st.binary(min_size=32, max_size=32),
    st.lists(st.text(alphabet=printable, min_size=1, max_size=30), max_size=3),
)
def test_format_and_parse_round_trip(origin: str, size: int, root: bytes, extensions: list[str]) -> None:
    cp = Checkpoint(origin, size, root, tuple(extensions))
    assert ckpt.parse(cp.format()) == cp


def test_open_checkpoint_with_witnesses() -> None:
    cp = Checkpoint(ORIGIN, 8, TREE.root(8))
    cosigned = sn.add_signature(ckpt.sign_checkpoint(cp, LOG), WITNESS, [LOG.verifier()])
    opened = ckpt.open_checkpoint(cosigned, [LOG.verifier(), WITNESS.verifier()], ORIGIN)
    assert opened.checkpoint == cp and opened.signers == [ORIGIN, WITNESS.name]


def test_open_checkpoint_refusals() -> None:
    cp = Checkpoint(ORIGIN, 8, TREE.root(8))
    cosigned = sn.add_signature(ckpt.sign_checkpoint(cp, LOG), WITNESS, [LOG.verifier()])
    # Only a witness is trusted: the log's own signature is still required.
    _refused("log_signature_missing", ckpt.open_checkpoint, cosigned, [WITNESS.verifier()], ORIGIN)
    # The caller expects another log.
    _refused("origin_mismatch", ckpt.open_checkpoint, NOTE, [LOG.verifier()], "example.com/log43")
    # A key named differently from the origin signed it.
    stranger = sn.Signer("example.com/other", ed25519.Ed25519PrivateKey.generate())
    note = sn.sign(cp.format(), stranger)
    _refused("log_signature_missing", ckpt.open_checkpoint, note, [stranger.verifier()], ORIGIN)
    _refused("origin_mismatch", ckpt.sign_checkpoint, cp, stranger)
    # Signed note that verifies but whose text is no checkpoint.
    _refused("malformed", ckpt.open_checkpoint, sn.sign("hello\n", LOG), [LOG.verifier()], ORIGIN)
    # Signature problems surface as NoteError.
    with pytest.raises(sn.NoteError):
        ckpt.open_checkpoint(NOTE.replace("\n8\n", "\n9\n"), [LOG.verifier()], ORIGIN)


def test_checkpoint_proof_helpers() -> None:
    old, new = Checkpoint(ORIGIN, 3, TREE.root(3)), Checkpoint(ORIGIN, 7, TREE.root(7))
    ckpt.verify_consistency(old, new, TREE.consistency_proof(3, 7))
    ckpt.verify_inclusion(new, merkle.leaf_hash(RFC_LEAVES[5]), 5, TREE.inclusion_proof(5, 7))
    with pytest.raises(merkle.ProofError):
        ckpt.verify_consistency(new, old, TREE.consistency_proof(3, 7))
    with pytest.raises(merkle.ProofError):
        ckpt.verify_inclusion(new, merkle.leaf_hash(RFC_LEAVES[4]), 5, TREE.inclusion_proof(5, 7))
    other_log = Checkpoint("example.com/other", 7, TREE.root(7))
    _refused("origin_mismatch", ckpt.verify_consistency, old, other_log, TREE.consistency_proof(3, 7))
