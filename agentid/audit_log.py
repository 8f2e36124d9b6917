"""A whole audit log, offline: the export file and its verification.

Export format (JSON lines, one object per line, `type` first):

    {"type": "log", "format": "agentid-audit-export/v1", "tenant", "origin", "log_public_key", "witness_keys",
     "retired_log_keys": [{"key", "until_size"}, ...]}
    {"type": "entry", "seq", "leaf", "leaf_hash"}            every entry, by sequence
    {"type": "checkpoint", "size", "root_hash", "note", "signed_at"}     every signed checkpoint
    {"type": "consistency", "first", "second", "hashes"}     the log's proofs between consecutive ones

`verify_log` trusts nothing in the file but the log key it is told to trust (the file's own when
none is pinned). It recomputes every leaf hash from the leaf text and the tree from those hashes,
opens every checkpoint with the log key (and the witnesses'), compares each signed root with the
recomputed one, and checks the log's consistency proofs. It names the first entry that does not
match: a leaf whose text no longer has the hash the tree holds (edited), a sequence number that
is absent (deleted) or out of place, entries a checkpoint covers but the log no longer has
(truncated). When leaves and their stored hashes were rewritten together, the signed roots still
catch it, and the report names the range between the last checkpoint that matches and the first
that does not.
"""

from __future__ import annotations

import base64
import itertools
import json
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import msgspec

from agentid.audit import (
    AuditClient,
    AuditProofError,
    check_consistency,
    follow_key_chain,
    leaf_hash,
    log_verifier,
    open_with_keys,
)
from shared import merkle
from shared.checkpoint import Checkpoint
from shared.signed_note import ALG_COSIGNATURE_V1, NoteError, open_note

FORMAT = "agentid-audit-export/v1"
DEPLOYMENT_LOG = "_deployment"
MAX_PROBLEMS = 50


class ExportError(ValueError):
    """An export file that is not one."""


