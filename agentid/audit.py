"""The audit log from the outside: a client for its routes, and offline verification.

    client = AuditClient(bus, tenant)
    head = await client.checkpoint()
    proof = await client.proof(17)
    verify_inclusion(proof.leaf, proof.leaf_index, proof.hashes, proof.checkpoint, head.log_public_key)

The verification helpers need nothing but their arguments: a leaf (the exact text that was
hashed), an RFC 9162 proof, a checkpoint (a C2SP signed note) and the log's verifier key, pinned
by whoever relies on it. They are what `agentid audit verify` and artifact verification use.
"""

from __future__ import annotations

import asyncio
import base64
from collections.abc import AsyncIterator, Mapping, Sequence
from typing import Any

from contracts import audit as au
from contracts import subjects as sub
from shared import merkle
from shared.bus import Bus
from shared.bus.client import stream_name
from shared.checkpoint import Checkpoint, CheckpointError, open_checkpoint
from shared.checkpoint import verify_consistency as _verify_consistency
from shared.errors import NotFound, Unavailable
from shared.signed_note import (
    ALG_COSIGNATURE_V1,
    ALG_ED25519,
    NoteError,
    Verifier,
    parse_verifier_key,
)

__all__ = [
    "AuditClient", "AuditProofError", "check_consistency", "follow_key_chain", "leaf_hash", "log_verifier", "open_log_checkpoint", "open_with_keys",
    "verify_consistency", "verify_inclusion",
]


class AuditProofError(ValueError):
    """An audit artifact did not verify. `reason` is a stable code naming the failed check."""

    def __init__(self, reason: str, message: str = "") -> None:
        message = message.removeprefix(f"{reason}: ")  # lower layers' messages start with their reason
        super().__init__(f"{reason}: {message}" if message and message != reason else reason)
        self.reason = reason


def leaf_hash(leaf: str | bytes) -> bytes:
    """RFC 9162 leaf hash of a leaf as text (UTF-8) or bytes."""
    return merkle.leaf_hash(leaf.encode("utf-8") if isinstance(leaf, str) else leaf)


def _hashes(values: Sequence[str]) -> list[bytes]:
    out = []
    for value in values:
        try:
            raw = base64.b64decode(value, validate=True)
        except (ValueError, TypeError) as exc:
            raise AuditProofError("bad_hash", "proof hashes are standard base64") from exc
        out.append(raw)
    return out


def log_verifier(log_key: str, *, alg: int = ALG_ED25519) -> Verifier:
    """A trusted key from its C2SP verifier key string; the log's own key is type 0x01 (Ed25519),
    a witness's 0x04 (cosignature/v1)."""
    try:
        verifier = parse_verifier_key(log_key)
    except NoteError as exc:
        raise AuditProofError("bad_log_key", str(exc)) from exc
    if verifier.alg != alg:
        raise AuditProofError("bad_log_key", f"expected a key of type {alg:#04x}")
    return verifier


def open_log_checkpoint(note: str, log_key: str, witness_keys: Sequence[str] = ()) -> Checkpoint:
    """Verify a checkpoint signed by the log (the key's name is the origin) and, when witness keys
    are given, cosigned by every one of them. Raises AuditProofError."""
    log = log_verifier(log_key)
    witnesses = [log_verifier(w, alg=ALG_COSIGNATURE_V1) for w in witness_keys]
    try:
        opened = open_checkpoint(note, [log, *witnesses], log.name)
    except (NoteError, CheckpointError) as exc:
        raise AuditProofError(getattr(exc, "reason", "bad_checkpoint"), str(exc)) from exc
    for witness in witnesses:
        if witness.name not in opened.signers:
            raise AuditProofError("witness_missing", f"no cosignature by {witness.name}")
    return opened.checkpoint


def open_with_keys(note: str, log_keys: Sequence[str], retired: Sequence[tuple[str, int]] = (),
                   witness_keys: Sequence[str] = ()) -> tuple[Checkpoint, str]:
    """Open a checkpoint with whichever trusted key may have signed it: a current key at any size,
    a retired key only up to its handover size (so a retired key that leaked cannot sign a new
    tree head). Returns the checkpoint and the key that opened it; raises AuditProofError."""
    last: AuditProofError | None = None
    for key, until in [*((k, None) for k in log_keys), *retired]:
        try:
            opened = open_log_checkpoint(note, key, witness_keys)
        except AuditProofError as exc:
            last = exc
            continue
        if until is not None and opened.size > until:
            raise AuditProofError("retired_log_key", f"signed by a key retired at size {until}, for size {opened.size}")
        return opened, key
    if last is not None and last.reason not in ("no_trusted_signature", "log_signature_missing"):
        raise last
    raise AuditProofError("untrusted_log_key", "the checkpoint is not signed by a trusted log key")


def follow_key_chain(pinned: str, current: str, retired: Sequence[tuple[str, int]],
                     handovers: Mapping[int, str]) -> list[tuple[str, int]]:
    """Trust a log's keys starting from the one you pinned. Each rotation's handover checkpoint
    (`handovers[size]`, the note at a retired key's `until_size`) must be signed by the outgoing
    and the incoming key, so trust passes along the chain both ways. Returns the retired keys to
    use with `open_with_keys` (keys that never signed a checkpoint left out); raises AuditProofError."""
    chain = sorted(((k, n) for k, n in retired if n > 0), key=lambda r: r[1])
    keys = [k for k, _ in chain] + [current]
    if pinned not in keys:
        raise AuditProofError("bad_log_key", "the pinned key is not one this log has signed with")
    for (key, until), successor in zip(chain, keys[1:], strict=True):
        note = handovers.get(until)
        if note is None:
            raise AuditProofError("broken_handover", f"no handover checkpoint at size {until}")
        try:
            open_log_checkpoint(note, key)
            open_log_checkpoint(note, successor)
        except AuditProofError as exc:
            raise AuditProofError("broken_handover", f"the rotation at size {until} is not signed by both keys: "
                                                     f"{exc}") from exc
    return chain


