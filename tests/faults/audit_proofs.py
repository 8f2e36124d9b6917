"""The tenant's audit log after the faults, checked only through the audit routes.

Everything the log serves (every entry, every signed checkpoint, the consistency proof between
each pair of consecutive checkpoints) is fetched and verified against the log key pinned before
the faults began: the entries rebuild every signed root, and the checkpoints form one append-only
history. Inclusion proofs for a spread of entries, and a consistency proof from the first
checkpoint to the last, are checked the way an auditor would check them.
"""

from __future__ import annotations

from typing import Any

from agentid.audit import AuditClient, verify_consistency, verify_inclusion
from agentid.audit_log import fetch, verify_log

PROOF_SAMPLE = 40


async def verify_audit_log(client: AuditClient, pinned_key: str) -> dict[str, Any]:
    export = await fetch(client)
    report = verify_log(export, log_key=pinned_key)
    assert report.ok, [f"{p.kind}: {p.message}" for p in report.problems]
    latest = export.checkpoints[-1]
    assert latest.size == report.entries, "the latest checkpoint covers every entry"
    leaves = {e.seq: e.leaf for e in export.entries}

    n = report.entries
    sample = sorted({0, n - 1, *(i * n // PROOF_SAMPLE for i in range(PROOF_SAMPLE))})
    for seq in sample:
        inclusion = await client.proof(seq, tree_size=latest.size)
        assert inclusion.leaf == leaves[seq]
        verify_inclusion(inclusion.leaf, inclusion.leaf_index, inclusion.hashes, inclusion.checkpoint, pinned_key)

    first = export.checkpoints[0]
    if first.size < latest.size:
        consistency = await client.consistency(first.size, latest.size)
        verify_consistency(consistency.old_checkpoint, consistency.checkpoint, consistency.hashes, pinned_key)
    return {"entries": report.entries, "checkpoints_verified": report.checkpoints_verified,
            "consistency_proofs_verified": report.consistency_verified + (first.size < latest.size),
            "inclusion_proofs_verified": len(sample)}
