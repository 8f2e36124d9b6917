"""RFC 9162 section 2.1.3.2: verify a Merkle inclusion proof (Rekor uses RFC 6962 hashing)."""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Sequence

MAX_PROOF_HASHES = 64  # a tree of 2^64 leaves needs at most 64; more is malformed


def leaf_hash(data: bytes) -> bytes:
    return hashlib.sha256(b"\x00" + data).digest()


def _node(left: bytes, right: bytes) -> bytes:
    return hashlib.sha256(b"\x01" + left + right).digest()


def inclusion_valid(index: int, size: int, leaf: bytes, path: Sequence[bytes], root: bytes) -> bool:
    """True when `path` proves leaf hash `leaf` at `index` in the tree of `size` with `root`."""
    if not 0 <= index < size or len(path) > MAX_PROOF_HASHES:
        return False
    if any(len(p) != 32 for p in path) or len(leaf) != 32 or len(root) != 32:
        return False
    fn, sn, r = index, size - 1, leaf
    for p in path:
        if sn == 0:
            return False
        if fn & 1 or fn == sn:
            r = _node(p, r)
            if not fn & 1:
                # Right-most node of an incomplete level: climb until it is a right child again.
                while fn and not fn & 1:
                    fn >>= 1
                    sn >>= 1
        else:
            r = _node(r, p)
        fn >>= 1
        sn >>= 1
    return sn == 0 and hmac.compare_digest(r, root)
