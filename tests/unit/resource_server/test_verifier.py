"""The resource server's `Verifier`, with locally minted tokens: every refusal proves it refuses."""

from __future__ import annotations

import datetime as dt
import hashlib
import time
from typing import Any

import jwt
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from agentid.jwks import CallableJwks, KeyStore, StaticJwks, parse_jwks
from agentid.verifier import Verifier
from shared import jose
from shared.b64 import b64u_encode
from shared.dpop import DpopNonces, MemoryReplayCache, make_proof
from shared.keys import PrivateKey
from shared.oauth_errors import (
    InsufficientScopeError,
    InvalidDpopProofError,
    InvalidRequestError,
    InvalidTokenError,
    MissingCredentialsError,
    TemporarilyUnavailableError,
    UseDpopNonceError,
    VerificationError,
)
from tests.token_factory import AUDIENCE, DROP, TokenFactory, spiffe_id

URL = "https://ledger.example/accounts/42"
ISSUER = TokenFactory().issuer


class Fixture:
    def __init__(self, **verifier_kw: Any) -> None:
        self.issuer = TokenFactory()
        self.agent = PrivateKey.generate()
        self.fetches = 0
        self.jwks_doc = self.issuer.jwks

        async def fetch() -> dict:
            self.fetches += 1
            return self.jwks_doc

        self.verifier = Verifier(issuer=self.issuer.issuer, audience=AUDIENCE, jwks=CallableJwks(fetch),
                                 **verifier_kw)

    def token(self, **kw: Any) -> str:
        return self.issuer.mint(kw.pop("agent", self.agent), **kw)

    async def verify(self, token: str | None = None, *, method: str = "GET", url: str = URL,
                     proof_key: PrivateKey | None = None, proof: Any = "make", scheme: str = "DPoP",
                     action: str | None = "read", resource: str | None = URL, **kw: Any) -> Any:
        token = token or self.token()
        if proof == "make":
            proof = make_proof(proof_key or self.agent, method, url, access_token=token)
        return await self.verifier.verify(method, url, f"{scheme} {token}", proof, action=action,
                                          resource=resource if action else None, **kw)

    async def refused(self, reason: str, error: type[VerificationError] = InvalidTokenError, **kw: Any) -> None:
        with pytest.raises(error) as caught:
            await self.verify(**kw)
        assert caught.value.reason == reason, caught.value


@pytest.fixture
def fx() -> Fixture:
    return Fixture()


# -- acceptance --------------------------------------------------------------------------------------
async def test_a_valid_token_and_proof_are_accepted(fx: Fixture) -> None:
    sub = spiffe_id()
    verified = await fx.verify(fx.token(sub=sub))
    assert verified.agent_spiffe_id == sub and verified.subject == sub and verified.client_id == sub
    assert verified.tenant == "acme" and verified.jkt == fx.agent.public.thumbprint
    assert verified.agent_did == fx.agent.public.did and verified.act is None
    assert [c.type for c in verified.details] == ["ledger", "ledger"]


@pytest.mark.parametrize("alg", ["EdDSA", "ES256"])
async def test_tokens_signed_with_either_algorithm_and_the_ed25519_name(alg: str) -> None:
    fx = Fixture()
    fx.issuer = TokenFactory(alg=alg)
    fx.jwks_doc = fx.issuer.jwks
    assert await fx.verify()
    if alg == "EdDSA":  # the fully specified name, RFC 9864
        assert await fx.verify(fx.token(alg="Ed25519"))


async def test_application_at_jwt_typ_and_array_audience(fx: Fixture) -> None:
    assert await fx.verify(fx.token(typ="application/at+jwt"))
    assert await fx.verify(fx.token(aud=["https://other.example", AUDIENCE]))


