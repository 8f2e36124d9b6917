"""RFC 9162 Merkle trees: SPECS vectors, a from-the-RFC reference, refusals and node-read counts."""

from __future__ import annotations

import functools
import hashlib
import math

import pytest
from collections.abc import Callable

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from shared import merkle
from shared.merkle import MemoryTree, MissingNode, ProofError, TreeRangeError

# ---- SPECS section 12 vectors ----------------------------------------------------------------

RFC_LEAVES = [
    bytes.fromhex(h)
    for h in (
        *("", "00", "10", "2021", "3031", "40414243"),
        *("5051525354555657", "606162636465666768696a6b6c6d6e6f"),
    )
]
RFC_ROOTS = [
    "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
    "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d",
    "fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125",
    "aeb6bcfe274b70a14fb067a5e5578264db0fa9b51af5e0ba159158f329e06e77",
    "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
    "4e3bbb1f7b478dcfe71fb631631519a3bca12c9aefca1612bfce4c13a86264d4",
    "76e67dadbcdf1e10e1b74ddc608abd2f98dfb16fbce75277b5232a127f2087ef",
    "ddb89be403809e325750d3d263cd78929c2942b7942a34b77e122c9594a74c8c",
    "5dc9da79a70659a9ad559cb701ded9a2ab9d823aad2f4960cfe370eff4604328",
]
INCLUSION_0_IN_8 = [
    "96a296d224f285c67bee93c30f8a309157f0daa35dc5b87e410b78630a09cfc7",
    "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
    "6b47aaf29ee3c2af9af889bc1fb9254dabd31177f16232dd6aab035ca39bf6e4",
]
CONSISTENCY_4_8 = ["6b47aaf29ee3c2af9af889bc1fb9254dabd31177f16232dd6aab035ca39bf6e4"]
CONSISTENCY_3_7 = [
    "0298d122906dcfc10892cb53a73992fc5b9f493ea4c9badb27b791b4127a7fe7",
    "07506a85fd9dd2f120eb694f86011e5bb4662e5c415a62917033d4a9624487e7",
    "fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125",
    "837dbb152e9b079010717e84e865da4ebc0fa198a806d59d31bf15accef22d0e",
]


def _hex(hashes: list[bytes]) -> list[str]:
    return [h.hex() for h in hashes]


def _b(hexes: list[str]) -> list[bytes]:
    return [bytes.fromhex(h) for h in hexes]


@pytest.fixture(scope="module")
def rfc_tree() -> MemoryTree:
    return MemoryTree.from_leaves(RFC_LEAVES)


def test_tree_heads_of_the_rfc_leaves(rfc_tree: MemoryTree) -> None:
    for n, expected in enumerate(RFC_ROOTS):
        assert rfc_tree.root(n).hex() == expected
        assert merkle.root([merkle.leaf_hash(d) for d in RFC_LEAVES[:n]]).hex() == expected
    assert merkle.EMPTY_ROOT.hex() == RFC_ROOTS[0]


def test_inclusion_vector(rfc_tree: MemoryTree) -> None:
    assert _hex(rfc_tree.inclusion_proof(0, 8)) == INCLUSION_0_IN_8
    merkle.verify_inclusion(
        merkle.leaf_hash(RFC_LEAVES[0]), 0, 8, _b(INCLUSION_0_IN_8), bytes.fromhex(RFC_ROOTS[8])
    )


def test_consistency_vectors(rfc_tree: MemoryTree) -> None:
    assert _hex(rfc_tree.consistency_proof(4, 8)) == CONSISTENCY_4_8
    assert _hex(rfc_tree.consistency_proof(3, 7)) == CONSISTENCY_3_7
    r = [bytes.fromhex(h) for h in RFC_ROOTS]
    merkle.verify_consistency(4, 8, r[4], r[8], _b(CONSISTENCY_4_8))
    merkle.verify_consistency(3, 7, r[3], r[7], _b(CONSISTENCY_3_7))


