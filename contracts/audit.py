"""Audit: the per-tenant transparency log of every event, its checkpoints and proofs.

Hashes travel as standard padded base64 (as in checkpoint notes); a `leaf` is the exact UTF-8 text
that was hashed (RFC 9162: leaf hash = SHA-256(0x00 || leaf)); a checkpoint is the whole signed
note (c2sp.org/tlog-checkpoint), and keys are C2SP verifier keys (`name+hex8+base64`).
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

import msgspec

from contracts.types import Id, Name, Struct, Text, Uri, anchored

TreeSize = Annotated[int, msgspec.Meta(ge=0, le=2**63 - 1)]
Hash = Annotated[str, msgspec.Meta(pattern=anchored(r"[A-Za-z0-9+/]{43}="))]  # 32 bytes, base64
TraceId = Annotated[str, msgspec.Meta(pattern=anchored(r"[0-9a-f]{32}"))]
EventName = Annotated[str, msgspec.Meta(pattern=anchored(r"[a-z0-9_]{1,64}\.[a-z0-9_]{1,64}"))]
PageSize = Annotated[int, msgspec.Meta(ge=1, le=500)]
Instant = Annotated[datetime, msgspec.Meta(tz=True)]  # an instant needs its time zone
# A signed note with its signatures (shared/signed_note.py); a leaf as hashed, at most
# services/audit/leaf.py MAX_LEAF_BYTES; a proof, at most shared/merkle.py MAX_PROOF_HASHES hashes.
Note = Annotated[str, msgspec.Meta(max_length=65_536)]
Leaf = Annotated[str, msgspec.Meta(max_length=8192)]
Proof = Annotated[list[Hash], msgspec.Meta(max_length=64)]
VerifierKey = Annotated[str, msgspec.Meta(max_length=4096)]  # C2SP `name+hex8+base64`
VerifierKeys = Annotated[list[VerifierKey], msgspec.Meta(max_length=16)]


class GetCheckpoint(Struct, kw_only=True):
    """The latest signed checkpoint, or the one signed at exactly `size`."""

    size: TreeSize | None = None


class SignedCheckpoint(Struct, kw_only=True):
    size: TreeSize
    root_hash: Hash
    note: Note  # the signed note: checkpoint text, blank line, the log's signature, witness cosignatures
    signed_at: datetime


class RetiredLogKey(Struct, kw_only=True):
    """A log key that signed checkpoints up to `until_size` and no further. The checkpoint at
    `until_size` (the handover) is signed by it and by the next key: whoever trusts one trusts both."""

    key: VerifierKey
    until_size: TreeSize
    retired_at: datetime


RetiredLogKeys = Annotated[list[RetiredLogKey], msgspec.Meta(max_length=256)]


class CheckpointRecord(Struct, kw_only=True):
    origin: Uri
    log_public_key: VerifierKey  # verifier key of the log (the key name is the origin)
    witness_keys: VerifierKeys = []  # verifier keys of the witnesses that cosign (type 0x04)
    entries: TreeSize            # entries in the log now; the next checkpoint covers any beyond `checkpoint.size`
    checkpoint: SignedCheckpoint
    retired_log_keys: RetiredLogKeys = []  # oldest first


class RotateLogKey(Struct, kw_only=True):
    """Give the tenant's log a new key. The current tree head is signed by the old and the new key
    (the handover checkpoint); later checkpoints by the new key only."""

    reason: Text = "scheduled rotation"


class ListCheckpoints(Struct, kw_only=True):
    after: TreeSize | None = None  # paging cursor: the last size of the previous page
    limit: PageSize = 100


class CheckpointList(Struct, kw_only=True):
    origin: Uri
    log_public_key: VerifierKey
    witness_keys: VerifierKeys = []
    checkpoints: Annotated[list[SignedCheckpoint], msgspec.Meta(max_length=500)]  # by size, smallest first
    next_after: TreeSize | None = None
    retired_log_keys: RetiredLogKeys = []  # oldest first


class GetInclusionProof(Struct, kw_only=True):
    """Prove entry `seq` is in the tree of a signed checkpoint (`tree_size`; default: the latest)."""

    seq: TreeSize
    tree_size: TreeSize | None = None


class InclusionProof(Struct, kw_only=True):
    leaf_index: TreeSize
    tree_size: TreeSize
    leaf: Leaf
    hashes: Proof        # RFC 9162 PATH(leaf_index, D[tree_size]), bottom-up
    checkpoint: Note     # the signed note at tree_size


class GetConsistencyProof(Struct, kw_only=True):
    """Prove the checkpoint at `second` (default: the latest) extends the one at `first`."""

    first: TreeSize
    second: TreeSize | None = None


class ConsistencyProof(Struct, kw_only=True):
    first: TreeSize
    second: TreeSize
    hashes: Proof        # RFC 9162 PROOF(first, D[second])
    old_checkpoint: Note
    checkpoint: Note


class QueryLog(Struct, kw_only=True):
    """Entries matching every filter given, by sequence. Keyset paging: pass `next_after` back as `after`.

    `agent_id` matches entries about the agent, by it, or with it on the delegation path; `user`
    matches entries done on a user's behalf; `since` is inclusive and `until` exclusive.
    """

    agent_id: Id | None = None
    user: Name | None = None
    trace_id: TraceId | None = None
    event: EventName | None = None
    since: Instant | None = None
    until: Instant | None = None
    after: TreeSize | None = None
    limit: PageSize = 100


class AuditEntry(Struct, kw_only=True):
    seq: TreeSize
    leaf: Leaf
    leaf_hash: Hash | None = None  # as stored in the tree (None if the tree lacks it)


class QueryPage(Struct, kw_only=True):
    entries: Annotated[list[AuditEntry], msgspec.Meta(max_length=500)]  # QueryLog.limit
    next_after: TreeSize | None = None