async def test_plain_pyjwt_verifies_our_token_with_the_jwks(fx: Fixture) -> None:
    """A resource server without the SDK: PyJWT, the JWKS and the issuer's metadata."""
    token = fx.token()
    kid = jwt.get_unverified_header(token)["kid"]
    key = jwt.PyJWKSet.from_dict(fx.issuer.jwks)[kid]
    claims = jwt.decode(token, key.key, algorithms=["EdDSA"], audience=AUDIENCE, issuer=fx.issuer.issuer,
                        options={"require": ["exp", "iat", "iss", "aud", "sub", "jti"]})
    assert claims["cnf"]["jkt"] == fx.agent.public.thumbprint
    assert jwt.get_unverified_header(token)["typ"] == "at+jwt"


# -- the Done-when refusals ----------------------------------------------------------------------------
async def test_a_replayed_proof_is_refused(fx: Fixture) -> None:
    token = fx.token()
    proof = make_proof(fx.agent, "GET", URL, access_token=token)
    await fx.verify(token, proof=proof)
    await fx.refused("replayed", InvalidDpopProofError, token=token, proof=proof)


async def test_a_proof_for_another_method_or_url_is_refused(fx: Fixture) -> None:
    token = fx.token()
    with pytest.raises(InvalidDpopProofError, match="htm_mismatch"):
        await fx.verifier.verify("POST", URL, f"DPoP {token}", make_proof(fx.agent, "GET", URL, access_token=token))
    other = make_proof(fx.agent, "GET", URL.replace("42", "43"), access_token=token)
    await fx.refused("htu_mismatch", InvalidDpopProofError, token=token, proof=other)


async def test_a_token_presented_with_another_agents_key_is_refused(fx: Fixture) -> None:
    await fx.refused("key_binding", proof_key=PrivateKey.generate())


async def test_an_action_outside_the_details_is_refused(fx: Fixture) -> None:
    await fx.refused("outside_details", InsufficientScopeError, action="write")
    await fx.refused("outside_details", InsufficientScopeError, resource="https://ledger.example/admin/1")
    # the pay detail carries an amount caveat: over it, or without stating it, is outside
    pay = "https://ledger.example/payments"
    assert await fx.verify(url=pay, action="pay", resource=pay, amount={"value": "50", "currency": "EUR"})
    await fx.refused("outside_details", InsufficientScopeError, url=pay, action="pay", resource=pay,
                     amount={"value": "50.01", "currency": "EUR"})
    await fx.refused("outside_details", InsufficientScopeError, url=pay, action="pay", resource=pay)
    await fx.refused("bad_operation", InvalidRequestError, resource="not a uri")


async def test_an_expired_token_is_refused(fx: Fixture) -> None:
    await fx.refused("expired", token=fx.token(now=time.time() - 400))


async def test_an_expired_token_is_refused_even_from_the_cache(fx: Fixture) -> None:
    clock = [time.time()]
    fx.verifier._clock = lambda: clock[0]
    token = fx.token(now=clock[0])
    assert await fx.verify(token)
    clock[0] += 300 + 31
    with pytest.raises(InvalidTokenError, match="expired"):
        await fx.verifier.verify("GET", URL, f"DPoP {token}", make_proof(fx.agent, "GET", URL, access_token=token,
                                                                          now=clock[0]))


async def test_a_token_signed_by_an_unknown_key_is_refused_after_exactly_one_refetch(fx: Fixture) -> None:
    rogue = TokenFactory()
    assert await fx.verify()
    assert fx.fetches == 1
    await fx.refused("unknown_key", token=rogue.mint(fx.agent))
    assert fx.fetches == 2  # one refetch
    await fx.refused("unknown_key", token=rogue.mint(fx.agent))
    assert fx.fetches == 2  # rate-limited: no second refetch


async def test_a_key_published_later_is_found_by_the_refetch(fx: Fixture) -> None:
    assert await fx.verify()
    rotated = TokenFactory()
    fx.jwks_doc = {"keys": [fx.issuer.jwk(), rotated.jwk()]}
    assert await fx.verify(rotated.mint(fx.agent))
    assert fx.fetches == 2