def test_the_shift_until_odd_step_is_needed() -> None:
    # 3 -> 7 is one of the cases where a verifier without the step rejects a valid proof.
    r = [bytes.fromhex(h) for h in RFC_ROOTS]
    merkle.verify_consistency(3, 7, r[3], r[7], _b(CONSISTENCY_3_7))
    with pytest.raises(ProofError):
        merkle.verify_consistency(3, 7, r[3], r[7], _b(CONSISTENCY_3_7[:3]))


# ---- a reference written straight from RFC 9162 2.1.1, 2.1.3.1 and 2.1.4.1 --------------------

N_MAX = 2000
LEAVES = [b"entry %d" % i for i in range(N_MAX)]
LEAF_HASHES = [merkle.leaf_hash(d) for d in LEAVES]
TREE = MemoryTree.from_leaves(LEAVES)  # one store serves every past size


def _k(n: int) -> int:
    k = 1
    while k * 2 < n:
        k *= 2
    return k


@functools.lru_cache(maxsize=None)
def ref_mth(a: int, b: int) -> bytes:
    n = b - a
    if n == 0:
        return hashlib.sha256(b"").digest()
    if n == 1:
        return LEAF_HASHES[a]
    k = _k(n)
    return hashlib.sha256(b"\x01" + ref_mth(a, a + k) + ref_mth(a + k, b)).digest()


def ref_path(m: int, a: int, b: int) -> list[bytes]:
    n = b - a
    if n == 1:
        return []
    k = _k(n)
    if m < k:
        return ref_path(m, a, a + k) + [ref_mth(a + k, b)]
    return ref_path(m - k, a + k, b) + [ref_mth(a, a + k)]


def ref_subproof(m: int, a: int, b: int, whole: bool) -> list[bytes]:
    n = b - a
    if m == n:
        return [] if whole else [ref_mth(a, b)]
    k = _k(n)
    if m <= k:
        return ref_subproof(m, a, a + k, whole) + [ref_mth(a + k, b)]
    return ref_subproof(m - k, a + k, b, False) + [ref_mth(a, a + k)]


sizes = st.integers(min_value=1, max_value=N_MAX)
PROPERTY = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@st.composite
def size_and_index(draw: st.DrawFn) -> tuple[int, int]:
    n = draw(sizes)
    return n, draw(st.integers(min_value=0, max_value=n - 1))


@st.composite
def two_sizes(draw: st.DrawFn) -> tuple[int, int]:
    n = draw(sizes)
    return draw(st.integers(min_value=1, max_value=n)), n


