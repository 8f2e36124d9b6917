"""issue() writes UCAN 0.10 exactly; parse() refuses everything else."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from shared import jose, ucan
from shared.b64 import b64u_decode, b64u_encode
from shared.capabilities import Capability, to_ucan
from shared.ucan import DelegationError
from tests.unit.delegation.chains import AGENTS, NOW, ROOT_CAPS, TENANT, build, payload_of, raw_token

AUD = AGENTS[0].public.did


def test_issue_writes_every_field() -> None:
    parent = build(1)[0]
    token = ucan.issue(AGENTS[0], AGENTS[1].public.did, ROOT_CAPS[:1], expires=NOW + 60, not_before=NOW,
                       proofs=[parent], nonce="n-1", facts={"purpose": "test"})
    header, payload, sig = jose.split(token)
    assert header == {"typ": "JWT", "alg": "EdDSA"}
    assert payload == {
        "ucv": "0.10.0",
        "iss": AGENTS[0].public.did,
        "aud": AGENTS[1].public.did,
        "nbf": NOW,
        "exp": NOW + 60,
        "nnc": "n-1",
        "fct": {"purpose": "test"},
        "cap": to_ucan(ROOT_CAPS[:1]),
        "prf": [ucan.cid(parent)],
    }
    parsed = ucan.parse(token)
    assert (parsed.iss, parsed.aud, parsed.nbf, parsed.exp, parsed.nnc, parsed.fct) == (
        AGENTS[0].public.did, AGENTS[1].public.did, NOW, NOW + 60, "n-1", {"purpose": "test"})
    assert parsed.capabilities == tuple(ROOT_CAPS[:1]) and parsed.prf == (ucan.cid(parent),)
    assert parsed.cid == ucan.cid(token) and len(sig) == 64


def test_null_exp_is_written_out() -> None:
    token = ucan.issue(TENANT, AUD, [], expires=None)
    payload = payload_of(token)
    assert "exp" in payload and payload["exp"] is None
    assert '"exp":null' in b64u_decode(token.split(".")[1]).decode()
    assert ucan.parse(token).exp is None and ucan.parse(token).capabilities == ()


def test_es256_issuer() -> None:
    token = ucan.issue(AGENTS[2], AUD, ROOT_CAPS, expires=NOW)
    assert jose.split(token)[0]["alg"] == "ES256"
    assert ucan.parse(token).iss.startswith("did:key:zDn")


# -- parse refusals ------------------------------------------------------------------------------------
def good_payload() -> dict[str, Any]:
    return payload_of(ucan.issue(TENANT, AUD, ROOT_CAPS, expires=NOW + 60))


HEADER = {"alg": "EdDSA", "typ": "JWT"}
HEADER_B64 = b64u_encode(b'{"alg":"EdDSA","typ":"JWT"}')
DEEP_B64 = b64u_encode(b'{"fct":' + b"[" * 5000 + b"]" * 5000 + b"}")


@pytest.mark.parametrize(
    ("header", "change"),
    [
        ({"alg": "none", "typ": "JWT"}, {}),
        ({"alg": "HS256", "typ": "JWT"}, {}),
        ({"alg": "RS256", "typ": "JWT"}, {}),
        ({"alg": "EdDSA", "typ": "ucan"}, {}),
        ({"alg": "EdDSA", "typ": "jwt"}, {}),
        ({"alg": "EdDSA"}, {}),
        ({"alg": "EdDSA", "typ": "JWT", "kid": "x"}, {}),
        ({"alg": "EdDSA", "typ": "JWT", "ucv": "0.9.1"}, {}),  # 0.9 put the version in the header
        (HEADER, {"ucv": "0.9.1"}),
        (HEADER, {"ucv": None}),
        (HEADER, {"att": []}),  # the 0.9 field
        (HEADER, {"iat": NOW}),
        (HEADER, {"exp": "soon"}),
        (HEADER, {"exp": 1.5}),
        (HEADER, {"exp": True}),
        (HEADER, {"exp": -1}),
        (HEADER, {"nbf": None}),
        (HEADER, {"nbf": NOW + 61}),  # after exp
        (HEADER, {"iss": "did:web:example.com"}),
        (HEADER, {"iss": TENANT.public.did + "#key-1"}),
        (HEADER, {"aud": AUD + "#x"}),
        (HEADER, {"iss": TENANT.public.did + "\n"}),  # decodes to the same key: a second spelling
        (HEADER, {"aud": AUD + " "}),
        (HEADER, {"aud": "did:key:z6MkBAD"}),
        (HEADER, {"aud": ["did:key:x"]}),
        (HEADER, {"nnc": 7}),
        (HEADER, {"nnc": "n" * (ucan.MAX_NONCE_LENGTH + 1)}),
        (HEADER, {"fct": ["x"]}),
        (HEADER, {"cap": []}),
        (HEADER, {"cap": {"https://h.example.com/r": {"records/read": [{"nb": 1}]}}}),
        (HEADER, {"cap": {"https://h.example.com/r": {"*": [{}]}}}),
        (HEADER, {"prf": "bafkrei"}),
        (HEADER, {"prf": ["bafkreibr2cyqpkgvhjb6a243ioyajswqlyvcxt5p3b5wle6tlcsovdf7hi\n"]}),
        (HEADER, {"prf": ["bafkreibr2cyqpkgvhjb6a243ioyajswqlyvcxt5p3b5wle6tlcsovdf7hi"] * 2}),
        (HEADER, {"prf": ["bafkreibr2cyqpkgvhjb6a243ioyajswqlyvcxt5p3b5wle6tlcsovdf7hj"]}),  # trailing bits
        (HEADER, {"prf": ["bafyreibr2cyqpkgvhjb6a243ioyajswqlyvcxt5p3b5wle6tlcsovdf7hi"]}),  # dag-cbor codec
        (HEADER, {"prf": ["Qmbr2cyqpkgvhjb6a243ioyajswqlyvcxt5p3b5wle6tlcsovdf7hi"]}),  # CIDv0
        (HEADER, {"prf": [ucan.cid(str(i)) for i in range(ucan.MAX_PROOFS + 1)]}),
    ],
)
def test_parse_refuses(header: dict[str, Any], change: dict[str, Any]) -> None:
    payload = {**good_payload(), **change}
    token = raw_token(header, payload, TENANT)
    with pytest.raises(DelegationError) as info:
        ucan.parse(token)
    assert info.value.code == "malformed"


@pytest.mark.parametrize("field", ["ucv", "iss", "aud", "exp", "cap"])
def test_parse_refuses_missing_required_field(field: str) -> None:
    payload = good_payload()
    del payload[field]
    with pytest.raises(DelegationError) as info:
        ucan.parse(raw_token(HEADER, payload, TENANT))
    assert info.value.code == "malformed"


@pytest.mark.parametrize(
    "token",
    [
        "",
        "a.b",
        "a.b.c.d",
        "not base64.e30.e30",
        "e30.e30.e30",
        raw_token(HEADER, {"ucv": "0.10.0"}, None),  # empty signature
        "x" * (ucan.MAX_UCAN_BYTES + 1),
        "é.é.é",
        # deeply nested JSON stays inside the size bound but would exhaust the decoder's recursion
        f"{HEADER_B64}.{DEEP_B64}.AA",
    ],
)
def test_parse_refuses_garbage(token: str) -> None:
    with pytest.raises(DelegationError) as info:
        ucan.parse(token)
    assert info.value.code == "malformed"


def test_parse_refuses_duplicate_members() -> None:
    good = ucan.issue(TENANT, AUD, [], expires=NOW)
    head, body, sig = good.split(".")
    dup = b64u_decode(body).decode().replace('"ucv":"0.10.0"', '"ucv":"0.10.0","ucv":"0.10.0"')
    with pytest.raises(DelegationError):
        ucan.parse(f"{head}.{b64u_encode(dup.encode())}.{sig}")


# -- issue refusals ------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "kw",
    [
        {"audience_did": "did:web:example.com"},
        {"audience_did": AUD + "#frag"},
        {"expires": "later"},
        {"expires": NOW, "not_before": NOW + 1},
        {"proofs": "a-single-token-string"},
        {"proofs": ["not.a.ucan"]},
        {"nonce": "n" * (ucan.MAX_NONCE_LENGTH + 1)},
        {"capabilities": [Capability("records", "https://h.example.com/r", {"read"})] * 40},
    ],
)
def test_issue_refuses(kw: dict[str, Any]) -> None:
    args: dict[str, Any] = {"audience_did": AUD, "capabilities": ROOT_CAPS, "expires": NOW}
    args.update(kw)
    with pytest.raises(DelegationError) as info:
        ucan.issue(TENANT, args.pop("audience_did"), args.pop("capabilities"), **args)
    assert info.value.code == "malformed"


def test_issue_needs_a_private_key() -> None:
    with pytest.raises(TypeError):
        ucan.issue(TENANT.public, AUD, [], expires=NOW)  # type: ignore[arg-type]


# -- fuzz: arbitrary payloads only ever meet a typed refusal -------------------------------------------
json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=8),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner, max_size=3),
    max_leaves=10,
)


@settings(max_examples=150)
@given(st.dictionaries(st.sampled_from(["ucv", "iss", "aud", "nbf", "exp", "nnc", "fct", "cap", "prf"]), json_values),
       st.booleans())
def test_parse_never_raises_anything_but_delegation_error(changes: dict[str, Any], drop: bool) -> None:
    payload = {**good_payload(), **changes}
    if drop and changes:
        del payload[next(iter(changes))]
    try:
        ucan.parse(raw_token(HEADER, payload, TENANT))
    except DelegationError as exc:
        assert exc.code == "malformed"
