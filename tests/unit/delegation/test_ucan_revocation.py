"""UCAN 0.10 section 6.6 revocation records."""

from __future__ import annotations

from typing import Any

import pytest

from shared import ucan
from shared.b64 import b64u_encode
from shared.ucan import DelegationError
from tests.unit.delegation.chains import AGENTS, OUTSIDER, TENANT, build, verify


def test_round_trip_and_the_chain_is_then_refused() -> None:
    chain = build(5)
    verified = verify(chain)
    middle = verified.cids[2]  # B -> C
    for revoker in (TENANT, AGENTS[0], AGENTS[1]):  # the link's own issuer (B) and those above it
        record = ucan.revocation(revoker, middle)
        assert set(record) == {"iss", "revoke", "challenge"} and record["iss"] == revoker.public.did
        assert ucan.verify_revocation(record, verified.issuers_up_to(middle)) == middle
    with pytest.raises(DelegationError) as info:
        verify(chain, revoked={middle})
    assert info.value.code == "revoked"


def test_p256_revoker() -> None:
    chain = build(4)
    cid = ucan.cid(chain[3])  # issued by C, who signs with P-256
    record = ucan.revocation(AGENTS[2], cid)
    assert ucan.verify_revocation(record, verify(chain).issuers_up_to(cid)) == cid


@pytest.mark.parametrize("revoker", [OUTSIDER, AGENTS[3], AGENTS[4]])
def test_refused_when_signed_by_a_non_chain_issuer(revoker: Any) -> None:
    # An outsider, and principals BELOW the revoked link (D, E), may not revoke B -> C.
    chain = build(5)
    verified = verify(chain)
    record = ucan.revocation(revoker, verified.cids[2])
    with pytest.raises(DelegationError) as info:
        ucan.verify_revocation(record, verified.issuers_up_to(verified.cids[2]))
    assert info.value.code == "not_in_chain"


def test_refused_when_iss_claims_a_chain_issuer_but_someone_else_signed() -> None:
    verified = verify(build(3))
    forged = {**ucan.revocation(OUTSIDER, verified.cids[1]), "iss": TENANT.public.did}
    with pytest.raises(DelegationError) as info:
        ucan.verify_revocation(forged, verified.issuers_up_to(verified.cids[1]))
    assert info.value.code == "bad_signature"


def test_refused_when_the_challenge_names_another_cid() -> None:
    verified = verify(build(3))
    record = {**ucan.revocation(TENANT, verified.cids[1]), "revoke": verified.cids[2]}
    with pytest.raises(DelegationError) as info:
        ucan.verify_revocation(record, verified.issuers_up_to(verified.cids[2]))
    assert info.value.code == "bad_signature"


def test_challenge_is_signed_over_the_spec_text() -> None:
    cid = verify(build(1)).cids[0]
    record = ucan.revocation(TENANT, cid)
    assert record["challenge"] == b64u_encode(TENANT.sign(f"REVOKE:{cid}".encode()))


@pytest.mark.parametrize(
    "change",
    [
        {"extra": 1},
        {"iss": None},
        {"iss": "did:web:example.com"},
        {"revoke": "bafkrei"},
        {"challenge": "not base64!"},
        {"challenge": b64u_encode(b"short")},
        {"challenge": 7},
    ],
)
def test_malformed_records_are_refused(change: dict[str, Any]) -> None:
    verified = verify(build(2))
    record: dict[str, Any] = {**ucan.revocation(TENANT, verified.cids[1]), **change}
    with pytest.raises(DelegationError) as info:
        ucan.verify_revocation(record, verified.issuers_up_to(verified.cids[1]))
    assert info.value.code == "malformed"


def test_revocation_needs_a_canonical_cid_and_a_private_key() -> None:
    with pytest.raises(DelegationError):
        ucan.revocation(TENANT, "not-a-cid")
    with pytest.raises(TypeError):
        ucan.revocation(TENANT.public, verify(build(1)).cids[0])  # type: ignore[arg-type]


def test_chain_issuers_must_be_a_collection() -> None:
    verified = verify(build(2))
    with pytest.raises(TypeError):
        ucan.verify_revocation(ucan.revocation(TENANT, verified.cids[1]), TENANT.public.did)


def test_issuers_up_to_an_unknown_cid() -> None:
    with pytest.raises(DelegationError):
        verify(build(2)).issuers_up_to(ucan.cid("other"))
