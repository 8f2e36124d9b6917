"""SPIFFE IDs and sealed secrets: refusals."""

from __future__ import annotations

import os

import pytest

from shared.keys import PrivateKey
from shared.sealing import SealError, seal, seal_key, unseal, unseal_key
from shared.spiffe import SpiffeError, parse_id


@pytest.mark.parametrize("good", ["spiffe://example.org", "spiffe://example.org/agent/agt_1", "spiffe://a-b.c_d/x.y/Z-1"])
def test_valid_ids(good: str) -> None:
    parse_id(good)


@pytest.mark.parametrize("bad", [
    "spiffe://Example.org/a", "spiffe://example.org/", "spiffe://example.org//a", "spiffe://example.org/a/../b",
    "spiffe://example.org/./a", "spiffe://example.org:443/a", "spiffe://u@example.org/a", "spiffe://example.org/a?q",
    "spiffe://example.org/a#f", "spiffe://example.org/a%20b", "https://example.org/a", "spiffe:///a",
    "spiffe://" + "a" * 256, "spiffe://example.org/" + "a" * 2100, 7, "spiffe://example.org/a\n",
])
def test_invalid_ids(bad: object) -> None:
    with pytest.raises(SpiffeError):
        parse_id(bad)  # type: ignore[arg-type]


def test_sealed_secrets_open_only_with_their_key_and_context() -> None:
    kek = os.urandom(32)
    sealed = seal(kek, b"secret", "tenant-a/auth-1")
    assert unseal(kek, sealed, "tenant-a/auth-1") == b"secret"
    with pytest.raises(SealError):
        unseal(kek, sealed, "tenant-b/auth-1")       # moved to another row
    with pytest.raises(SealError):
        unseal(os.urandom(32), sealed, "tenant-a/auth-1")
    tampered = sealed[:-1] + bytes([sealed[-1] ^ 1])
    with pytest.raises(SealError):
        unseal(kek, tampered, "tenant-a/auth-1")
    with pytest.raises(SealError):
        unseal(kek, b"short", "tenant-a/auth-1")
    key = PrivateKey.generate("ES256")
    assert unseal_key(kek, seal_key(kek, key, "c"), "c").public == key.public
    assert b"PRIVATE" not in seal_key(kek, key, "c")
