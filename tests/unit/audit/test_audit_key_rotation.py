"""A log whose key was rotated: readers who pinned either key trust the whole chain through the
handover checkpoint signed by both, and a retired key cannot vouch for anything after it."""

from __future__ import annotations

import copy

import pytest
from cryptography.hazmat.primitives.asymmetric import ed25519

from agentid.audit import AuditProofError, follow_key_chain, open_with_keys
from agentid.audit_log import CheckpointLine, RetiredKey, verify_log
from shared import merkle
from shared import signed_note as sn
from shared.checkpoint import Checkpoint, sign_checkpoint
from tests.unit.audit.test_audit_verify import LOG, LOG_KEY, ORIGIN, make_log

NEW = sn.Signer(ORIGIN, ed25519.Ed25519PrivateKey.generate())
NEW_KEY = NEW.verifier_key_string()
HANDOVER = 16


def _rotated(n: int = 40, sizes: tuple[int, ...] = (1, 7, HANDOVER, 33, 40)):  # type: ignore[no-untyped-def]
    """Checkpoints up to the handover signed by the old key, the handover by both, later by the new."""
    export = make_log(n, list(sizes))
    tree = merkle.MemoryTree.from_leaves([e.leaf.encode() for e in export.entries])
    for cp in export.checkpoints:
        if cp.size == HANDOVER:
            cp.note = sn.add_signature(cp.note, NEW, [LOG.verifier()])
        elif cp.size > HANDOVER:
            cp.note = sign_checkpoint(Checkpoint(ORIGIN, cp.size, tree.root(cp.size)), NEW)
    export.header.log_public_key = NEW_KEY
    export.header.retired_log_keys = [RetiredKey(key=LOG_KEY, until_size=HANDOVER)]
    return export, tree


@pytest.mark.parametrize("pinned", [LOG_KEY, NEW_KEY])
def test_a_rotated_log_verifies_from_either_pinned_key(pinned: str) -> None:
    export, _ = _rotated()
    report = verify_log(export, log_key=pinned)
    assert report.ok, report.problems
    assert report.checkpoints_verified == 5 and report.consistency_verified == 4


def test_a_retired_key_cannot_sign_past_its_handover() -> None:
    export, tree = _rotated()
    forged = sign_checkpoint(Checkpoint(ORIGIN, 40, tree.root(40)), LOG)  # the old key, leaked
    export.checkpoints[-1] = CheckpointLine(size=40, root_hash=export.checkpoints[-1].root_hash, note=forged)
    report = verify_log(export, log_key=LOG_KEY)
    assert [p.kind for p in report.problems] == ["bad_checkpoint"]
    assert "retired_log_key" in report.problems[0].message
    with pytest.raises(AuditProofError) as refused:
        open_with_keys(forged, [NEW_KEY], [(LOG_KEY, HANDOVER)])
    assert refused.value.reason == "retired_log_key"


def test_a_handover_signed_by_one_key_only_breaks_the_chain() -> None:
    export, tree = _rotated()
    handover = next(cp for cp in export.checkpoints if cp.size == HANDOVER)
    handover.note = sign_checkpoint(Checkpoint(ORIGIN, HANDOVER, tree.root(HANDOVER)), LOG)
    for pinned in (LOG_KEY, NEW_KEY):
        report = verify_log(copy.deepcopy(export), log_key=pinned)
        assert [p.kind for p in report.problems] == ["broken_handover"]


def test_a_key_the_log_never_used_is_refused_as_the_pin() -> None:
    export, _ = _rotated()
    stranger = sn.Signer(ORIGIN, ed25519.Ed25519PrivateKey.generate()).verifier_key_string()
    assert [p.kind for p in verify_log(export, log_key=stranger).problems] == ["bad_log_key"]
    with pytest.raises(AuditProofError) as refused:
        follow_key_chain(stranger, NEW_KEY, [(LOG_KEY, HANDOVER)], {})
    assert refused.value.reason == "bad_log_key"


def test_a_missing_handover_checkpoint_breaks_the_chain() -> None:
    with pytest.raises(AuditProofError) as refused:
        follow_key_chain(LOG_KEY, NEW_KEY, [(LOG_KEY, HANDOVER)], {})
    assert refused.value.reason == "broken_handover"


def test_a_key_retired_before_it_signed_anything_is_left_out() -> None:
    unused = sn.Signer(ORIGIN, ed25519.Ed25519PrivateKey.generate()).verifier_key_string()
    assert follow_key_chain(LOG_KEY, NEW_KEY, [(unused, 0), (LOG_KEY, HANDOVER)],
                            {HANDOVER: _rotated()[0].checkpoints[2].note}) == [(LOG_KEY, HANDOVER)]
