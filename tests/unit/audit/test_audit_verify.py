"""Whole-log verification, offline: it passes a sound log and names the first entry of a damaged one."""

from __future__ import annotations

import base64
import copy
import itertools

import pytest
from cryptography.hazmat.primitives.asymmetric import ed25519
from hypothesis import given, settings
from hypothesis import strategies as st

from agentid.audit import (
    AuditProofError,
    open_log_checkpoint,
    verify_consistency,
    verify_inclusion,
)
from agentid.audit_log import (
    FORMAT,
    CheckpointLine,
    ConsistencyLine,
    EntryLine,
    ExportError,
    LogExport,
    LogLine,
    verify_log,
)
from shared import merkle
from shared import signed_note as sn
from shared.canonical import canonical_json
from shared.checkpoint import Checkpoint, sign_checkpoint

ORIGIN = "audit.example/agentid/acme"
LOG = sn.Signer(ORIGIN, ed25519.Ed25519PrivateKey.generate())
WITNESS = sn.CosignatureSigner("witness.example", ed25519.Ed25519PrivateKey.generate(), clock=lambda: 1_700_000_000)
LOG_KEY = LOG.verifier_key_string()
WITNESS_KEY = WITNESS.verifier_key_string()


def _b64(raw: bytes) -> str:
    return base64.b64encode(raw).decode()


def _leaf(seq: int, tenant: str = "acme") -> str:
    return canonical_json({"v": 1, "seq": seq, "tenant": tenant, "event": "agent.registered",
                           "subject": {"type": "agent", "id": f"agt_{seq}"}}).decode()


def make_log(n: int, sizes: list[int], *, witness: bool = False, signer: sn.Signer = LOG) -> LogExport:
    leaves = [_leaf(i) for i in range(n)]
    tree = merkle.MemoryTree.from_leaves([leaf.encode() for leaf in leaves])
    export = LogExport(LogLine(format=FORMAT, tenant="acme", origin=ORIGIN, log_public_key=LOG_KEY,
                               witness_keys=[WITNESS_KEY] if witness else []))
    export.entries = [EntryLine(seq=i, leaf=leaf, leaf_hash=_b64(merkle.leaf_hash(leaf.encode())))
                      for i, leaf in enumerate(leaves)]
    for size in sizes:
        note = sign_checkpoint(Checkpoint(ORIGIN, size, tree.root(size)), signer)
        if witness:
            note = sn.add_signature(note, WITNESS, [signer.verifier()])
        export.checkpoints.append(CheckpointLine(size=size, root_hash=_b64(tree.root(size)), note=note))
    for a, b in itertools.pairwise(sizes):
        export.consistency.append(ConsistencyLine(first=a, second=b, hashes=[_b64(h) for h in tree.consistency_proof(a, b)]))
    return export


def _kinds(report) -> list[str]:  # type: ignore[no-untyped-def]
    return [p.kind for p in report.problems]


def test_a_sound_log_verifies_and_survives_its_export_file() -> None:
    export = make_log(40, [1, 7, 16, 33, 40])
    report = verify_log(export, log_key=LOG_KEY)
    assert report.ok and report.entries == 40 and report.checkpoints_verified == 5
    assert report.consistency_verified == 4 and not report.warnings
    again = LogExport.parse(list(export.lines()))
    assert again == export and verify_log(again, log_key=LOG_KEY).ok


def test_an_edited_leaf_is_named() -> None:
    export = make_log(40, [1, 16, 33, 40])
    export.entries[20].leaf = export.entries[20].leaf.replace("agt_20", "agt_99")
    report = verify_log(export, log_key=LOG_KEY)
    assert report.first_bad_entry == 20 and report.problems[0].kind == "leaf_edited"
    assert "root_mismatch" in _kinds(report)  # the signed roots catch it too


def test_an_edited_leaf_with_its_hash_rewritten_is_caught_by_the_signed_roots() -> None:
    export = make_log(40, [1, 16, 33, 40])
    leaf = export.entries[20].leaf.replace("agt_20", "agt_99")
    export.entries[20] = EntryLine(seq=20, leaf=leaf, leaf_hash=_b64(merkle.leaf_hash(leaf.encode())))
    report = verify_log(export, log_key=LOG_KEY)
    assert not report.ok and report.first_bad_entry is None
    assert report.problems[0].kind == "root_mismatch"
    assert "an entry from 16 to 32 was changed" in report.problems[0].message