async def test_a_token_signed_with_a_known_kid_but_another_key_is_refused(fx: Fixture) -> None:
    await fx.refused("bad_signature", token=fx.token(key=PrivateKey.generate()))


async def test_a_bearer_use_of_a_dpop_bound_token_is_refused(fx: Fixture) -> None:
    await fx.refused("bound_as_bearer", scheme="Bearer")
    await fx.refused("bound_as_bearer", scheme="Bearer", proof=None)


# -- the token, claim by claim ---------------------------------------------------------------------------
async def test_wrong_issuer(fx: Fixture) -> None:
    await fx.refused("bad_issuer", token=fx.token(iss="https://agentid.example/tenants/other"))
    await fx.refused("bad_issuer", token=fx.token(iss=DROP))
    assert fx.fetches == 0  # a token from elsewhere never triggers a JWKS fetch


async def test_wrong_audience(fx: Fixture) -> None:
    await fx.refused("bad_audience", token=fx.token(aud="https://other.example"))
    await fx.refused("bad_audience", token=fx.token(aud=[]))
    await fx.refused("bad_audience", token=fx.token(aud=DROP))


@pytest.mark.parametrize("typ", ["JWT", "jwt", "id_token+jwt", "vc+jwt", "dpop+jwt", None])
async def test_wrong_typ(fx: Fixture, typ: str | None) -> None:
    """ID tokens and JWT-SVIDs (typ JWT) are not access tokens."""
    await fx.refused("bad_typ", token=fx.token(typ=typ))  # type: ignore[arg-type]


async def test_a_jwt_svid_is_not_an_access_token(fx: Fixture) -> None:
    svid = jose.sign({"sub": spiffe_id(), "aud": [AUDIENCE], "exp": time.time() + 300, "iat": time.time()},
                     fx.issuer.key, typ="JWT", kid=fx.issuer.kid)
    await fx.refused("bad_typ", token=svid)


@pytest.mark.parametrize("alg", ["none", "HS256", "RS256"])
async def test_algorithms_outside_the_allow_list(fx: Fixture, alg: str) -> None:
    head = b64u_encode(f'{{"typ":"at+jwt","alg":"{alg}","kid":"{fx.issuer.kid}"}}'.encode())
    body = fx.token().split(".")[1]
    await fx.refused("bad_alg", token=f"{head}.{body}.{b64u_encode(b'x' * 32)}")


async def test_alg_must_fit_the_key(fx: Fixture) -> None:
    head = b64u_encode(f'{{"typ":"at+jwt","alg":"ES256","kid":"{fx.issuer.kid}"}}'.encode())
    _, body, sig = fx.token().split(".")
    await fx.refused("bad_alg", token=f"{head}.{body}.{sig}")


async def test_time_claims(fx: Fixture) -> None:
    await fx.refused("not_yet_valid", token=fx.token(now=time.time() + 120))
    await fx.refused("not_yet_valid", token=fx.token(nbf=int(time.time()) + 120))
    await fx.refused("lifetime_too_long", token=fx.token(lifetime=3600))
    await fx.refused("bad_claims", token=fx.token(exp="tomorrow"))
    await fx.refused("bad_claims", token=fx.token(iat=DROP))
    assert await fx.verify(fx.token(now=time.time() - 300 - 29))  # within the leeway


@pytest.mark.parametrize("cnf", [DROP, {}, {"jkt": "x"}, {"x5t#S256": "a" * 43, "jkt": "b" * 43},
                                 {"jwk": {"kty": "OKP"}}, {"jku": "https://evil.example"}, "jkt"])
async def test_cnf_must_hold_exactly_one_known_binding(fx: Fixture, cnf: object) -> None:
    await fx.refused("bad_cnf", token=fx.token(cnf=cnf))


@pytest.mark.parametrize("claim,value", [("sub", DROP), ("jti", DROP), ("client_id", 7), ("tenant", DROP),
                                         ("jti", "j" * 200), ("agent_did", 3)])
