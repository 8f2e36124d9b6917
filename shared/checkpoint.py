"""c2sp.org/tlog-checkpoint: the signed note body naming a log's tree head.

Text: origin line, tree size (decimal, no leading zeros), root hash (standard base64), then
optional non-empty extension lines, each line ending in a newline. The log signs it under a key
whose name is the origin; witnesses add their cosignatures to the same note.
"""

from __future__ import annotations

import base64
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import NamedTuple

from shared import merkle
from shared.signed_note import NoteError, Signer, Verifier, decode_std_base64, open_note, sign

_SIZE = re.compile(r"(?:0|[1-9][0-9]*)")
_CONTROL = re.compile(r"[\x00-\x1f]")  # lines never hold a newline or any other control character


class CheckpointError(ValueError):
    """A checkpoint was malformed or did not match what the caller trusts. `reason` is stable."""

    def __init__(self, reason: str, message: str = "") -> None:
        super().__init__(f"{reason}: {message}" if message else reason)
        self.reason = reason


def _check_line(line: object, what: str) -> str:
    if not isinstance(line, str) or line == "" or _CONTROL.search(line):
        raise CheckpointError("malformed", f"{what} must be a non-empty line")
    return line


@dataclass(frozen=True)
class Checkpoint:
    origin: str
    size: int
    root_hash: bytes
    extensions: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        _check_line(self.origin, "origin")
        if type(self.size) is not int or not 0 <= self.size <= merkle.MAX_TREE_SIZE:
            raise CheckpointError("malformed", "tree size out of range")
        if not isinstance(self.root_hash, bytes) or len(self.root_hash) != merkle.HASH_SIZE:
            raise CheckpointError("malformed", "root hash must be 32 bytes")
        # The empty tree has exactly one root, so any other is a forgery or a bug.
        if self.size == 0 and self.root_hash != merkle.EMPTY_ROOT:
            raise CheckpointError("malformed", "the empty tree's root is SHA-256 of nothing")
        if not isinstance(self.extensions, tuple):
            raise CheckpointError("malformed", "extensions must be a tuple of lines")
        for line in self.extensions:
            _check_line(line, "extension line")

    def format(self) -> str:
        root_b64 = base64.b64encode(self.root_hash).decode("ascii")
        lines = [self.origin, str(self.size), root_b64, *self.extensions]
        return "".join(line + "\n" for line in lines)

    @classmethod
    def parse(cls, text: str) -> Checkpoint:
        return parse(text)


def parse(text: str) -> Checkpoint:
    """Strictly parse checkpoint text: `Checkpoint.parse(t).format() == t` for every accepted t."""
    if not isinstance(text, str) or not text.endswith("\n"):
        raise CheckpointError("malformed", "checkpoint text ends with a newline")
    lines = text[:-1].split("\n")
    if len(lines) < 3:
        raise CheckpointError("malformed", "origin, size and root hash lines are required")
    origin, size, root_b64, *extensions = lines
    if not _SIZE.fullmatch(size):
        raise CheckpointError("malformed", "tree size is a decimal without leading zeros")
    try:
        root_hash = decode_std_base64(root_b64)
    except NoteError as exc:
        raise CheckpointError("malformed", "root hash is not standard base64") from exc
    if len(size) > 19 or int(size) > merkle.MAX_TREE_SIZE:
        raise CheckpointError("malformed", "tree size out of range")
    return Checkpoint(origin, int(size), root_hash, tuple(extensions))


def sign_checkpoint(checkpoint: Checkpoint, signer: Signer) -> str:
    """The log's signature: its key name must be the origin, as clients will require."""
    if signer.name != checkpoint.origin:
        raise CheckpointError("origin_mismatch", "the log's key name must equal the origin")
    return sign(checkpoint.format(), signer)


class OpenedCheckpoint(NamedTuple):
    checkpoint: Checkpoint
    signers: list[str]  # trusted names whose signatures verified, in note order (includes origin)


def open_checkpoint(note: str | bytes, verifiers: Iterable[Verifier], origin: str) -> OpenedCheckpoint:
    """Verify a checkpoint note from the log named `origin`.

    Requires a verified signature by a trusted key named `origin` (witness signatures alone are
    not enough) and the origin line to equal it. Raises NoteError or CheckpointError.
    """
    opened = open_note(note, verifiers)
    checkpoint = parse(opened.text)
    if checkpoint.origin != origin:
        raise CheckpointError("origin_mismatch", "the checkpoint names another log")
    if origin not in opened.signers:
        raise CheckpointError("log_signature_missing", "no verified signature by the log's key")
    return OpenedCheckpoint(checkpoint, opened.signers)


def verify_consistency(old: Checkpoint, new: Checkpoint, proof: Sequence[bytes]) -> None:
    """Check that `new` extends `old` (same log). Raises CheckpointError or merkle.ProofError."""
    if old.origin != new.origin:
        raise CheckpointError("origin_mismatch", "checkpoints of different logs")
    merkle.verify_consistency(old.size, new.size, old.root_hash, new.root_hash, proof)


def verify_inclusion(checkpoint: Checkpoint, leaf_hash: bytes, index: int, proof: Sequence[bytes]) -> None:
    merkle.verify_inclusion(leaf_hash, index, checkpoint.size, proof, checkpoint.root_hash)