def test_a_deleted_entry_is_named() -> None:
    export = make_log(40, [1, 16, 40])
    del export.entries[9]
    report = verify_log(export, log_key=LOG_KEY)
    assert report.first_bad_entry == 9 and report.problems[0].kind == "missing"
    assert "entry 9 is missing" in report.problems[0].message


def test_deleted_last_entries_are_named_by_the_checkpoint_that_covered_them() -> None:
    export = make_log(40, [1, 16, 40])
    del export.entries[37:]
    report = verify_log(export, log_key=LOG_KEY)
    assert report.first_bad_entry == 37 and report.problems[0].kind == "truncated"


def test_a_renumbered_log_is_named() -> None:
    export = make_log(20, [1, 20])
    del export.entries[5]
    for entry in export.entries[5:]:
        entry.seq -= 1  # a careful deleter closes the gap
    report = verify_log(export, log_key=LOG_KEY)
    assert report.first_bad_entry == 5 and report.problems[0].kind == "wrong_seq"


def test_an_entry_of_another_tenant_is_named() -> None:
    export = make_log(10, [1, 10])
    leaf = _leaf(4, tenant="other")
    export.entries[4] = EntryLine(seq=4, leaf=leaf, leaf_hash=_b64(merkle.leaf_hash(leaf.encode())))
    assert verify_log(export, log_key=LOG_KEY).problems[0].kind == "wrong_tenant"


def test_checkpoints_must_be_signed_by_the_pinned_key() -> None:
    export = make_log(10, [1, 10])
    impostor = sn.Signer(ORIGIN, ed25519.Ed25519PrivateKey.generate())
    assert _kinds(verify_log(export, log_key=impostor.verifier_key_string())) == ["bad_log_key"]
    forged = make_log(10, [1, 10], signer=impostor)
    assert "bad_checkpoint" in _kinds(verify_log(forged, log_key=LOG_KEY))
    # Trusting the export's own key proves only self-consistency, and says so.
    report = verify_log(forged)
    assert not report.ok and any("not pinned" in w for w in report.warnings)


def test_a_tampered_checkpoint_is_refused() -> None:
    export = make_log(10, [1, 10])
    cp = export.checkpoints[1]
    cp.note = cp.note.replace("\n10\n", "\n11\n", 1)
    report = verify_log(export, log_key=LOG_KEY)
    assert report.problems and report.problems[0].kind == "bad_checkpoint"


def test_a_bad_consistency_proof_is_refused() -> None:
    export = make_log(30, [3, 17, 30])
    proof = export.consistency[0]
    proof.hashes[0] = _b64(b"\x00" * 32)
    assert _kinds(verify_log(export, log_key=LOG_KEY)) == ["inconsistent"]


def test_witness_cosignatures_verify_and_a_tampered_text_fails() -> None:
    export = make_log(12, [1, 12], witness=True)
    assert verify_log(export, log_key=LOG_KEY, witness_keys=[WITNESS_KEY]).ok
    note = export.checkpoints[1].note
    cp = open_log_checkpoint(note, LOG_KEY, [WITNESS_KEY])
    assert cp.size == 12
    # The witness's line alone, on a text it did not cosign, fails (and so does the log's).
    text, _, sigs = note.partition("\n\n")
    tampered = text.replace("\n12\n", "\n13\n") + "\n\n" + sigs
    with pytest.raises(AuditProofError):
        open_log_checkpoint(tampered, LOG_KEY, [WITNESS_KEY])
    witness_only = text + "\n\n" + next(line for line in sigs.splitlines() if "witness.example" in line) + "\n"
    witness_only_tampered = witness_only.replace("\n12\n", "\n13\n")
    with pytest.raises(sn.NoteError):
        sn.open_note(witness_only_tampered, [WITNESS.verifier()])
    assert sn.open_note(witness_only, [WITNESS.verifier()]).signers == ["witness.example"]