async def test_malformed_claims(fx: Fixture, claim: str, value: object) -> None:
    await fx.refused("bad_claims", token=fx.token(**{claim: value}))


async def test_another_tenants_token_is_refused(fx: Fixture) -> None:
    await fx.refused("wrong_tenant", token=fx.token(tenant="other"))


@pytest.mark.parametrize("details", [DROP, [], [{"type": "ledger"}], "read",
                                     [{"type": "ledger", "locations": ["https://x.example/"], "actions": ["*"]}]])
async def test_malformed_details_refuse_the_token(fx: Fixture, details: object) -> None:
    await fx.refused("bad_details", token=fx.token(authorization_details=details))


async def test_delegation_depth_above_the_limit_is_refused(fx: Fixture) -> None:
    chain = [f"bafy{i}" for i in range(6)]
    assert await fx.verify(fx.token(delegation={"depth": 5, "chain": chain[:5]}))
    await fx.refused("depth_exceeded", token=fx.token(delegation={"depth": 6, "chain": chain}))
    strict = Fixture(max_delegation_depth=2)
    await strict.refused("depth_exceeded", token=strict.token(delegation={"depth": 3, "chain": chain[:3]}))
    await fx.refused("bad_claims", token=fx.token(delegation={"depth": True, "chain": chain}))
    await fx.refused("bad_claims", token=fx.token(delegation={"depth": 1, "chain": []}))


async def test_actor_chain_only_the_outermost_acts(fx: Fixture) -> None:
    user, agent, earlier = "user:alice", spiffe_id(), spiffe_id()
    act = {"sub": agent, "did": fx.agent.public.did, "act": {"sub": earlier}}
    verified = await fx.verify(fx.token(sub=user, client_id=agent, act=act))
    assert verified.subject == user and verified.agent_spiffe_id == agent
    assert verified.actors == (agent, earlier) and verified.act["act"] == {"sub": earlier}
    deep: dict = {"sub": "a0"}
    for i in range(1, 6):
        deep = {"sub": f"a{i}", "act": deep}
    await fx.refused("depth_exceeded", token=fx.token(act=deep))
    await fx.refused("bad_claims", token=fx.token(act={"did": "x"}))


# -- mTLS-bound tokens ----------------------------------------------------------------------------------
def _certificate() -> bytes:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "agent")])
    now = dt.datetime.now(dt.UTC)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(1).not_valid_before(now).not_valid_after(now + dt.timedelta(hours=1))
            .sign(key, hashes.SHA256()))
    return cert.public_bytes(serialization.Encoding.DER)


async def test_certificate_bound_token_needs_that_certificate(fx: Fixture) -> None:
    cert, other = _certificate(), _certificate()
    token = fx.token(cnf={"x5t#S256": b64u_encode(hashlib.sha256(cert).digest())})
    verified = await fx.verifier.verify("GET", URL, f"Bearer {token}", None, client_cert=cert,
                                        action="read", resource=URL)
    assert verified.x5t and verified.jkt is None
    await fx.refused("certificate_binding", token=token, scheme="Bearer", proof=None, client_cert=other)
    await fx.refused("certificate_binding", token=token, scheme="Bearer", proof=None)
    await fx.refused("not_dpop_bound", token=token, client_cert=cert)


# -- the Authorization header -------------------------------------------------------------------------------
async def test_authorization_header_shapes(fx: Fixture) -> None:
    token = fx.token()
    proof = make_proof(fx.agent, "GET", URL, access_token=token)
    v = fx.verifier
    for missing in (None, "", []):
        with pytest.raises(MissingCredentialsError):
            await v.verify("GET", URL, missing, proof)
    with pytest.raises(MissingCredentialsError):
        await v.verify("GET", URL, f"Basic {token}", proof)
    with pytest.raises(InvalidRequestError, match="multiple_authorization"):
        await v.verify("GET", URL, [f"DPoP {token}", f"Bearer {token}"], proof)
    with pytest.raises(InvalidRequestError, match="multiple_credentials"):
        await v.verify("GET", URL, f"DPoP {token}, Bearer {token}", proof)
    with pytest.raises(InvalidTokenError, match="malformed"):
        await v.verify("GET", URL, "DPoP not*a*token", proof)
    with pytest.raises(InvalidTokenError, match="malformed"):
        await v.verify("GET", URL, "DPoP " + "a" * 20_000, proof)
    with pytest.raises(InvalidDpopProofError, match="multiple_proofs"):
        await v.verify("GET", URL, f"DPoP {token}", [proof, proof])
    with pytest.raises(InvalidDpopProofError, match="missing"):
        await v.verify("GET", URL, f"DPoP {token}", None)
    assert await v.verify("GET", URL, f"dpop   {token}", proof)  # scheme names ignore case


