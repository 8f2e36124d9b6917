"""The demo's audit step: every event of the story, in a log anyone can check (DESIGN section 9).

`audit_step(ctx)` waits until a signed checkpoint covers every event the demo tenant has published
so far, then reports the checkpoint, the log's verifier key, every entry with its inclusion proof
against that checkpoint, and a consistency proof from the first checkpoint the log signed. It
checks them all itself before reporting them, with the same offline code `agentid audit verify`
uses; the e2e tests check them again with independent implementations.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from agentid.audit import AuditClient, verify_consistency, verify_inclusion

if TYPE_CHECKING:
    from agentid.demo import DemoContext


async def audit_step(ctx: DemoContext) -> None:
    tenant = ctx.report["tenant"]
    client = AuditClient(ctx.operator, tenant)
    head = await client.caught_up(timeout=30)
    checkpoint = head.checkpoint
    entries = []
    async for entry in client.entries():
        if entry.seq >= checkpoint.size:
            break
        entries.append(entry)
    proofs = [await client.proof(entry.seq, checkpoint.size) for entry in entries]
    listing = await client.checkpoints()
    # The log signs its first checkpoint at its first entry: the natural "before" of the story.
    old = next((c for c in listing.checkpoints if c.size < checkpoint.size), checkpoint)
    consistency = await client.consistency(old.size, checkpoint.size)

    for entry, proof in zip(entries, proofs):
        verify_inclusion(entry.leaf, entry.seq, proof.hashes, checkpoint.note, head.log_public_key)
    verify_consistency(consistency.old_checkpoint, consistency.checkpoint, consistency.hashes, head.log_public_key)

    report: dict[str, Any] = {
        "checkpoint": checkpoint.note,
        "log_public_key": head.log_public_key,
        "entries": [{"index": e.seq, "leaf": e.leaf} for e in entries],
        "inclusion_proofs": [{"leaf_index": p.leaf_index, "tree_size": p.tree_size, "hashes": list(p.hashes)}
                             for p in proofs],
        "old_checkpoint": consistency.old_checkpoint,
        "consistency_proof": {"first": consistency.first, "second": consistency.second,
                              "hashes": list(consistency.hashes)},
    }
    ctx.report["audit"] = report
    events = sorted({_event(e.leaf) for e in entries})
    ctx.say(f"Audit log {head.origin}: {len(entries)} entries ({', '.join(events)})\n"
            f"  checkpoint at size {checkpoint.size} signed by {head.log_public_key}\n"
            f"  every entry's inclusion proven; the log at {old.size} is consistent with it at {checkpoint.size}")


def _event(leaf: str) -> str:
    import json

    return str(json.loads(leaf).get("event"))