def test_a_required_witness_must_have_cosigned_every_checkpoint() -> None:
    export = make_log(12, [1, 12])
    report = verify_log(export, log_key=LOG_KEY, witness_keys=[WITNESS_KEY])
    assert _kinds(report) == ["bad_checkpoint", "bad_checkpoint"]
    assert "witness_missing" in report.problems[0].message
    # A witness the log names but that did not cosign an old checkpoint is only worth a warning.
    export.header.witness_keys = [WITNESS_KEY]
    report = verify_log(export, log_key=LOG_KEY)
    assert report.ok and any("no cosignature" in w for w in report.warnings)


def test_inclusion_and_consistency_helpers_refuse_any_change() -> None:
    export = make_log(21, [5, 21])
    tree = merkle.MemoryTree.from_leaves([e.leaf.encode() for e in export.entries])
    note = export.checkpoints[1].note
    hashes = [_b64(h) for h in tree.inclusion_proof(7, 21)]
    assert verify_inclusion(export.entries[7].leaf, 7, hashes, note, LOG_KEY).size == 21
    for leaf, index, proof in [(export.entries[8].leaf, 7, hashes), (export.entries[7].leaf, 8, hashes),
                               (export.entries[7].leaf, 7, hashes[:-1]), (export.entries[7].leaf, 7, ["!!"] + hashes[1:])]:
        with pytest.raises(AuditProofError):
            verify_inclusion(leaf, index, proof, note, LOG_KEY)
    old = export.checkpoints[0].note
    good = [_b64(h) for h in tree.consistency_proof(5, 21)]
    verify_consistency(old, note, good, LOG_KEY)
    with pytest.raises(AuditProofError):
        verify_consistency(old, note, good[1:], LOG_KEY)
    with pytest.raises(AuditProofError):
        verify_consistency(old, note, good, WITNESS_KEY)  # a cosigner key is not a log key


@pytest.mark.parametrize("lines", [
    [],
    ['{"type": "entry", "seq": 0, "leaf": "x"}'],
    [f'{{"type": "log", "format": "{FORMAT}", "tenant": "a", "origin": "o", "log_public_key": "k", "extra": 1}}'],
    ['{"type": "log", "format": "other/v9", "tenant": "a", "origin": "o", "log_public_key": "k"}'],
    [f'{{"type": "log", "format": "{FORMAT}", "tenant": "a", "origin": "o", "log_public_key": "k"}}', "not json"],
    [f'{{"type": "log", "format": "{FORMAT}", "tenant": "a", "origin": "o", "log_public_key": "k"}}',
     '{"type": "entry", "seq": "zero", "leaf": "x"}'],
])
def test_malformed_export_files_are_refused(lines: list[str]) -> None:
    with pytest.raises(ExportError):
        LogExport.parse(lines)


@st.composite
def damage(draw: st.DrawFn) -> tuple[int, int, str]:
    n = draw(st.integers(min_value=2, max_value=120))
    return n, draw(st.integers(min_value=0, max_value=n - 2)), draw(st.sampled_from(["edit", "delete", "swap"]))


@settings(max_examples=60, deadline=None)
@given(damage())
def test_any_single_damage_names_the_first_entry_it_touched(case: tuple[int, int, str]) -> None:
    n, k, how = case
    sizes = sorted({1, n // 3 or 1, n // 2 or 1, n})
    export = copy.deepcopy(make_log(n, sizes))
    if how == "edit":
        export.entries[k].leaf = export.entries[k].leaf.replace(f'"agt_{k}"', '"agt_x"')
    elif how == "delete":
        del export.entries[k]
    else:
        a, b = export.entries[k], export.entries[k + 1]
        export.entries[k] = EntryLine(seq=k, leaf=b.leaf, leaf_hash=b.leaf_hash)
        export.entries[k + 1] = EntryLine(seq=k + 1, leaf=a.leaf, leaf_hash=a.leaf_hash)
    report = verify_log(export, log_key=LOG_KEY)
    assert report.first_bad_entry == k, report.problems