# -- the token cache ------------------------------------------------------------------------------------------
async def test_the_cache_skips_the_signature_but_never_the_proof(fx: Fixture) -> None:
    token = fx.token()
    assert await fx.verify(token)
    calls = []
    original = fx.verifier._verify_token

    async def counting(*a: Any) -> Any:
        calls.append(1)
        return await original(*a)

    fx.verifier._verify_token = counting  # type: ignore[method-assign]
    assert await fx.verify(token)
    assert calls == []  # cached
    await fx.refused("key_binding", token=token, proof_key=PrivateKey.generate())
    await fx.refused("htu_mismatch", InvalidDpopProofError, token=token,
                     proof=make_proof(fx.agent, "GET", URL + "0", access_token=token))
    await fx.refused("bound_as_bearer", token=token, scheme="Bearer")
    await fx.refused("outside_details", InsufficientScopeError, token=token, action="write")
    assert calls == []


async def test_a_key_leaving_the_jwks_drops_cached_tokens(fx: Fixture) -> None:
    token = fx.token()
    assert await fx.verify(token)
    replacement = TokenFactory()
    fx.jwks_doc = replacement.jwks
    await fx.verifier.keys.refresh()
    await fx.refused("unknown_key", token=token)


async def test_cache_size_is_bounded() -> None:
    fx = Fixture(token_cache_size=2)
    for _ in range(5):
        assert await fx.verify()
    assert len(fx.verifier._tokens) == 2


# -- server nonces, replay cache ---------------------------------------------------------------------------------
async def test_server_nonce_is_required_once_configured() -> None:
    nonces = DpopNonces(b"n" * 32)
    fx = Fixture(nonce=nonces)
    token = fx.token()
    with pytest.raises(UseDpopNonceError) as caught:
        await fx.verify(token)
    proof = make_proof(fx.agent, "GET", URL, access_token=token, nonce=caught.value.nonce)
    assert await fx.verify(token, proof=proof)


async def test_an_unreachable_replay_cache_fails_closed() -> None:
    class Down:
        async def add(self, key: str) -> bool:
            from shared.errors import Unavailable
            raise Unavailable("down")

    fx = Fixture(replay=Down())
    await fx.refused("replay_cache_unavailable", TemporarilyUnavailableError)


async def test_jwks_that_cannot_be_fetched_fails_closed() -> None:
    async def broken() -> dict:
        raise OSError("unreachable")

    v = Verifier(issuer=ISSUER, audience=AUDIENCE, jwks=CallableJwks(broken))
    fx = Fixture()
    fx.verifier = v
    await fx.refused("jwks_unavailable", TemporarilyUnavailableError)


