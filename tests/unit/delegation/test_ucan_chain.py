"""verify_chain: a depth-5 chain verifies; every check refuses with its own code."""

from __future__ import annotations

from dataclasses import replace

import pytest

from shared import ucan
from shared.capabilities import Capability
from shared.ucan import DelegationError
from tests.unit.delegation.chains import (
    AGENTS,
    NOW,
    OUTSIDER,
    ROOT_CAPS,
    TENANT,
    build,
    holder,
    payload_of,
    raw_token,
    resign,
    verify,
)

NARROW = [
    Capability("records", "https://api.example.com/records/7/*", {"read"}, max_uses=3),
    Capability("payment_initiation", "https://bank.example.com/payments/*", {"pay"},
               identifiers=["150"], constraints={"amount": {"value": "20", "currency": "EUR"}}),
]


def refused(chain: list[str], code: str, **kw: object) -> None:
    with pytest.raises(DelegationError) as info:
        verify(chain, **kw)
    assert info.value.code == code, str(info.value)


# -- acceptance -------------------------------------------------------------------------------------
def test_tenant_a_b_c_d_e_is_depth_5_and_verifies() -> None:
    chain = build(5)
    verified = verify(chain, max_depth=5)
    assert verified.depth == 5
    assert verified.root == TENANT.public.did
    assert verified.holder == holder(5) == AGENTS[4].public.did
    assert verified.path == (TENANT.public.did, *(a.public.did for a in AGENTS[:5]))
    assert verified.cids == tuple(ucan.cid(t) for t in chain)
    assert set(verified.capabilities) == set(ROOT_CAPS)
    assert verified.expires == NOW + 3600 - 4 and verified.not_before == NOW - 3600 + 4


def test_root_alone_is_depth_1() -> None:
    assert verify(build(1), max_depth=1).depth == 1


def test_narrowing_at_every_link_verifies() -> None:
    chain = build(5, overrides={2: {"caps": NARROW}, 3: {"caps": NARROW[:1]}, 4: {"caps": []}})
    assert verify(chain).capabilities == ()


def test_leeway_accepts_small_clock_skew_only() -> None:
    chain = build(2, overrides={0: {"exp": NOW - 30}, 1: {"exp": NOW - 30}})
    verify(chain)  # within the default 60 s
    refused(chain, "expired", leeway=10)


def test_never_expiring_links_nest() -> None:
    chain = build(3, overrides={0: {"exp": None}, 1: {"exp": None}})
    assert verify(chain).expires == NOW + 3600 - 2


# -- each refusal ---------------------------------------------------------------------------------------
@pytest.mark.parametrize("link", [1, 2, 3, 4])
def test_widening_at_any_link_is_refused(link: int) -> None:
    wider = [replace(ROOT_CAPS[0], actions={"read", "write", "delete"}), ROOT_CAPS[1]]
    chain = build(5, overrides={link: {"caps": wider}})
    refused(chain, "widened")


@pytest.mark.parametrize(
    "caps",
    [
        [replace(ROOT_CAPS[0], resource="https://api.example.com/*")],  # wider pattern
        [replace(ROOT_CAPS[0], max_uses=None)],  # caveat dropped
        [replace(ROOT_CAPS[0], max_uses=11)],  # caveat loosened
        [replace(ROOT_CAPS[1], constraints={"amount": {"value": "100.01", "currency": "EUR"}})],
        [replace(ROOT_CAPS[1], identifiers=["acct-1", "acct-2"])],
        [replace(ROOT_CAPS[1], identifiers=None)],
        [replace(ROOT_CAPS[0], type="admin")],
    ],
)
def test_widening_each_part_of_a_capability_is_refused(caps: list[Capability]) -> None:
    refused(build(3, overrides={2: {"caps": caps}}), "widened")


def test_widening_after_narrowing_is_refused() -> None:
    # C re-widens what B narrowed, back to the root's grant: still a widening of its own parent.
    refused(build(4, overrides={2: {"caps": NARROW}, 3: {"caps": ROOT_CAPS}}), "widened")


def test_expired_parent_is_refused() -> None:
    refused(build(4, overrides={1: {"exp": NOW - 120}}), "expired")


def test_expired_leaf_is_refused() -> None:
    refused(build(3, overrides={2: {"exp": NOW - 61}}), "expired")


def test_not_yet_valid_parent_is_refused() -> None:
    refused(build(4, overrides={1: {"nbf": NOW + 120}}), "not_yet_valid")


@pytest.mark.parametrize(
    "override",
    [
        {"exp": NOW + 7200},  # outlives its parent
        {"exp": None},  # never expires under a parent that does
        {"nbf": NOW - 7200},  # starts before its parent
        {"nbf": None},  # "since the epoch", before its parent
    ],
)
def test_time_not_nested_is_refused(override: dict[str, object]) -> None:
    refused(build(4, overrides={2: override}), "time_not_nested")


