"""Key loading, thumbprints and did:key against published vectors, and refusals."""

from __future__ import annotations

import pytest
from cryptography.hazmat.primitives.asymmetric import ec, ed25519
from hypothesis import given, settings
from hypothesis import strategies as st

from shared.keys import InvalidKey, PrivateKey, PublicKey

RFC8037 = {"kty": "OKP", "crv": "Ed25519", "d": "nWGxne_9WmC6hEr0kuwsxERJxWl7MmkZcDusAxyuf2A",
           "x": "11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo"}
RFC9449 = {"kty": "EC", "crv": "P-256", "x": "l8tFrhx-34tV3hRICRDY9zCkDlpBhF42UQUfWVAWBFs",
           "y": "9VE4jf_Ok_o64zbTTlcuNJajHmt6v9TDVrU0CdvGRDA"}
P256_ORDER = 0xFFFFFFFF00000000FFFFFFFFFFFFFFFFBCE6FAADA7179E84F3B9CAC2FC632551


def test_rfc7638_thumbprints() -> None:
    assert PrivateKey.from_jwk(RFC8037).public.thumbprint == "kPrK_qmxVWaYVA9wwBF6Iuo3vVzz7TxHCTwXBygrS4k"
    assert PublicKey.from_jwk(RFC9449).thumbprint == "0ZcOCORZNYy-DWpqq30jZyJGHTN0d2HglBV3uiguA4I"


@pytest.mark.parametrize("seed,did", [
    (0, "did:key:z6MkiTBz1ymuepAQ4HEHYSF1H8quG5GLVVQR3djdX3mDooWp"),
    (1, "did:key:z6MkjchhfUsD6mmvni8mCdXHw216Xrm9bQe2mBH1P5RDjVJG"),
    (2, "did:key:z6MknGc3ocHs3zdPiJbnaaqDi58NGb4pk1Sp9WxWufuXSdxf"),
    (3, "did:key:z6MkvqoYXQfDDJRv8L4wKzxYeuKyVZBfi9Qo6Ro8MiLH3kDQ"),
    (4, "did:key:z6MkwW6aqMnjgrhJXFUko3NnZPGzVpkNzhYK7yEhnsibmLwL"),
])
def test_did_key_vectors(seed: int, did: str) -> None:
    key = PrivateKey(ed25519.Ed25519PrivateKey.from_private_bytes(seed.to_bytes(32, "big")))
    assert key.public.did == did
    assert PublicKey.from_did(did) == key.public


def test_rfc8037_key_did() -> None:
    assert PrivateKey.from_jwk(RFC8037).public.did == "did:key:z6MktwupdmLXVVqTzCw4i46r4uGyosGXRnR3XjN4Zq7oMMsw"


@pytest.mark.parametrize("alg", ["EdDSA", "ES256"])
def test_sign_verify_round_trip_and_refusals(alg: str) -> None:
    key = PrivateKey.generate(alg)  # type: ignore[arg-type]
    sig = key.sign(b"message")
    assert len(sig) == 64
    assert key.public.verify(sig, b"message")
    assert not key.public.verify(sig, b"messagE")
    assert not PrivateKey.generate(alg).public.verify(sig, b"message")  # type: ignore[arg-type]
    assert not key.public.verify(sig[:-1], b"message")
    assert PublicKey.from_did(key.public.did) == key.public
    assert PrivateKey.from_jwk(key.private_jwk()).public == key.public
    assert PrivateKey.from_pem(key.pem()).public == key.public


@pytest.mark.parametrize("jwk", [
    {"kty": "OKP", "crv": "Ed25519", "x": "AAAA"},                                  # short
    {"kty": "OKP", "crv": "X25519", "x": RFC8037["x"]},                             # wrong curve
    {"kty": "EC", "crv": "P-384", "x": RFC9449["x"], "y": RFC9449["y"]},
    {"kty": "EC", "crv": "P-256", "x": RFC9449["x"], "y": RFC9449["x"]},            # off the curve
    {"kty": "RSA", "n": "AQAB", "e": "AQAB"},
    {"kty": "OKP", "crv": "Ed25519", "x": RFC8037["x"] + "="},                      # padded
    {"kty": "OKP", "crv": "Ed25519", "x": 5},
    RFC8037,                                                                          # private member
    "not a jwk",
])
def test_bad_public_jwks_are_refused(jwk: object) -> None:
    with pytest.raises(InvalidKey):
        PublicKey.from_jwk(jwk)  # type: ignore[arg-type]


def test_private_jwk_with_mismatched_public_part_is_refused() -> None:
    other = PrivateKey.generate().public.jwk()
    with pytest.raises(InvalidKey):
        PrivateKey.from_jwk({**other, "d": RFC8037["d"]})


@pytest.mark.parametrize("did", ["did:web:example.com", "did:key:zzzz", "did:key:z6MkiTBz1ymuepAQ4HEHYSF1H8quG5GLVVQR3",
                                 "did:key:" + "z" + "1" * 40, 42,
                                 "did:key:z6MkiTBz1ymuepAQ4HEHYSF1H8quG5GLVVQR3djdX3mDooWp\n",
                                 "did:key:z6MkiTBz1ymuepAQ4HEHYSF1H8quG5GLVVQR3djdX3mDooWp "])
def test_bad_dids_are_refused(did: object) -> None:
    with pytest.raises(InvalidKey):
        PublicKey.from_did(did)  # type: ignore[arg-type]


def test_private_key_repr_hides_material() -> None:
    key = PrivateKey.from_jwk(RFC8037)
    assert RFC8037["d"] not in repr(key)


def test_a_did_key_has_one_spelling() -> None:
    did = "did:key:z6MkiTBz1ymuepAQ4HEHYSF1H8quG5GLVVQR3djdX3mDooWp"
    # A leading "1" is a zero byte in base58: the same number, a second spelling of the key.
    for other in ("did:key:z1" + did[len("did:key:z"):], "did:key:z11" + did[len("did:key:z"):]):
        with pytest.raises(InvalidKey):
            PublicKey.from_did(other)


@settings(max_examples=200, deadline=None)
@given(seed=st.binary(min_size=32, max_size=32), p256=st.booleans())
def test_a_resolved_did_key_is_the_key_and_spells_its_did_back(seed: bytes, p256: bool) -> None:
    if p256:
        scalar = int.from_bytes(seed, "big") % (P256_ORDER - 1) + 1
        key = PrivateKey(ec.derive_private_key(scalar, ec.SECP256R1()))
    else:
        key = PrivateKey(ed25519.Ed25519PrivateKey.from_private_bytes(seed))
    resolved = PublicKey.from_did(key.public.did)
    assert resolved == key.public
    assert resolved.did == key.public.did
    assert resolved.jwk() == key.public.jwk() and resolved.thumbprint == key.public.thumbprint
    assert resolved.verify(key.sign(b"m"), b"m")