class RetiredKey(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    key: str
    until_size: int  # the handover checkpoint, signed by this key and the next


class LogLine(msgspec.Struct, tag_field="type", tag="log", forbid_unknown_fields=True, kw_only=True):
    format: str
    tenant: str
    origin: str
    log_public_key: str
    witness_keys: list[str] = []
    retired_log_keys: list[RetiredKey] = []  # oldest first


class EntryLine(msgspec.Struct, tag_field="type", tag="entry", forbid_unknown_fields=True, kw_only=True):
    seq: int
    leaf: str
    leaf_hash: str | None = None


class CheckpointLine(msgspec.Struct, tag_field="type", tag="checkpoint", forbid_unknown_fields=True, kw_only=True):
    size: int
    root_hash: str
    note: str
    signed_at: datetime | None = None


class ConsistencyLine(msgspec.Struct, tag_field="type", tag="consistency", forbid_unknown_fields=True,
                      kw_only=True):
    first: int
    second: int
    hashes: list[str]


Line = LogLine | EntryLine | CheckpointLine | ConsistencyLine
_decoder = msgspec.json.Decoder(Line)


@dataclass
class LogExport:
    header: LogLine
    entries: list[EntryLine] = field(default_factory=list)
    checkpoints: list[CheckpointLine] = field(default_factory=list)
    consistency: list[ConsistencyLine] = field(default_factory=list)

    def lines(self) -> Iterator[str]:
        for item in (self.header, *self.entries, *self.checkpoints, *self.consistency):
            yield msgspec.json.encode(item).decode("utf-8")

    @classmethod
    def parse(cls, lines: Iterable[str]) -> LogExport:
        export: LogExport | None = None
        for number, text in enumerate(lines, 1):
            if not text.strip():
                continue
            try:
                item = _decoder.decode(text)
            except msgspec.DecodeError as exc:
                raise ExportError(f"line {number}: {exc}") from exc
            if isinstance(item, LogLine):
                if export is not None or item.format != FORMAT:
                    raise ExportError(f"line {number}: one {FORMAT} header, first")
                export = cls(item)
            elif export is None:
                raise ExportError("the first line must be the log header")
            elif isinstance(item, EntryLine):
                export.entries.append(item)
            elif isinstance(item, CheckpointLine):
                export.checkpoints.append(item)
            else:
                export.consistency.append(item)
        if export is None:
            raise ExportError("empty export")
        return export


async def fetch(client: AuditClient) -> LogExport:
    """Everything the log serves about itself: checkpoints first, then every entry."""
    listing = await client.checkpoints()
    export = LogExport(LogLine(format=FORMAT, tenant=client.tenant, origin=listing.origin,
                               log_public_key=listing.log_public_key, witness_keys=list(listing.witness_keys),
                               retired_log_keys=[RetiredKey(key=r.key, until_size=r.until_size)
                                                 for r in listing.retired_log_keys]))
    export.checkpoints = [CheckpointLine(size=c.size, root_hash=c.root_hash, note=c.note, signed_at=c.signed_at)
                          for c in listing.checkpoints]
    async for entry in client.entries():
        export.entries.append(EntryLine(seq=entry.seq, leaf=entry.leaf, leaf_hash=entry.leaf_hash))
    sizes = [c.size for c in export.checkpoints]
    for first, second in itertools.pairwise(sizes):
        proof = await client.consistency(first, second)
        export.consistency.append(ConsistencyLine(first=first, second=second, hashes=list(proof.hashes)))
    return export


# ---- verification -------------------------------------------------------------------------------


@dataclass(frozen=True)
class Problem:
    kind: str
    message: str
    seq: int | None = None  # the entry it names, when it names one


@dataclass
class Report:
    entries: int = 0
    checkpoints_verified: int = 0
    consistency_verified: int = 0
    problems: list[Problem] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems

    @property
    def first_bad_entry(self) -> int | None:
        named = [p.seq for p in self.problems if p.seq is not None]
        return min(named) if named else None

    def add(self, kind: str, message: str, seq: int | None = None) -> None:
        if len(self.problems) < MAX_PROBLEMS:
            self.problems.append(Problem(kind, message, seq))


class _Roots:
    """The root after each leaf, in O(log n) memory: a binary counter of complete subtrees."""

    def __init__(self) -> None:
        self.size = 0
        self._peaks: list[tuple[int, bytes]] = []  # (level, hash), largest first

    def push(self, value: bytes) -> None:
        self._peaks.append((0, value))
        self.size += 1
        while len(self._peaks) >= 2 and self._peaks[-1][0] == self._peaks[-2][0]:
            level, right = self._peaks.pop()
            _, left = self._peaks.pop()
            self._peaks.append((level + 1, merkle.node_hash(left, right)))

    def root(self) -> bytes:
        if not self._peaks:
            return merkle.EMPTY_ROOT
        acc = self._peaks[-1][1]
        for _, value in reversed(self._peaks[:-1]):
            acc = merkle.node_hash(value, acc)
        return acc


def _b64(value: str | None) -> bytes | None:
    try:
        return base64.b64decode(value, validate=True) if value is not None else None
    except (ValueError, TypeError):
        return None


def _check_leaf(report: Report, entry: EntryLine, log: str) -> bytes:
    """The entry's leaf hash, from its text; records what does not match."""
    digest = leaf_hash(entry.leaf)
    stored = _b64(entry.leaf_hash)
    if stored is None:
        report.add("hash_missing", f"entry {entry.seq}: the tree holds no hash for it", entry.seq)
    elif stored != digest:
        report.add("leaf_edited", f"entry {entry.seq}: its leaf text no longer has the hash it was logged "
                                  "with (edited after logging)", entry.seq)
    try:
        leaf: Any = json.loads(entry.leaf)
    except ValueError:
        report.add("not_json", f"entry {entry.seq}: its leaf is not JSON", entry.seq)
        return digest
    if not isinstance(leaf, dict) or leaf.get("seq") != entry.seq:
        report.add("wrong_seq", f"entry {entry.seq}: its leaf says seq {leaf.get('seq') if isinstance(leaf, dict) else '?'}"
                                " (moved or renumbered)", entry.seq)
    elif log != DEPLOYMENT_LOG and leaf.get("tenant") != log:
        report.add("wrong_tenant", f"entry {entry.seq}: its leaf belongs to tenant {leaf.get('tenant')!r}", entry.seq)
    return digest


def _open(report: Report, cp: CheckpointLine, keys: _Keys, witnesses: list[str], strict: bool) -> Checkpoint | None:
    try:
        opened, _ = open_with_keys(cp.note, [keys.current], keys.retired, witnesses if strict else ())
    except AuditProofError as exc:
        report.add("bad_checkpoint", f"checkpoint at size {cp.size}: {exc}")
        return None
    if not strict:
        # Witnesses the log names: a bad cosignature is a problem, a missing one (say, a
        # checkpoint signed before the witness was configured) only a warning.
        for key in witnesses:
            witness = log_verifier(key, alg=ALG_COSIGNATURE_V1)
            try:
                signers = open_note(cp.note, [witness]).signers
            except NoteError as exc:
                if exc.reason == "no_trusted_signature":
                    report.warnings.append(f"checkpoint at size {cp.size}: no cosignature by {witness.name}")
                    continue
                report.add("bad_checkpoint", f"checkpoint at size {cp.size}: witness {witness.name}: {exc}")
                return None
            assert witness.name in signers
    if opened.size != cp.size or base64.b64encode(opened.root_hash).decode() != cp.root_hash:
        report.add("bad_checkpoint", f"checkpoint at size {cp.size}: its note says size {opened.size} "
                                     "or another root than listed")
        return None
    return opened


@dataclass(frozen=True)
class _Keys:
    current: str
    retired: list[tuple[str, int]]  # (key, handover size), oldest first


def _key_history(report: Report, header: LogLine, pinned: str, notes: dict[int, str]) -> _Keys | None:
    try:
        retired = follow_key_chain(pinned, header.log_public_key,
                                   [(r.key, r.until_size) for r in header.retired_log_keys], notes)
    except AuditProofError as exc:
        report.add(exc.reason, str(exc))
        return None
    return _Keys(header.log_public_key, retired)


def verify_log(export: LogExport, *, log_key: str | None = None,
               witness_keys: list[str] | None = None) -> Report:
    """Verify an exported log. `log_key` pins the log's key (default: the export's own, which only
    proves self-consistency); `witness_keys`, when given, must cosign every checkpoint."""
    report = Report()
    header = export.header
    log = header.tenant
    trusted = log_key or header.log_public_key
    if log_key is None:
        report.warnings.append("the log key was not pinned: trusting the one the log reports")
    try:
        key_name = log_verifier(trusted).name
    except AuditProofError as exc:
        report.add("bad_log_key", str(exc))
        return report
    if key_name != header.origin:
        report.add("origin_mismatch", f"the trusted key is for {key_name}, the log is {header.origin}")
    strict = witness_keys is not None
    witnesses = list(witness_keys if witness_keys is not None else header.witness_keys)
    keys = _key_history(report, header, trusted, {cp.size: cp.note for cp in export.checkpoints})
    if keys is None:
        return report

    sizes = {cp.size for cp in export.checkpoints}
    roots: dict[int, bytes] = {}
    tree = _Roots()
    broken_at: int | None = None  # past a missing or misplaced entry the tree cannot be rebuilt
    expected = 0
    for entry in sorted(export.entries, key=lambda e: e.seq):
        if entry.seq < expected:
            report.add("duplicate", f"entry {entry.seq} appears twice", entry.seq)
            continue
        if entry.seq > expected:
            gap = f"entry {expected} is missing" if entry.seq == expected + 1 else \
                f"entries {expected} to {entry.seq - 1} are missing"
            report.add("missing", f"{gap} (deleted)", expected)
            broken_at = expected if broken_at is None else broken_at
            expected = entry.seq
        digest = _check_leaf(report, entry, log)
        if broken_at is None:
            tree.push(digest)
            if tree.size in sizes:
                roots[tree.size] = tree.root()
        expected += 1
    report.entries = expected

    opened: list[Checkpoint] = []
    matched = 0  # the largest size whose signed root the entries reproduce
    for cp in sorted(export.checkpoints, key=lambda c: c.size):
        checkpoint = _open(report, cp, keys, witnesses, strict)
        if checkpoint is None:
            continue
        opened.append(checkpoint)
        report.checkpoints_verified += 1
        if checkpoint.size > expected:
            report.add("truncated", f"checkpoint at size {checkpoint.size} covers entries the log no longer has: "
                                    f"entries {expected} to {checkpoint.size - 1} are missing", expected)
        elif checkpoint.size in roots:
            if roots[checkpoint.size] != checkpoint.root_hash:
                report.add("root_mismatch", f"checkpoint at size {checkpoint.size} does not match the entries: "
                                            f"an entry from {matched} to {checkpoint.size - 1} was changed")
            else:
                matched = checkpoint.size
        else:
            report.warnings.append(f"checkpoint at size {checkpoint.size} not recomputed (entries missing before it)")

    proofs = {(p.first, p.second): p for p in export.consistency}
    for old, new in itertools.pairwise(opened):
        proof = proofs.get((old.size, new.size))
        if proof is None:
            continue  # both roots were recomputed from one sequence of leaves: consistent by construction
        try:
            check_consistency(old, new, proof.hashes)
        except AuditProofError as exc:
            report.add("inconsistent", f"checkpoints at sizes {old.size} and {new.size}: {exc}")
            continue
        report.consistency_verified += 1
    if opened and opened[-1].size < expected:
        report.warnings.append(f"entries {opened[-1].size} to {expected - 1} are not covered by a checkpoint yet")
    report.problems.sort(key=lambda p: (p.seq is None, p.seq or 0))
    return report
