"""Credentials, status lists and DIDs without servers: vectors and refusals."""

from __future__ import annotations

import gzip
from datetime import UTC, datetime, timedelta

import pytest

from shared import status_list
from shared.b64 import b64u_encode
from shared.did import DidError, did_web, did_web_document, did_web_url
from shared.keys import PrivateKey
from shared.vc import CredentialError, DidResolver, credential, sign, status_entry, status_list_credential, verify_credential

NOW = datetime(2026, 11, 28, tzinfo=UTC)


def test_status_list_vector() -> None:
    bits = bytearray(16384)
    status_list.set_bit(bits, 94567)
    assert bits[11820] == 0x01
    assert status_list.encode(bits) == "uH4sIAAAAAAACA-3QAQ0AAAwCIO1f2hz_IAIJAAAAAAAAAAAAAADfVAEAAADAOQNQdb5gAEAAAA"
    assert status_list.get_bit(status_list.decode(status_list.encode(bits)), 94567)


@pytest.mark.parametrize("encoded,reason", [
    ("H4sI", "STATUS_VERIFICATION_ERROR"),                                       # no multibase prefix
    ("u!!!", "STATUS_VERIFICATION_ERROR"),
    ("u" + b64u_encode(b"not gzip"), "STATUS_VERIFICATION_ERROR"),
    ("u" + b64u_encode(gzip.compress(bytes(1024))), "STATUS_LIST_LENGTH_ERROR"),  # fewer than 131072 entries
    ("u" + b64u_encode(gzip.compress(bytes(17 * 1024 * 1024))), "STATUS_VERIFICATION_ERROR"),  # a gzip bomb
])
def test_bad_status_lists(encoded: str, reason: str) -> None:
    with pytest.raises(status_list.StatusListError) as err:
        status_list.decode(encoded)
    assert err.value.reason == reason


def test_index_out_of_range() -> None:
    with pytest.raises(status_list.StatusListError) as err:
        status_list.get_bit(bytes(16384), 131_072)
    assert err.value.reason == "RANGE_ERROR"


@pytest.mark.parametrize("did,url", [
    ("did:web:w3c-ccg.github.io", "https://w3c-ccg.github.io/.well-known/did.json"),
    ("did:web:example.com%3A3000:user:alice", "https://example.com:3000/user/alice/did.json"),
])
def test_did_web_mapping(did: str, url: str) -> None:
    assert did_web_url(did) == url


@pytest.mark.parametrize("did", ["did:web:", "did:web:a::b", "did:key:z6Mk", "did:web:evil.com%2Fx"])
def test_bad_did_web(did: str) -> None:
    with pytest.raises(DidError):
        did_web_url(did)


async def test_did_web_issuer_with_rotated_keys() -> None:
    """A did:web issuer lists old and new keys; credentials from either verify, a key dropped from
    the document no longer does."""
    old, new = PrivateKey.generate(), PrivateKey.generate()
    did = did_web("issuer.example", "tenants", "acme")
    docs = {"both": did_web_document(did, [("k1", old.public), ("k2", new.public)]),
            "new": did_web_document(did, [("k2", new.public)])}
    current = "both"

    async def fetch(url: str) -> dict:
        assert url == "https://issuer.example/tenants/acme/did.json"
        return docs[current]

    resolver = DidResolver(fetch)
    subject = {"id": PrivateKey.generate().public.did}
    vc_old = sign(credential(credential_id="urn:uuid:1", issuer=did, types=["AgentCredential"], subject=subject,
                             valid_from=NOW, issued_at=NOW), old, f"{did}#k1")
    vc_new = sign(credential(credential_id="urn:uuid:2", issuer=did, types=["AgentCredential"], subject=subject,
                             valid_from=NOW, issued_at=NOW), new, f"{did}#k2")
    for vc_jwt in (vc_old, vc_new):
        await verify_credential(vc_jwt, resolver=resolver, trusted_issuers=[did], status_fetcher=None, now=NOW.timestamp())
    current = "new"
    with pytest.raises(CredentialError) as err:
        await verify_credential(vc_old, resolver=resolver, trusted_issuers=[did], status_fetcher=None, now=NOW.timestamp())
    assert err.value.reason == "unknown_issuer"


async def test_status_list_signed_by_another_issuer_is_refused() -> None:
    issuer, rogue = PrivateKey.generate(), PrivateKey.generate()
    url = "https://issuer.example/tenants/acme/status-lists/sl_1"
    vc_jwt = sign(credential(credential_id="urn:uuid:1", issuer=issuer.public.did, types=["AgentCredential"],
                             subject={"id": "did:example:agent"}, valid_from=NOW, status=status_entry(url, 5),
                             issued_at=NOW),
                  issuer, f"{issuer.public.did}#{issuer.public.did[8:]}")
    rogue_list = sign(status_list_credential(list_url=url, issuer=rogue.public.did,
                                             encoded_list=status_list.encode(status_list.empty()), valid_from=NOW),
                      rogue, f"{rogue.public.did}#{rogue.public.did[8:]}")

    async def fetch(u: str) -> str:
        return rogue_list

    with pytest.raises(CredentialError) as err:
        await verify_credential(vc_jwt, resolver=DidResolver(), trusted_issuers=[issuer.public.did],
                                status_fetcher=fetch, now=NOW.timestamp())
    assert err.value.reason == "status_invalid"


async def test_credential_shape_refusals() -> None:
    key = PrivateKey.generate()
    did = key.public.did
    kid = f"{did}#{did[8:]}"
    base = credential(credential_id="urn:uuid:1", issuer=did, types=["AgentCredential"], subject={"id": "did:x:1"},
                      valid_from=NOW, valid_until=NOW + timedelta(hours=1), issued_at=NOW)
    cases = {
        "wrong first context": {**base, "@context": ["https://example.org/ctx"]},
        "vc claim": {**base, "vc": {}},
        "sub disagrees": {**base, "sub": "did:x:2"},
        "naive validFrom": {**base, "validFrom": "2026-11-28T00:00:00"},
        "issuer not the signer": {**base, "issuer": PrivateKey.generate().public.did},
    }
    for name, claims in cases.items():
        with pytest.raises(CredentialError) as err:
            await verify_credential(sign(claims, key, kid), resolver=DidResolver(), trusted_issuers=None,
                                    status_fetcher=None, now=NOW.timestamp())
        assert err.value.reason == "malformed", name
    with pytest.raises(CredentialError) as err:
        await verify_credential(sign(base, key, kid, typ="JWT"), resolver=DidResolver(), trusted_issuers=None,
                                status_fetcher=None, now=NOW.timestamp())
    assert err.value.reason == "malformed"