def test_audience_issuer_mismatch_is_a_broken_link() -> None:
    # Link 2 should be issued by B (link 1's audience); F issues it instead, with a valid proof.
    refused(build(4, overrides={2: {"issuer": AGENTS[5]}}), "broken_link")


def test_missing_proof_is_a_broken_link() -> None:
    refused(build(4, overrides={2: {"proofs": []}}), "broken_link")


def test_proof_of_another_token_is_a_broken_link() -> None:
    other = build(2, caps=NARROW)  # a different A -> B link
    assert other[1] != build(2)[1]
    refused(build(4, overrides={2: {"proofs": other[1:]}}), "broken_link")


def test_link_signed_by_another_key_is_refused() -> None:
    chain = build(4)
    chain[2] = resign(chain[2], OUTSIDER)  # iss still names B
    refused(chain, "bad_signature")


def test_link_signed_with_the_other_algorithm_is_refused() -> None:
    chain = build(4)
    chain[1] = resign(chain[1], AGENTS[2])  # a P-256 (ES256) signature, iss is A's Ed25519 did:key
    refused(chain, "bad_signature")


def test_alg_header_that_does_not_fit_the_issuers_key_is_refused() -> None:
    # A valid Ed25519 signature by the right key, under a header that claims ES256: the key decides
    # the algorithm, so the token is refused rather than trusted with a lying header.
    chain = build(2)
    payload = payload_of(chain[1])
    chain[1] = raw_token({"alg": "ES256", "typ": "JWT"}, payload, AGENTS[0])
    refused(chain, "bad_signature")


def test_tampered_payload_is_refused() -> None:
    chain = build(3)
    head, _, sig = chain[2].split(".")
    forged = resign(chain[2], AGENTS[1], exp=NOW + 3000).split(".")[1]
    chain[2] = f"{head}.{forged}.{sig}"
    refused(chain, "bad_signature")


def test_depth_6_with_limit_5_is_refused() -> None:
    chain = build(6)
    refused(chain, "depth_exceeded", max_depth=5)
    assert verify(chain, max_depth=6).depth == 6


def test_depth_is_counted_before_any_parsing() -> None:
    refused(["not a token"] * 6, "depth_exceeded", audience_did=holder(6), max_depth=5)


def test_untrusted_root_is_refused() -> None:
    refused(build(3), "untrusted_root", trusted_roots={OUTSIDER.public.did})
    refused(build(3), "untrusted_root", trusted_roots=set())


def test_chain_rooted_at_an_agent_is_refused() -> None:
    # A self-issues a "root" to B: well-formed and signed, but A is not a root of trust.
    chain = [ucan.issue(AGENTS[0], AGENTS[1].public.did, ROOT_CAPS, expires=NOW + 60)]
    refused(chain, "untrusted_root")


def test_chain_missing_its_root_is_refused() -> None:
    refused(build(4)[1:], "untrusted_root")


@pytest.mark.parametrize("link", [0, 2, 4])
def test_revoked_link_is_refused(link: int) -> None:
    chain = build(5)
    refused(chain, "revoked", revoked={ucan.cid(chain[link])})
    refused(chain, "revoked", revoked=lambda c: c == ucan.cid(chain[link]))


def test_wrong_audience_is_refused() -> None:
    chain = build(3)
    refused(chain, "wrong_audience", audience_did=holder(2))
    refused(chain, "wrong_audience", audience_did=OUTSIDER.public.did)


@pytest.mark.parametrize("chain", [[], "eyJ.eyJ.sig", ["not.a.token"], [b"bytes"]])
def test_malformed_chain_is_refused(chain: object) -> None:
    with pytest.raises(DelegationError) as info:
        ucan.verify_chain(chain, audience_did=holder(1), trusted_roots={TENANT.public.did},  # type: ignore[arg-type]
                          max_depth=5, now=NOW, revoked=set())
    assert info.value.code == "malformed"


def test_malformed_middle_link_is_refused() -> None:
    chain = build(3)
    chain[1] = chain[1][:-4]
    refused(chain, "malformed")


@pytest.mark.parametrize(
    "kw", [{"max_depth": 0}, {"max_depth": ucan.MAX_CHAIN_LENGTH + 1}, {"leeway": -1}, {"leeway": 3600}]
)
def test_verifier_arguments_are_bounded(kw: dict[str, object]) -> None:
    with pytest.raises(ValueError):
        verify(build(1), **kw)


def test_single_strings_are_refused_where_collections_are_expected() -> None:
    chain = build(2)
    with pytest.raises(TypeError):
        verify(chain, revoked=ucan.cid(chain[1]))  # would otherwise revoke nothing
    with pytest.raises(TypeError):
        verify(chain, trusted_roots=TENANT.public.did)  # would otherwise match substrings


def test_codes_are_distinct_and_complete() -> None:
    assert {"bad_signature", "expired", "not_yet_valid", "time_not_nested", "broken_link", "widened",
            "depth_exceeded", "untrusted_root", "revoked", "malformed", "wrong_audience"} <= ucan.CODES
    with pytest.raises(ValueError):
        DelegationError("something_else")
