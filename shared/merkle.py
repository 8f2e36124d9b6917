"""RFC 9162 section 2.1 Merkle trees: hashing, proof generation over stored subtrees, verification.

Storage model. A log stores the hash of every *complete* subtree, addressed as `(level, index)`:
the subtree of 2**level leaves starting at leaf `index * 2**level` (level 0 holds the leaf
hashes). Node `(level, index)` exists once the tree has at least `(index + 1) * 2**level` leaves
and never changes afterwards, so one table serves every past tree size. Any node of the RFC tree
of size n that is not complete lies on its right edge and covers `[start, n)`; its hash is folded
from at most log2(n) complete subtrees (the binary decomposition of `n - start`).

What a store needs to read, so that it can fetch everything in one query:
- `nodes_for_root(n)`: the complete subtrees whose fold is the root (one per set bit of n).
- `nodes_for_inclusion(index, n)`: the left or right sibling of each node on the leaf's path
  below the point where it meets the right edge, the right-edge sibling folded from complete
  subtrees, and the complete left siblings above.
- `nodes_for_consistency(m, n)`: the same for RFC 9162 SUBPROOF(m, D[n], true).
Each is at most 2 * log2(n) nodes. `inclusion_proof` / `consistency_proof` read exactly those
through a `get(level, index)` callable; the `_async` forms call `get_many(nodes)` once.

What an append writes: `append_leaves(start, leaf_hashes, get)` reads the old tree's peaks
(`nodes_for_root(start)`) and returns every node that became complete (the leaf, plus one node per
trailing one bit of its index), together with the new root, so a store writes O(log n) rows.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass

HASH_SIZE = 32
# Sizes and indexes fit a signed 64-bit column; it also bounds every proof to 64 hashes.
MAX_TREE_SIZE = 2**63 - 1
MAX_PROOF_HASHES = 64
EMPTY_ROOT = hashlib.sha256(b"").digest()

Node = tuple[int, int]
Get = Callable[[int, int], bytes]
GetMany = Callable[[Sequence[Node]], Awaitable[Mapping[Node, bytes]]]
_Range = tuple[int, int]


class ProofError(ValueError):
    """A proof did not verify. `reason` is a stable code naming the failed check."""

    def __init__(self, reason: str, message: str = "") -> None:
        super().__init__(f"{reason}: {message}" if message else reason)
        self.reason = reason


class TreeRangeError(ValueError):
    """A proof or root was requested for sizes or indexes the tree cannot have."""

    def __init__(self, reason: str, message: str = "") -> None:
        super().__init__(f"{reason}: {message}" if message else reason)
        self.reason = reason


class MissingNode(LookupError):
    """The accessor has no (valid) hash for a node that a complete tree of that size must hold."""

    def __init__(self, node: Node, message: str = "missing") -> None:
        super().__init__(f"node {node}: {message}")
        self.node = node


def leaf_hash(data: bytes) -> bytes:
    return hashlib.sha256(b"\x00" + data).digest()


def node_hash(left: bytes, right: bytes) -> bytes:
    return hashlib.sha256(b"\x01" + left + right).digest()


def root(leaf_hashes: Sequence[bytes]) -> bytes:
    """MTH of a whole list of leaf hashes, in O(n) time and O(log n) memory."""
    return _append(0, {}, leaf_hashes, record=False).root


# ---- which nodes a computation reads -------------------------------------------------------


def _is_size(value: object) -> bool:
    return type(value) is int and 0 <= value <= MAX_TREE_SIZE


def _range_nodes(start: int, end: int) -> list[Node]:
    """Complete subtrees covering [start, end), largest first.

    Valid for every node of an RFC 9162 tree: `start` is then a multiple of a power of two at
    least `end - start`, so each piece of the binary decomposition is aligned, hence stored.
    """
    nodes: list[Node] = []
    size, pos = end - start, start
    for level in reversed(range(size.bit_length())):
        if size >> level & 1:
            nodes.append((level, pos >> level))
            pos += 1 << level
    return nodes


def _inclusion_ranges(index: int, size: int) -> list[_Range]:
    """The ranges whose hashes form PATH(index, D[size]), bottom-up (RFC 9162 2.1.3.1)."""
    ranges: list[_Range] = []
    # Below level `inner` the paths to `index` and to the last leaf diverge: every sibling is
    # complete except possibly the right one at level inner-1, which holds the last leaf.
    inner = (index ^ (size - 1)).bit_length()
    for level in range(inner):
        start = ((index >> level) ^ 1) << level
        ranges.append((start, min(start + (1 << level), size)))
    # From `inner` up the path runs along the right edge: only left siblings exist (where the
    # index has a one bit); a right-edge node without one is carried up unchanged.
    for level in range(inner, index.bit_length()):
        if index >> level & 1:
            start = ((index >> level) - 1) << level
            ranges.append((start, start + (1 << level)))
    return ranges


def _consistency_ranges(first: int, second: int) -> list[_Range]:
    """The ranges whose hashes form PROOF(first, D[second]) (RFC 9162 2.1.4.1), in order."""
    if first == 0 or first == second:
        return []
    start, end, m, whole = 0, second, first, True
    tail: list[_Range] = []  # SUBPROOF appends after recursing, so collect and reverse.
    while m != end - start:
        k = 1 << ((end - start - 1).bit_length() - 1)  # largest power of two < size
        if m <= k:
            tail.append((start + k, end))
            end = start + k
        else:
            tail.append((start, start + k))
            start, m, whole = start + k, m - k, False
    head = [] if whole else [(start, end)]
    return head + tail[::-1]


def _unique_nodes(ranges: Iterable[_Range]) -> list[Node]:
    seen: dict[Node, None] = {}
    for start, end in ranges:
        for node in _range_nodes(start, end):
            seen.setdefault(node, None)
    return list(seen)


def _check_inclusion_args(index: int, size: int) -> None:
    if not (_is_size(index) and _is_size(size)):
        raise TreeRangeError("bad_argument", "index and size must be integers in [0, 2**63)")
    if index >= size:
        raise TreeRangeError("index_out_of_range", f"index {index} >= size {size}")


def _check_consistency_args(first: int, second: int) -> None:
    if not (_is_size(first) and _is_size(second)):
        raise TreeRangeError("bad_argument", "sizes must be integers in [0, 2**63)")
    if first > second:
        raise TreeRangeError("size_order", f"first {first} > second {second}")


def nodes_for_root(size: int) -> list[Node]:
    if not _is_size(size):
        raise TreeRangeError("bad_argument", "size must be an integer in [0, 2**63)")
    return _range_nodes(0, size)


def nodes_for_inclusion(index: int, size: int) -> list[Node]:
    _check_inclusion_args(index, size)
    return _unique_nodes(_inclusion_ranges(index, size))


def nodes_for_consistency(first: int, second: int) -> list[Node]:
    _check_consistency_args(first, second)
    return _unique_nodes(_consistency_ranges(first, second))


# ---- generation from fetched nodes ---------------------------------------------------------


def _checked(node: Node, value: object) -> bytes:
    # A store returning a wrong-sized value would silently produce proofs that never verify.
    if not isinstance(value, bytes) or len(value) != HASH_SIZE:
        raise MissingNode(node, "not a 32-byte hash")
    return value


def _fetch(nodes: Sequence[Node], get: Get) -> dict[Node, bytes]:
    return {node: _checked(node, get(*node)) for node in nodes}


async def _fetch_async(nodes: Sequence[Node], get_many: GetMany) -> dict[Node, bytes]:
    if not nodes:
        return {}
    found = await get_many(list(nodes))
    out: dict[Node, bytes] = {}
    for node in nodes:
        if node not in found:
            raise MissingNode(node)
        out[node] = _checked(node, found[node])
    return out


def _range_hash(start: int, end: int, hashes: Mapping[Node, bytes]) -> bytes:
    if start == end:
        return EMPTY_ROOT
    pieces = _range_nodes(start, end)
    acc = hashes[pieces[-1]]
    for node in reversed(pieces[:-1]):
        acc = node_hash(hashes[node], acc)
    return acc


def _assemble(ranges: Sequence[_Range], hashes: Mapping[Node, bytes]) -> list[bytes]:
    return [_range_hash(start, end, hashes) for start, end in ranges]


def root_from_store(size: int, get: Get) -> bytes:
    return _range_hash(0, size, _fetch(nodes_for_root(size), get))


async def root_from_store_async(size: int, get_many: GetMany) -> bytes:
    return _range_hash(0, size, await _fetch_async(nodes_for_root(size), get_many))


def inclusion_proof(index: int, size: int, get: Get) -> list[bytes]:
    _check_inclusion_args(index, size)
    ranges = _inclusion_ranges(index, size)
    return _assemble(ranges, _fetch(_unique_nodes(ranges), get))


async def inclusion_proof_async(index: int, size: int, get_many: GetMany) -> list[bytes]:
    _check_inclusion_args(index, size)
    ranges = _inclusion_ranges(index, size)
    return _assemble(ranges, await _fetch_async(_unique_nodes(ranges), get_many))


def consistency_proof(first: int, second: int, get: Get) -> list[bytes]:
    _check_consistency_args(first, second)
    ranges = _consistency_ranges(first, second)
    return _assemble(ranges, _fetch(_unique_nodes(ranges), get))


async def consistency_proof_async(first: int, second: int, get_many: GetMany) -> list[bytes]:
    _check_consistency_args(first, second)
    ranges = _consistency_ranges(first, second)
    return _assemble(ranges, await _fetch_async(_unique_nodes(ranges), get_many))


# ---- appends -------------------------------------------------------------------------------


@dataclass(frozen=True)
class Appended:
    """The result of appending leaves at `size - count`: write `nodes`, sign `root` at `size`."""

    size: int
    root: bytes
    nodes: dict[Node, bytes]  # every subtree that became complete, in creation order


def _append(
    start: int, peaks: Mapping[Node, bytes], leaf_hashes: Sequence[bytes], record: bool = True
) -> Appended:
    if not _is_size(start) or start + len(leaf_hashes) > MAX_TREE_SIZE:
        raise TreeRangeError("bad_argument", "tree size out of range")
    # The peaks of a tree (one complete subtree per set bit of its size, largest first) act as
    # a binary counter: adding a leaf merges equal-sized peaks, each merge completes one node.
    stack: list[tuple[int, int, bytes]] = [(lv, ix, peaks[(lv, ix)]) for lv, ix in _range_nodes(0, start)]
    created: dict[Node, bytes] = {}
    for offset, value in enumerate(leaf_hashes):
        if not isinstance(value, bytes) or len(value) != HASH_SIZE:
            raise TreeRangeError("bad_hash", f"leaf hash {offset} is not 32 bytes")
        stack.append((0, start + offset, value))
        if record:
            created[(0, start + offset)] = value
        while len(stack) >= 2 and stack[-1][0] == stack[-2][0]:
            level, _, right = stack.pop()
            _, left_index, left = stack.pop()
            parent = (level + 1, left_index >> 1)
            stack.append((*parent, node_hash(left, right)))
            if record:
                created[parent] = stack[-1][2]
    acc = EMPTY_ROOT
    if stack:
        acc = stack[-1][2]
        for _, _, value in reversed(stack[:-1]):
            acc = node_hash(value, acc)
    return Appended(size=start + len(leaf_hashes), root=acc, nodes=created)


def nodes_for_append(start: int) -> list[Node]:
    """The existing nodes an append at `start` reads: the peaks of the tree of size `start`."""
    return nodes_for_root(start)


def append_leaves(start: int, leaf_hashes: Sequence[bytes], get: Get) -> Appended:
    return _append(start, _fetch(nodes_for_append(start), get), leaf_hashes)


async def append_leaves_async(start: int, leaf_hashes: Sequence[bytes], get_many: GetMany) -> Appended:
    return _append(start, await _fetch_async(nodes_for_append(start), get_many), leaf_hashes)


def nodes_completed_by_append(index: int, leaf_hash: bytes, get: Get) -> dict[Node, bytes]:
    """The rows to write when leaf `index` is appended to a tree of size `index`."""
    return append_leaves(index, [leaf_hash], get).nodes


# ---- verification (RFC 9162 2.1.3.2 and 2.1.4.2) -------------------------------------------


def _check_hash(value: object, what: str) -> bytes:
    if not isinstance(value, bytes) or len(value) != HASH_SIZE:
        raise ProofError("bad_hash", f"{what} is not a 32-byte hash")
    return value


def _check_proof(proof: object) -> list[bytes]:
    if not isinstance(proof, (list, tuple)):
        raise ProofError("bad_argument", "proof must be a list of hashes")
    if len(proof) > MAX_PROOF_HASHES:
        raise ProofError("proof_too_long", f"more than {MAX_PROOF_HASHES} hashes")
    return [_check_hash(p, f"proof hash {i}") for i, p in enumerate(proof)]


def _same(a: bytes, b: bytes) -> bool:
    return hmac.compare_digest(a, b)


def verify_inclusion(leaf_hash: bytes, index: int, size: int, proof: Sequence[bytes], root: bytes) -> None:
    """Raise ProofError unless `proof` shows leaf `index` of the tree of `size` has `leaf_hash`."""
    if not (_is_size(index) and _is_size(size)):
        raise ProofError("bad_argument", "index and size must be integers in [0, 2**63)")
    r = _check_hash(leaf_hash, "leaf hash")
    expected = _check_hash(root, "root")
    path = _check_proof(proof)
    if index >= size:
        raise ProofError("index_out_of_range", f"index {index} >= size {size}")
    fn, sn = index, size - 1
    for p in path:
        if sn == 0:
            raise ProofError("proof_too_long", "more hashes than the path has levels")
        if fn & 1 or fn == sn:
            r = node_hash(p, r)
            # A right-edge node with no right sibling is promoted unchanged: skip those levels.
            if not fn & 1:
                while fn and not fn & 1:
                    fn, sn = fn >> 1, sn >> 1
        else:
            r = node_hash(r, p)
        fn, sn = fn >> 1, sn >> 1
    if sn != 0:
        raise ProofError("proof_too_short", "fewer hashes than the path has levels")
    if not _same(r, expected):
        raise ProofError("root_mismatch", "the proof leads to a different root")


def verify_consistency(
    first: int, second: int, first_root: bytes, second_root: bytes, proof: Sequence[bytes]
) -> None:
    """Raise ProofError unless `proof` shows the tree of `second` extends the tree of `first`."""
    if not (_is_size(first) and _is_size(second)):
        raise ProofError("bad_argument", "sizes must be integers in [0, 2**63)")
    first_root = _check_hash(first_root, "first root")
    second_root = _check_hash(second_root, "second root")
    path = _check_proof(proof)
    if first > second:
        raise ProofError("size_order", f"first {first} > second {second}")
    if first == second:
        # Not covered by the RFC algorithm: equal sizes are consistent iff the roots are equal.
        if path:
            raise ProofError("proof_too_long", "equal sizes take an empty proof")
        if not _same(first_root, second_root):
            raise ProofError("root_mismatch", "equal sizes with different roots")
        return
    if first == 0:
        # Every tree extends the empty tree; its root is fixed, so check that too.
        if path:
            raise ProofError("proof_too_long", "a proof from the empty tree is empty")
        if not _same(first_root, EMPTY_ROOT):
            raise ProofError("first_root_mismatch", "the empty tree has another root")
        return
    if not path:
        raise ProofError("proof_too_short", "empty proof")
    if first & (first - 1) == 0:
        # The old tree is a complete subtree of the new one, so the proof omits its root.
        path = [first_root, *path]
    fn, sn = first - 1, second - 1
    while fn & 1:
        fn, sn = fn >> 1, sn >> 1
    fr = sr = path[0]
    for c in path[1:]:
        if sn == 0:
            raise ProofError("proof_too_long", "more hashes than the trees have levels")
        if fn & 1 or fn == sn:
            fr, sr = node_hash(c, fr), node_hash(c, sr)
            if not fn & 1:
                while fn and not fn & 1:
                    fn, sn = fn >> 1, sn >> 1
        else:
            sr = node_hash(sr, c)
        fn, sn = fn >> 1, sn >> 1
    if sn != 0:
        raise ProofError("proof_too_short", "fewer hashes than the trees have levels")
    if not _same(fr, first_root):
        raise ProofError("first_root_mismatch", "the proof leads to a different first root")
    if not _same(sr, second_root):
        raise ProofError("second_root_mismatch", "the proof leads to a different second root")


# ---- an in-memory store ---------------------------------------------------------------------


class MemoryTree:
    """Complete-subtree storage in memory: the accessor for tests and offline re-verification."""

    def __init__(self) -> None:
        self._levels: list[list[bytes]] = [[]]

    @classmethod
    def from_leaves(cls, leaves: Iterable[bytes]) -> MemoryTree:
        tree = cls()
        tree.extend_hashes([leaf_hash(data) for data in leaves])
        return tree

    @property
    def size(self) -> int:
        return len(self._levels[0])

    def append(self, data: bytes) -> int:
        return self.extend_hashes([leaf_hash(data)])

    def extend_hashes(self, hashes: Sequence[bytes]) -> int:
        """Append leaf hashes; returns the index of the first one."""
        start = self.size
        done = append_leaves(start, hashes, self.get)
        for (level, index), value in done.nodes.items():
            if level == len(self._levels):
                self._levels.append([])
            # Nodes complete left to right at each level, so each one lands at the end.
            assert index == len(self._levels[level])
            self._levels[level].append(value)
        return start

    def get(self, level: int, index: int) -> bytes:
        if 0 <= level < len(self._levels) and 0 <= index < len(self._levels[level]):
            return self._levels[level][index]
        raise MissingNode((level, index))

    async def get_many(self, nodes: Sequence[Node]) -> dict[Node, bytes]:
        return {node: self.get(*node) for node in nodes}

    def _size(self, size: int | None) -> int:
        size = self.size if size is None else size
        if not _is_size(size) or size > self.size:
            raise TreeRangeError("bad_argument", f"size {size} is not in [0, {self.size}]")
        return size

    def root(self, size: int | None = None) -> bytes:
        return root_from_store(self._size(size), self.get)

    def inclusion_proof(self, index: int, size: int | None = None) -> list[bytes]:
        return inclusion_proof(index, self._size(size), self.get)

    def consistency_proof(self, first: int, second: int | None = None) -> list[bytes]:
        return consistency_proof(first, self._size(second), self.get)
