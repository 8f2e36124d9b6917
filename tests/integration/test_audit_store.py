"""The Merkle log as Postgres holds it: proofs from the node table equal the in-memory reference
for random sizes and fail on any change; an append happens once."""

from __future__ import annotations

import random
import secrets

import asyncpg
import pytest

from services.audit import store
from services.audit.describe import Facts
from services.audit.leaf import Observed
from services.audit.log import AuditLog
from services.audit.signing import LogKeys
from shared import merkle
from tests.helpers import Harness

pytestmark = pytest.mark.integration

RNG = random.Random(9162)
SIZES = [1, 2, 3, 4, 5, 7, 8, 9, 16, 17, 31, 32, 33, 63, 64, 65, 128, 129] + [RNG.randint(130, 700) for _ in range(6)]


def _flip(value: bytes) -> bytes:
    return bytes([value[0] ^ 1]) + value[1:]


async def _store_tree(conn: asyncpg.Connection, log: str, hashes: list[bytes], rng: random.Random) -> None:
    """Append in random batches, each in its own transaction, as the worker does."""
    pos = 0
    while pos < len(hashes):
        batch = hashes[pos:pos + rng.randint(1, 40)]
        async with conn.transaction():
            done = await merkle.append_leaves_async(pos, batch, store.node_reader(conn, log))
            await store.insert_nodes(conn, log, done.nodes)
        pos += len(batch)


@pytest.mark.parametrize("n", SIZES)
async def test_postgres_proofs_equal_the_reference_and_refuse_any_change(harness: Harness, n: int) -> None:
    rng = random.Random(n)
    log = f"prop_{secrets.token_hex(4)}"
    leaves = [f"entry {i}".encode() for i in range(n)]
    hashes = [merkle.leaf_hash(leaf) for leaf in leaves]
    reference = merkle.MemoryTree.from_leaves(leaves)
    async with harness.db.acquire() as conn:
        await _store_tree(conn, log, hashes, rng)
        # A second append at a place already written is refused, never silently merged.
        with pytest.raises(asyncpg.UniqueViolationError):
            async with conn.transaction():
                done = await merkle.append_leaves_async(n - 1, [hashes[-1]], store.node_reader(conn, log))
                await store.insert_nodes(conn, log, done.nodes)
    reader = store.node_reader(harness.db, log)
    try:
        assert await merkle.root_from_store_async(n, reader) == reference.root()
        for _ in range(6):
            size = rng.randint(1, n)
            index = rng.randrange(size)
            root = reference.root(size)
            proof = await merkle.inclusion_proof_async(index, size, reader)
            assert proof == reference.inclusion_proof(index, size)
            merkle.verify_inclusion(hashes[index], index, size, proof, root)
            # A changed size comes with that size's root: clients check a proof against a checkpoint.
            other_sizes = [m for m in (size - 1, size + 1) if index < m <= n]
            for args in [(_flip(hashes[index]), index, size, proof, root),
                         (hashes[index], index ^ 1 if size > 1 else index + 1, size, proof, root),
                         (hashes[index], index, size, proof, _flip(root))] + \
                        [(hashes[index], index, m, proof, reference.root(m)) for m in other_sizes] + \
                        [(hashes[index], index, size, proof[:i] + [_flip(proof[i])] + proof[i + 1:], root)
                         for i in range(len(proof))]:
                with pytest.raises(merkle.ProofError):
                    merkle.verify_inclusion(*args)
            first = rng.randint(1, size)
            consistency = await merkle.consistency_proof_async(first, size, reader)
            assert consistency == reference.consistency_proof(first, size)
            old = reference.root(first)
            merkle.verify_consistency(first, size, old, root, consistency)
            for bad in [(first, size, _flip(old), root, consistency), (first, size, old, _flip(root), consistency)] + \
                       [(first, size, old, root, consistency[:i] + [_flip(consistency[i])] + consistency[i + 1:])
                        for i in range(len(consistency))]:
                with pytest.raises(merkle.ProofError):
                    merkle.verify_consistency(*bad)
            if first < size - 1:
                with pytest.raises(merkle.ProofError):
                    merkle.verify_consistency(first + 1, size, reference.root(first + 1), root, consistency)
    finally:
        await harness.db.execute("DELETE FROM audit.nodes WHERE log = $1", log)


async def test_appending_a_message_twice_logs_it_once(harness: Harness) -> None:
    assert harness.keyring.kek is not None
    audit_log = AuditLog(harness.db, LogKeys(harness.keyring.kek, "https://audit.example"), checkpoint_every=1000)
    log = f"tonce{secrets.token_hex(4)}"

    def observed(i: int) -> Observed:
        return Observed(subject=f"agentid.v1.{log}.evt.tenant.created", tenant=log, event="tenant.created",
                        msg_id=f"m{i}", time_ms=1_700_000_000_000 + i, actor={"id": "x"}, verified=True, reasons=(),
                        trace_id=None, event_digest="sha256:00", dedup_key=bytes([i]) * 32, facts=Facts(subject={}))

    first = await audit_log.append(log, [observed(1), observed(2), observed(1)])
    again = await audit_log.append(log, [observed(2), observed(3), observed(1)])
    assert first == {bytes([1]) * 32: 0, bytes([2]) * 32: 1}
    assert again == {bytes([1]) * 32: 0, bytes([2]) * 32: 1, bytes([3]) * 32: 2}
    head = await store.get_log(harness.db, log)
    assert head is not None and head["size"] == 3 and head["checkpoint_size"] == 2  # first append signs at once
    assert bytes(head["root"]) == await merkle.root_from_store_async(3, store.node_reader(harness.db, log))
    assert await audit_log.checkpoint_due(0.0) >= 1
    assert (await store.get_checkpoint(harness.db, log, None))["size"] == 3  # type: ignore[index]