# -- the JWKS -----------------------------------------------------------------------------------------------------
def test_parse_jwks_keeps_only_usable_signature_keys() -> None:
    ed, ec_key, other = PrivateKey.generate(), PrivateKey.generate("ES256"), PrivateKey.generate()
    doc = {"keys": [
        ed.public.jwk(kid="ed", use="sig", alg="EdDSA"),
        ec_key.public.jwk(kid="ec", alg="ES256"),
        ed.public.jwk(kid="enc", use="enc"),
        ed.public.jwk(kid="wrong-alg", alg="ES256"),
        {**ed.private_jwk(), "kid": "private"},
        {"kty": "RSA", "kid": "rsa", "n": "AQAB", "e": "AQAB"},
        ed.public.jwk(kid="dup"), other.public.jwk(kid="dup"),
        "not a key", ed.public.jwk(),
    ]}
    keys = parse_jwks(doc)
    assert set(keys) == {"ed", "ec"}
    assert keys["ed"].algs == {"EdDSA", "Ed25519"} and keys["ec"].algs == {"ES256"}
    for bad in ({}, {"keys": "x"}, {"keys": [{}] * 40}):
        with pytest.raises(ValueError):
            parse_jwks(bad)


async def test_key_store_shares_one_fetch_and_refreshes_periodically() -> None:
    import asyncio

    fetches = []
    gate = asyncio.Event()
    issuer = TokenFactory()

    async def fetch() -> dict:
        fetches.append(1)
        await gate.wait()
        return issuer.jwks

    clock = [0.0]
    store = KeyStore(CallableJwks(fetch), refresh_s=300, clock=lambda: clock[0])
    waiting = [asyncio.create_task(store.get(issuer.kid)) for _ in range(5)]
    await asyncio.sleep(0)
    gate.set()
    assert all(r is not None for r in await asyncio.gather(*waiting))
    assert len(fetches) == 1
    clock[0] = 301
    assert await store.get(issuer.kid) is not None and len(fetches) == 2


def test_replay_default_is_memory() -> None:
    v = Verifier(issuer=ISSUER, audience=AUDIENCE, jwks=StaticJwks({"keys": []}))
    assert isinstance(v.replay, MemoryReplayCache)


async def test_es256_agent_keys() -> None:
    fx = Fixture()
    fx.agent = PrivateKey.generate("ES256")
    verified = await fx.verify()
    assert verified.jkt == fx.agent.public.thumbprint


# -- HttpJwks ----------------------------------------------------------------------------------------------------
def _http(handler: Any) -> Any:
    import httpx

    return httpx.AsyncClient(transport=httpx.MockTransport(handler))


async def test_http_jwks_fetches_and_bounds_the_document() -> None:
    import httpx

    from agentid.jwks import HttpJwks

    issuer = TokenFactory()
    seen: list[str] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(str(request.url))
        if request.url.path == "/jwks":
            return httpx.Response(200, json=issuer.jwks)
        if request.url.path == "/huge":
            return httpx.Response(200, content=b'{"keys": [' + b" " * 70_000 + b"]}")
        if request.url.path == "/moved":
            return httpx.Response(302, headers={"Location": "https://evil.example/jwks"})
        return httpx.Response(200, content=b'{"keys": [], "keys": []}')

    async with _http(handler) as client:
        assert (await HttpJwks("https://as.example/jwks", client=client).fetch()) == issuer.jwks
        for path in ("/huge", "/moved", "/dup"):
            with pytest.raises(ValueError):
                await HttpJwks(f"https://as.example{path}", client=client).fetch()
    assert "https://evil.example/jwks" not in seen  # redirects are not followed

    async with _http(handler) as client:
        v = Verifier(issuer=issuer.issuer, audience=AUDIENCE, jwks=HttpJwks("https://as.example/jwks", client=client))
        fx = Fixture()
        fx.verifier, fx.issuer = v, issuer
        assert await fx.verify()


async def test_token_header_refusals(fx: Fixture) -> None:
    await fx.refused("bad_header", token=fx.token(headers={"crit": ["exp"], "exp": 1}))
    await fx.refused("unknown_key", token=fx.token(kid=""))
    await fx.refused("malformed", token="e30.e30")


async def test_a_request_url_the_server_cannot_parse_is_its_own_error(fx: Fixture) -> None:
    token = fx.token()
    with pytest.raises(InvalidRequestError, match="bad_request_url"):
        await fx.verifier.verify("GET", "not a url", f"DPoP {token}", make_proof(fx.agent, "GET", URL, access_token=token))