def verify_inclusion(leaf: str | bytes, leaf_index: int, hashes: Sequence[str], checkpoint: str,
                     log_key: str, witness_keys: Sequence[str] = ()) -> Checkpoint:
    """Check that `leaf` is entry `leaf_index` of the log in a checkpoint the log signed.

    The tree size is the checkpoint's: a proof can only be checked against a size the log signed.
    Returns the opened checkpoint; raises AuditProofError.
    """
    cp = open_log_checkpoint(checkpoint, log_key, witness_keys)
    try:
        merkle.verify_inclusion(leaf_hash(leaf), leaf_index, cp.size, _hashes(hashes), cp.root_hash)
    except merkle.ProofError as exc:
        raise AuditProofError(exc.reason, str(exc)) from exc
    return cp


def check_consistency(old: Checkpoint, new: Checkpoint, hashes: Sequence[str]) -> None:
    """Check that opened checkpoint `new` extends opened checkpoint `old`. Raises AuditProofError."""
    try:
        _verify_consistency(old, new, _hashes(hashes))
    except (merkle.ProofError, CheckpointError) as exc:
        raise AuditProofError(exc.reason, str(exc)) from exc


def verify_consistency(old_checkpoint: str, checkpoint: str, hashes: Sequence[str], log_key: str,
                       witness_keys: Sequence[str] = (), *, old_log_key: str | None = None
                       ) -> tuple[Checkpoint, Checkpoint]:
    """Check that the log of `checkpoint` extends the log of `old_checkpoint` (same origin; the
    old one signed by `old_log_key` when the log's key was rotated in between)."""
    old = open_log_checkpoint(old_checkpoint, old_log_key or log_key, witness_keys)
    new = open_log_checkpoint(checkpoint, log_key, witness_keys)
    check_consistency(old, new, hashes)
    return old, new


class AuditClient:
    """The audit routes of one tenant, over a signed bus connection (operator, orchestrator or agent)."""

    def __init__(self, bus: Bus, tenant: str, *, timeout: float = 5.0) -> None:
        self.bus = bus
        self.tenant = tenant
        self.timeout = timeout

    async def _ask(self, route: sub.Route[Any, Any], body: Any) -> Any:
        return await self.bus.request(route, self.tenant, body, timeout=self.timeout)

    async def checkpoint(self, size: int | None = None) -> au.CheckpointRecord:
        return await self._ask(sub.AUDIT_CHECKPOINT, au.GetCheckpoint(size=size))

    async def keys(self, pinned: str) -> tuple[str, list[tuple[str, int]]]:
        """The log's current key and its retired keys, trusted from `pinned` (see follow_key_chain):
        what to call again when a checkpoint is signed by a key you do not know yet."""
        head = await self.checkpoint()
        retired = [(r.key, r.until_size) for r in head.retired_log_keys]
        handovers = {n: (await self.checkpoint(n)).checkpoint.note for _, n in retired if n > 0}
        return head.log_public_key, follow_key_chain(pinned, head.log_public_key, retired, handovers)

    async def checkpoints(self) -> au.CheckpointList:
        """Every checkpoint (all pages) with the log's keys."""
        page = await self._ask(sub.AUDIT_CHECKPOINTS, au.ListCheckpoints(limit=500))
        found = list(page.checkpoints)
        while page.next_after is not None:
            page = await self._ask(sub.AUDIT_CHECKPOINTS, au.ListCheckpoints(after=page.next_after, limit=500))
            found.extend(page.checkpoints)
        return au.CheckpointList(origin=page.origin, log_public_key=page.log_public_key,
                                 witness_keys=page.witness_keys, checkpoints=found,
                                 retired_log_keys=page.retired_log_keys)

    async def proof(self, seq: int, tree_size: int | None = None) -> au.InclusionProof:
        return await self._ask(sub.AUDIT_PROOF, au.GetInclusionProof(seq=seq, tree_size=tree_size))

    async def consistency(self, first: int, second: int | None = None) -> au.ConsistencyProof:
        return await self._ask(sub.AUDIT_CONSISTENCY, au.GetConsistencyProof(first=first, second=second))

    async def query(self, **filters: Any) -> au.QueryPage:
        return await self._ask(sub.AUDIT_QUERY, au.QueryLog(**filters))

    async def events_published(self) -> int:
        """How many events of this tenant the stream holds (needs JetStream API access)."""
        info = await self.bus.js.stream_info(stream_name(self.bus.root),
                                             subjects_filter=f"{self.bus.root}.v1.{self.tenant}.evt.>")
        return sum((info.state.subjects or {}).values())

    async def caught_up(self, *, timeout: float = 30.0, interval: float = 0.1) -> au.CheckpointRecord:
        """Wait until a signed checkpoint covers every event of the tenant published so far, and
        return it. Polls `audit.checkpoint` until `timeout` (then raises Unavailable)."""
        expected = await self.events_published()
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while True:
            try:
                record = await self.checkpoint()
                if record.checkpoint.size >= expected:
                    return record
            except NotFound:
                pass
            if loop.time() > deadline:
                raise Unavailable(f"the audit log did not reach {expected} entries in {timeout:.0f}s")
            await asyncio.sleep(interval)

    async def entries(self, **filters: Any) -> AsyncIterator[au.AuditEntry]:
        """Every matching entry, page after page."""
        filters.setdefault("limit", 500)
        while True:
            page = await self.query(**filters)
            for entry in page.entries:
                yield entry
            if page.next_after is None:
                return
            filters["after"] = page.next_after