def _flip(h: bytes, bit: int) -> bytes:
    return bytes(b ^ (1 << (bit % 8)) if i == (bit // 8) % len(h) else b for i, b in enumerate(h))


def _refused(fn, *args) -> ProofError:  # type: ignore[no-untyped-def]
    with pytest.raises(ProofError) as info:
        fn(*args)
    return info.value


@PROPERTY
@given(st.integers(min_value=0, max_value=N_MAX))
def test_root_from_storage_equals_root_from_scratch(n: int) -> None:
    assert TREE.root(n) == ref_mth(0, n) == merkle.root(LEAF_HASHES[:n])


@PROPERTY
@given(size_and_index())
def test_inclusion_proofs_match_the_rfc_and_verify(case: tuple[int, int]) -> None:
    n, i = case
    proof = TREE.inclusion_proof(i, n)
    assert proof == ref_path(i, 0, n)
    merkle.verify_inclusion(LEAF_HASHES[i], i, n, proof, ref_mth(0, n))


@PROPERTY
@given(two_sizes())
def test_consistency_proofs_match_the_rfc_and_verify(case: tuple[int, int]) -> None:
    m, n = case
    proof = TREE.consistency_proof(m, n)
    assert proof == (ref_subproof(m, 0, n, True) if m < n else [])
    merkle.verify_consistency(m, n, ref_mth(0, m), ref_mth(0, n), proof)


@PROPERTY
@given(size_and_index(), st.data())
def test_inclusion_refuses_every_single_change(case: tuple[int, int], data: st.DataObject) -> None:
    n, i = case
    leaf, root, proof = LEAF_HASHES[i], ref_mth(0, n), TREE.inclusion_proof(i, n)
    v = merkle.verify_inclusion
    for j in range(len(proof)):
        bit = data.draw(st.integers(0, 255), label=f"bit{j}")
        changed = proof[:j] + [_flip(proof[j], bit)] + proof[j + 1 :]
        assert _refused(v, leaf, i, n, changed, root).reason == "root_mismatch"
    _refused(v, leaf, i, n, proof + [hashlib.sha256(b"extra").digest()], root)
    if proof:
        _refused(v, leaf, i, n, proof[:-1], root)
        _refused(v, leaf, i, n, proof[1:], root)
    _refused(v, leaf, i, n, proof, _flip(root, data.draw(st.integers(0, 255), label="root bit")))
    _refused(v, _flip(leaf, 3), i, n, proof, root)
    if n > 1:
        # The index is bound by the proof's left/right pattern: any other index fails.
        other = data.draw(st.integers(0, n - 2), label="other index")
        _refused(v, leaf, other + (other >= i), n, proof, root)
    _refused(v, leaf, n, n, proof, root)
    # Another size, paired with that size's real root as a signed checkpoint would pair them.
    other_n = data.draw(st.integers(i + 1, N_MAX).filter(lambda x: x != n), label="other size")
    _refused(v, leaf, i, other_n, proof, ref_mth(0, other_n))
    _size_change_keeping_root_is_harmless(lambda size: v(leaf, i, size, proof, root), n, other_n)


def _size_change_keeping_root_is_harmless(check: Callable[[int], None], n: int, other_n: int) -> None:
    # A proof binds the root; the size is bound to the root by the signed checkpoint. When a
    # claimed size walks the same path (see the test below) the check passes, and then the
    # claimed (size, root) pair is one the log never had, so no valid checkpoint can carry it.
    try:
        check(other_n)
    except ProofError:
        return
    assert ref_mth(0, other_n) != ref_mth(0, n)


def test_a_size_with_the_same_path_shape_verifies_only_with_a_root_no_checkpoint_has() -> None:
    # Leaf 0 of size 3 and of size 4 are both reached by [leaf 1, right subtree]: the RFC
    # algorithm cannot tell the sizes apart, which is why clients verify against a checkpoint.
    proof = TREE.inclusion_proof(0, 3)
    merkle.verify_inclusion(LEAF_HASHES[0], 0, 4, proof, ref_mth(0, 3))
    _refused(merkle.verify_inclusion, LEAF_HASHES[0], 0, 4, proof, ref_mth(0, 4))


@PROPERTY
@given(two_sizes(), st.data())
def test_consistency_refuses_every_single_change(case: tuple[int, int], data: st.DataObject) -> None:
    m, n = case
    r1, r2, proof = ref_mth(0, m), ref_mth(0, n), TREE.consistency_proof(m, n)
    v = merkle.verify_consistency
    for j in range(len(proof)):
        bit = data.draw(st.integers(0, 255), label=f"bit{j}")
        _refused(v, m, n, r1, r2, proof[:j] + [_flip(proof[j], bit)] + proof[j + 1 :])
    _refused(v, m, n, r1, r2, proof + [hashlib.sha256(b"extra").digest()])
    if proof:
        _refused(v, m, n, r1, r2, proof[:-1])
        _refused(v, m, n, r1, r2, proof[1:])
    _refused(v, m, n, _flip(r1, 7), r2, proof)
    _refused(v, m, n, r1, _flip(r2, 7), proof)
    other_m = data.draw(st.integers(1, n).filter(lambda x: x != m), label="other first") if n > 1 else None
    if other_m is not None:
        _refused(v, other_m, n, ref_mth(0, other_m), r2, proof)
        _size_change_keeping_root_is_harmless(lambda size: v(size, n, r1, r2, proof), m, other_m)
    other_n = data.draw(st.integers(m, N_MAX).filter(lambda x: x != n), label="other second")
    _refused(v, m, other_n, r1, ref_mth(0, other_n), proof)
    _size_change_keeping_root_is_harmless(lambda size: v(m, size, r1, r2, proof), n, other_n)


# ---- edge cases and argument refusals --------------------------------------------------------

H = hashlib.sha256(b"h").digest()


def test_consistency_edge_cases() -> None:
    r5 = ref_mth(0, 5)
    merkle.verify_consistency(5, 5, r5, r5, [])
    assert _refused(merkle.verify_consistency, 5, 5, r5, ref_mth(0, 6), []).reason == "root_mismatch"
    assert _refused(merkle.verify_consistency, 5, 5, r5, r5, [H]).reason == "proof_too_long"
    merkle.verify_consistency(0, 5, merkle.EMPTY_ROOT, r5, [])
    merkle.verify_consistency(0, 0, merkle.EMPTY_ROOT, merkle.EMPTY_ROOT, [])
    assert _refused(merkle.verify_consistency, 0, 5, H, r5, []).reason == "first_root_mismatch"
    assert _refused(merkle.verify_consistency, 0, 5, merkle.EMPTY_ROOT, r5, [H]).reason == "proof_too_long"
    assert _refused(merkle.verify_consistency, 3, 5, ref_mth(0, 3), r5, []).reason == "proof_too_short"
    assert _refused(merkle.verify_consistency, 6, 5, r5, r5, [H]).reason == "size_order"
    assert TREE.consistency_proof(0, 9) == [] and TREE.consistency_proof(9, 9) == []


def test_inclusion_edge_cases() -> None:
    merkle.verify_inclusion(LEAF_HASHES[0], 0, 1, [], LEAF_HASHES[0])
    one = LEAF_HASHES[0]
    assert _refused(merkle.verify_inclusion, one, 0, 1, [H], one).reason == "proof_too_long"
    assert _refused(merkle.verify_inclusion, H, 1, 1, [], H).reason == "index_out_of_range"
    assert _refused(merkle.verify_inclusion, H, 0, 0, [], H).reason == "index_out_of_range"
    assert _refused(merkle.verify_inclusion, H, 0, 2, [], H).reason == "proof_too_short"


@pytest.mark.parametrize(
    ("args", "reason"),
    [
        ((H, -1, 4, [H, H], H), "bad_argument"),
        ((H, True, 4, [H, H], H), "bad_argument"),
        ((H, 0, 2**63, [H], H), "bad_argument"),
        ((H, 0, 4.0, [H, H], H), "bad_argument"),
        ((H[:31], 0, 2, [H], H), "bad_hash"),
        ((H, 0, 2, [H], H + b"\x00"), "bad_hash"),
        ((H, 0, 2, [H[:16]], H), "bad_hash"),
        ((H, 0, 2, ["00" * 32], H), "bad_hash"),
        ((H, 0, 2, H, H), "bad_argument"),
        ((H, 0, 2**63 - 1, [H] * 65, H), "proof_too_long"),
    ],
)
def test_inclusion_refuses_bad_arguments(args: tuple, reason: str) -> None:
    assert _refused(merkle.verify_inclusion, *args).reason == reason


@pytest.mark.parametrize(
    ("args", "reason"),
    [
        ((-1, 4, H, H, [H]), "bad_argument"),
        ((1, 2**63, H, H, [H]), "bad_argument"),
        ((1, False, H, H, [H]), "bad_argument"),
        ((1, 4, H[:1], H, [H]), "bad_hash"),
        ((1, 4, H, H, [b""]), "bad_hash"),
        ((1, 2**62, H, H, [H] * 65), "proof_too_long"),
        ((1, 4, H, H, (h for h in [H])), "bad_argument"),
    ],
)
def test_consistency_refuses_bad_arguments(args: tuple, reason: str) -> None:
    assert _refused(merkle.verify_consistency, *args).reason == reason


def test_proofs_are_bounded_at_the_largest_size() -> None:
    n = merkle.MAX_TREE_SIZE
    assert len(merkle.nodes_for_root(n)) == 63
    for i in (0, 1, n // 2, n - 1):
        assert len(merkle._inclusion_ranges(i, n)) <= merkle.MAX_PROOF_HASHES
    for m in (1, 3, 2**62 + 1, n - 1):
        assert len(merkle._consistency_ranges(m, n)) <= merkle.MAX_PROOF_HASHES


@pytest.mark.parametrize(
    ("call", "reason"),
    [
        (lambda: merkle.nodes_for_inclusion(5, 5), "index_out_of_range"),
        (lambda: merkle.nodes_for_inclusion(-1, 5), "bad_argument"),
        (lambda: merkle.nodes_for_consistency(6, 5), "size_order"),
        (lambda: merkle.nodes_for_consistency(-1, 5), "bad_argument"),
        (lambda: merkle.consistency_proof(1, 2**63, TREE.get), "bad_argument"),
        (lambda: merkle.append_leaves(merkle.MAX_TREE_SIZE, [H], CountingStore().get), "bad_argument"),
        (lambda: merkle.nodes_for_root(2**63), "bad_argument"),
        (lambda: TREE.inclusion_proof(0, N_MAX + 1), "bad_argument"),
        (lambda: TREE.consistency_proof(1, N_MAX + 1), "bad_argument"),
        (lambda: merkle.append_leaves(0, [b"short"], TREE.get), "bad_hash"),
    ],
)
def test_generation_refuses_impossible_ranges(call, reason: str) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(TreeRangeError) as info:
        call()
    assert info.value.reason == reason


def test_generation_refuses_a_store_without_the_node_or_with_a_bad_value() -> None:
    tree = MemoryTree.from_leaves(LEAVES[:5])
    with pytest.raises(MissingNode):
        merkle.inclusion_proof(0, 6, tree.get)
    with pytest.raises(MissingNode):
        merkle.root_from_store(4, lambda level, index: b"\x00" * 31)


async def test_async_generation_refuses_a_partial_answer() -> None:
    async def partial(nodes):  # type: ignore[no-untyped-def]
        return {node: H for node in nodes[1:]}

    with pytest.raises(MissingNode):
        await merkle.inclusion_proof_async(0, 8, partial)


# ---- node reads: which, how many, how fetched ------------------------------------------------


class CountingStore:
    """Derives any node's hash from its address: enough to count reads without building a tree."""

    def __init__(self) -> None:
        self.reads: list[merkle.Node] = []
        self.batches: list[list[merkle.Node]] = []

    def get(self, level: int, index: int) -> bytes:
        self.reads.append((level, index))
        return hashlib.sha256(b"%d/%d" % (level, index)).digest()

    async def get_many(self, nodes):  # type: ignore[no-untyped-def]
        self.batches.append(list(nodes))
        return {node: hashlib.sha256(b"%d/%d" % node).digest() for node in nodes}


def _bound(n: int) -> int:
    return 2 * math.ceil(math.log2(n)) + 2


def _assert_reads_are_sound(reads: list[merkle.Node], size: int) -> None:
    assert len(reads) == len(set(reads)), "a node was read twice"
    for level, index in reads:
        assert (index + 1) << level <= size, "read a node a tree of this size does not have"


MILLION = 1_000_000
INDEXES = [0, 1, 2, 3, 511_999, 524_287, 524_288, 999_998, 999_999, 123_457, 777_777]


@pytest.mark.parametrize("index", INDEXES)
def test_inclusion_proof_at_a_million_reads_o_log_n_nodes(index: int) -> None:
    store = CountingStore()
    proof = merkle.inclusion_proof(index, MILLION, store.get)
    assert len(store.reads) <= _bound(MILLION) == 42
    assert store.reads == merkle.nodes_for_inclusion(index, MILLION)
    assert len(proof) <= math.ceil(math.log2(MILLION))
    _assert_reads_are_sound(store.reads, MILLION)


@pytest.mark.parametrize("first", [1, 2, 3, 4, 1000, 65_536, 500_001, 524_288, 999_999])
def test_consistency_proof_at_a_million_reads_o_log_n_nodes(first: int) -> None:
    store = CountingStore()
    merkle.consistency_proof(first, MILLION, store.get)
    assert len(store.reads) <= _bound(MILLION)
    assert store.reads == merkle.nodes_for_consistency(first, MILLION)
    _assert_reads_are_sound(store.reads, MILLION)


def test_root_and_append_at_a_million_read_o_log_n_nodes() -> None:
    store = CountingStore()
    merkle.root_from_store(MILLION, store.get)
    assert store.reads == merkle.nodes_for_root(MILLION) and len(store.reads) == bin(MILLION).count("1")
    store = CountingStore()
    done = merkle.append_leaves(MILLION - 1, [H], store.get)
    assert len(store.reads) <= math.ceil(math.log2(MILLION))
    # 999_999 ends in six one bits: the leaf plus six parents become complete.
    assert list(done.nodes) == [(level, (MILLION >> level) - 1) for level in range(7)]


@settings(max_examples=300, deadline=None)
@given(st.integers(min_value=2, max_value=merkle.MAX_TREE_SIZE), st.data())
def test_node_counts_stay_logarithmic_at_any_size(n: int, data: st.DataObject) -> None:
    i = data.draw(st.integers(0, n - 1))
    m = data.draw(st.integers(1, n))
    bound = 2 * (n - 1).bit_length()  # 2 * ceil(log2 n)
    assert len(merkle.nodes_for_inclusion(i, n)) <= bound
    assert len(merkle.nodes_for_consistency(m, n)) <= bound
    assert len(merkle.nodes_for_root(n)) <= (n - 1).bit_length() + 1


async def test_async_generation_fetches_once_and_matches_sync() -> None:
    for i, n in [(0, 1), (5, 13), (999, 1000), (1023, 1024), (1536, 2000)]:
        store = CountingStore()
        got = await merkle.inclusion_proof_async(i, n, store.get_many)
        needed = merkle.nodes_for_inclusion(i, n)
        assert store.batches == ([needed] if needed else [])  # one query, or none for a 1-leaf tree
        assert got == merkle.inclusion_proof(i, n, CountingStore().get)
        assert await merkle.inclusion_proof_async(i, n, TREE.get_many) == ref_path(i, 0, n)
    for m, n in [(1, 2), (3, 7), (4, 8), (1000, 2000), (2000, 2000), (0, 10)]:
        store = CountingStore()
        got = await merkle.consistency_proof_async(m, n, store.get_many)
        assert len(store.batches) == (1 if 0 < m < n else 0)
        assert await merkle.consistency_proof_async(m, n, TREE.get_many) == TREE.consistency_proof(m, n)
    assert await merkle.root_from_store_async(1234, TREE.get_many) == ref_mth(0, 1234)
    with pytest.raises(TreeRangeError):
        await merkle.inclusion_proof_async(3, 3, TREE.get_many)


# ---- appends -----------------------------------------------------------------------------------


def test_appends_write_only_newly_complete_nodes_and_match_the_reference() -> None:
    rows: dict[merkle.Node, bytes] = {}

    def get(level: int, index: int) -> bytes:
        return rows[(level, index)]

    for i in range(300):
        written = merkle.nodes_completed_by_append(i, LEAF_HASHES[i], get)
        trailing_ones = (i ^ (i + 1)).bit_length() - 1
        assert len(written) == 1 + trailing_ones
        assert not set(written) & set(rows), "an append rewrote an existing node"
        rows.update(written)
        assert merkle.root_from_store(i + 1, get) == ref_mth(0, i + 1)
    assert all(rows[node] == TREE.get(*node) for node in rows)


async def test_batched_appends_equal_one_at_a_time() -> None:
    whole = merkle.append_leaves(0, LEAF_HASHES[:777], TREE.get)
    rows: dict[merkle.Node, bytes] = {}

    async def get_many(nodes):  # type: ignore[no-untyped-def]
        return {node: rows[node] for node in nodes}

    start = 0
    for chunk in (1, 2, 5, 100, 13, 256, 400):
        done = await merkle.append_leaves_async(start, LEAF_HASHES[start : start + chunk], get_many)
        rows.update(done.nodes)
        start = done.size
        assert done.root == ref_mth(0, start)
    assert rows == whole.nodes and whole.root == ref_mth(0, 777)
    assert merkle.nodes_for_append(777) == merkle.nodes_for_root(777)


def test_memory_tree_rebuilds_a_log_from_its_entries() -> None:
    tree = MemoryTree()
    for data in LEAVES[:100]:
        tree.append(data)
    assert tree.size == 100 and tree.root() == ref_mth(0, 100)
    assert tree.extend_hashes(LEAF_HASHES[100:200]) == 100
    assert tree.root() == ref_mth(0, 200) and tree.root(150) == ref_mth(0, 150)
