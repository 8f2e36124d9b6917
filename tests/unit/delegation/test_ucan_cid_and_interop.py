"""The canonical CID vector, and our UCANs read by independent implementations."""

from __future__ import annotations

import hashlib

import pytest
from joserfc import jws
from joserfc.jwk import ECKey, OKPKey

from shared import ucan
from shared.keys import PrivateKey, PublicKey
from tests.unit.delegation.chains import AGENTS, ROOT_CAPS, TENANT, build

# SPECS.md section 11: the RFC 8037 appendix A.4 JWS and its canonical CID.
RFC8037_JWS = (
    "eyJhbGciOiJFZERTQSJ9.RXhhbXBsZSBvZiBFZDI1NTE5IHNpZ25pbmc."
    "hgyY0il_MGCjP0JzlnLWG1PPOt7-09PGcvMg3AIbQR6dWbhijcNR4ki4iylGjg5BhVsPt9g7sVvpAr_MuM0KAg"
)
RFC8037_CID = "bafkreibr2cyqpkgvhjb6a243ioyajswqlyvcxt5p3b5wle6tlcsovdf7hi"

# SPECS.md section 9: did:key vectors (w3c-ccg/did-method-key, Ed25519 seeds 00..00 and 00..01).
DID_VECTORS = [
    (bytes(32), "did:key:z6MkiTBz1ymuepAQ4HEHYSF1H8quG5GLVVQR3djdX3mDooWp"),
    (bytes(31) + b"\x01", "did:key:z6MkjchhfUsD6mmvni8mCdXHw216Xrm9bQe2mBH1P5RDjVJG"),
]


def test_cid_vector() -> None:
    assert ucan.cid(RFC8037_JWS) == RFC8037_CID


def test_cid_is_the_canonical_form() -> None:
    token = build(1)[0]
    c = ucan.cid(token)
    assert c.startswith("bafkrei") and len(c) == 59 and c == c.lower()
    assert ucan.parse(token).cid == c
    with pytest.raises(ucan.DelegationError):
        ucan.cid("é")


def test_cid_matches_an_independent_multiformats_implementation() -> None:
    multiformats = pytest.importorskip("multiformats")
    for token in [RFC8037_JWS, *build(3)]:
        digest = multiformats.multihash.digest(token.encode("ascii"), "sha2-256")
        assert ucan.cid(token) == str(multiformats.CID("base32", 1, "raw", digest))
    assert hashlib.sha256(RFC8037_JWS.encode()).digest()  # the CID hashes the JWT text itself


# UCAN 0.10 names Ed25519 `EdDSA`; joserfc warns that RFC 9864 prefers `Ed25519`.
@pytest.mark.filterwarnings("ignore:EdDSA is deprecated")
def test_joserfc_verifies_our_ucan_signatures() -> None:
    for issuer in (TENANT, AGENTS[2]):  # Ed25519 and P-256
        token = ucan.issue(issuer, AGENTS[0].public.did, ROOT_CAPS, expires=None)
        jwk = issuer.public.jwk()
        key = OKPKey.import_key(jwk) if jwk["kty"] == "OKP" else ECKey.import_key(jwk)
        obj = jws.deserialize_compact(token, key, algorithms=[issuer.alg])
        assert obj.protected == {"typ": "JWT", "alg": issuer.alg}
        other = PrivateKey.generate(issuer.alg).public.jwk()
        other_key = OKPKey.import_key(other) if other["kty"] == "OKP" else ECKey.import_key(other)
        with pytest.raises(Exception):  # noqa: B017 - joserfc's BadSignatureError
            jws.deserialize_compact(token, other_key, algorithms=[issuer.alg])


def test_did_key_vectors() -> None:
    from cryptography.hazmat.primitives.asymmetric import ed25519

    for seed, did in DID_VECTORS:
        key = PrivateKey(ed25519.Ed25519PrivateKey.from_private_bytes(seed))
        assert key.public.did == did
        assert PublicKey.from_did(did) == key.public


def test_did_key_decodes_the_same_in_an_independent_multiformats_implementation() -> None:
    multiformats = pytest.importorskip("multiformats")
    from cryptography.hazmat.primitives import serialization

    for key in (TENANT, AGENTS[2]):
        did = key.public.did
        codec, raw = multiformats.multicodec.unwrap(multiformats.multibase.decode(did.removeprefix("did:key:")))
        if key.alg == "EdDSA":
            assert codec.name == "ed25519-pub"
            expected = key.public.crypto.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
        else:
            assert codec.name == "p256-pub"
            expected = key.public.crypto.public_bytes(
                serialization.Encoding.X962, serialization.PublicFormat.CompressedPoint
            )
        assert raw == expected
