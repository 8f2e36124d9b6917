"""Log identities: origins, sealed log keys that open only for their log, witness keys."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519

from agentid.audit import open_log_checkpoint
from services.audit.signing import LogKeys, load_witness, log_key, origin_for
from shared import merkle
from shared.sealing import SealError

KEK = os.urandom(32)


@pytest.mark.parametrize("base, origin", [
    ("https://id.example.com", "id.example.com/agentid/acme"),
    ("https://id.example.com/", "id.example.com/agentid/acme"),
    ("http://127.0.0.1:8080", "127.0.0.1:8080/agentid/acme"),
    ("https://user:secret@id.example.com/base/", "id.example.com/base/agentid/acme"),
])
def test_origins_are_schema_less_urls_without_credentials(base: str, origin: str) -> None:
    assert origin_for(base, "acme") == origin


@pytest.mark.parametrize("base", ["", "not a url", "https://", "https://id.example.com/a b", "https://a+b.example"])
def test_a_public_url_that_makes_no_valid_origin_is_refused(base: str) -> None:
    with pytest.raises(ValueError):
        origin_for(base, "acme")


def test_a_log_key_signs_checkpoints_readers_can_open_and_a_witness_cosigns(tmp_path: Path) -> None:
    pem = tmp_path / "witness.pem"
    pem.write_bytes(ed25519.Ed25519PrivateKey.generate().private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()))
    keys = LogKeys(KEK, "https://audit.example", load_witness(pem, "witness.example"))
    new = keys.create("acme")
    assert new.origin == "audit.example/agentid/acme" and len(new.public_key) == 32
    assert b"PRIVATE" not in new.sealed_key  # sealed, not a PEM at rest
    signer = keys.signer("acme", new.origin, new.public_key, new.sealed_key)
    root = merkle.MemoryTree.from_leaves([b"a", b"b", b"c"]).root()
    note = keys.sign(signer, 3, root)
    cp = open_log_checkpoint(note, log_key(new.origin, new.public_key), keys.witness_keys())
    assert (cp.origin, cp.size, cp.root_hash) == (new.origin, 3, root)


def test_a_sealed_key_opens_only_for_its_own_log_and_its_public_key() -> None:
    keys = LogKeys(KEK, "https://audit.example")
    acme, other = keys.create("acme"), keys.create("other")
    with pytest.raises(SealError):
        LogKeys(KEK, "https://audit.example").signer("acme", acme.origin, acme.public_key, other.sealed_key)
    with pytest.raises(SealError):
        LogKeys(os.urandom(32), "https://audit.example").signer("acme", acme.origin, acme.public_key, acme.sealed_key)
    with pytest.raises(ValueError, match="public key"):
        LogKeys(KEK, "https://audit.example").signer("acme", acme.origin, other.public_key, acme.sealed_key)


def test_only_an_ed25519_witness_key_is_accepted(tmp_path: Path) -> None:
    assert load_witness(None, "w") is None
    pem = tmp_path / "p256.pem"
    pem.write_bytes(ec.generate_private_key(ec.SECP256R1()).private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()))
    with pytest.raises(TypeError):
        load_witness(pem, "w")
