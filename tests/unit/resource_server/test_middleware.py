"""The ASGI middleware and the example ledger: what a client sees for each outcome (status,
`WWW-Authenticate`, `DPoP-Nonce`), driven in-process through httpx and once over real uvicorn."""

from __future__ import annotations

import hashlib
import json
import time
from typing import Any
from urllib.parse import quote

import httpx
import pytest
from cryptography.hazmat.primitives import serialization

from agentid.dpop import DpopAuth, dpop_proof
from agentid.jwks import StaticJwks
from agentid.middleware import AgentidMiddleware, Rule, challenge
from agentid.verifier import Verifier
from examples.protected_service.app import RULES, create_app, serve
from shared.b64 import b64u_encode
from shared.capabilities import Capability
from shared.dpop import DpopNonces
from shared.keys import PrivateKey
from shared.oauth_errors import InvalidTokenError
from tests.token_factory import AUDIENCE, TokenFactory
from tests.unit.resource_server.test_verifier import _certificate

BASE = "https://ledger.example"
ALGS = 'algs="EdDSA Ed25519 ES256"'


class Ledger:
    def __init__(self, *, nonce: DpopNonces | None = None) -> None:
        self.issuer = TokenFactory()
        self.agent = PrivateKey.generate()
        self.verifier = Verifier(issuer=self.issuer.issuer, audience=AUDIENCE, jwks=StaticJwks(self.issuer.jwks),
                                 nonce=nonce)
        self.app = create_app(lambda: self.verifier, base_url=BASE, authorization_servers=[self.issuer.issuer])
        self.app.state.verifier = self.verifier  # in-process requests skip the lifespan
        self.http = httpx.AsyncClient(transport=httpx.ASGITransport(app=self.app), base_url=BASE)

    def token(self, **kw: Any) -> str:
        return self.issuer.mint(kw.pop("agent", self.agent), **kw)

    async def call(self, method: str, path: str, token: str | None = None, *, proof: Any = "make",
                   key: PrivateKey | None = None, scheme: str = "DPoP", proof_method: str | None = None,
                   proof_url: str | None = None, headers: dict | list | None = None, **kw: Any) -> httpx.Response:
        token = token if token is not None else self.token()
        hdrs: list[tuple[str, str]] = list((headers or {}).items()) if isinstance(headers, dict) else list(headers or [])
        if token:
            hdrs.append(("Authorization", f"{scheme} {token}"))
        if proof == "make":
            proof = dpop_proof(key or self.agent, proof_method or method, proof_url or BASE + path, token)
        if proof:
            hdrs.append(("DPoP", proof))
        return await self.http.request(method, path, headers=hdrs, **kw)


@pytest.fixture
async def ledger() -> Any:
    lg = Ledger()
    yield lg
    await lg.http.aclose()


def _www(resp: httpx.Response) -> str:
    return resp.headers["www-authenticate"]


def _error(resp: httpx.Response) -> str | None:
    www = _www(resp)
    return www.split('error="', 1)[1].split('"', 1)[0] if 'error="' in www else None


# -- the Done-when list, through the example service -----------------------------------------------------
async def test_a_valid_token_and_proof_are_served(ledger: Ledger) -> None:
    resp = await ledger.call("GET", "/accounts/42")
    assert resp.status_code == 200, resp.text
    assert resp.json()["id"] == "42" and resp.json()["read_by"].startswith("spiffe://")


async def test_a_replayed_proof_is_refused(ledger: Ledger) -> None:
    token = ledger.token()
    proof = dpop_proof(ledger.agent, "GET", BASE + "/accounts/42", token)
    assert (await ledger.call("GET", "/accounts/42", token, proof=proof)).status_code == 200
    resp = await ledger.call("GET", "/accounts/42", token, proof=proof)
    assert resp.status_code == 401 and _error(resp) == "invalid_dpop_proof"


async def test_a_proof_for_another_method_or_url_is_refused(ledger: Ledger) -> None:
    for kw in ({"proof_method": "POST"}, {"proof_url": BASE + "/accounts/43"}, {"proof_url": "https://evil.example/accounts/42"}):
        resp = await ledger.call("GET", "/accounts/42", **kw)
        assert resp.status_code == 401 and _error(resp) == "invalid_dpop_proof", kw


async def test_a_token_presented_with_another_agents_key_is_refused(ledger: Ledger) -> None:
    resp = await ledger.call("GET", "/accounts/42", key=PrivateKey.generate())
    assert resp.status_code == 401 and _error(resp) == "invalid_token"
    assert 'error_description="Invalid DPoP key binding"' in _www(resp)


async def test_an_action_outside_the_details_is_refused(ledger: Ledger) -> None:
    only_43 = [Capability(type="ledger", resource=f"{BASE}/accounts/43", actions={"read"})]
    resp = await ledger.call("GET", "/accounts/42", ledger.token(details=only_43))
    assert resp.status_code == 403 and _error(resp) == "insufficient_scope"
    assert (await ledger.call("GET", "/accounts/43", ledger.token(details=only_43))).status_code == 200


async def test_a_payment_over_the_amount_caveat_is_refused_by_the_handler(ledger: Ledger) -> None:
    ok = await ledger.call("POST", "/payments", json={"to": "43", "amount": {"value": "49.99", "currency": "EUR"}})
    assert ok.status_code == 201, ok.text
    for amount in ({"value": "50.01", "currency": "EUR"}, {"value": "1", "currency": "USD"}):
        resp = await ledger.call("POST", "/payments", json={"to": "43", "amount": amount})
        assert resp.status_code == 403 and _error(resp) == "insufficient_scope"
    bad = await ledger.call("POST", "/payments", json={"to": "43", "amount": {"value": "-1", "currency": "EUR"}})
    assert bad.status_code == 400 and _error(bad) == "invalid_request"
    assert len(ledger.app.state.payments) == 1


async def test_an_expired_token_is_refused(ledger: Ledger) -> None:
    resp = await ledger.call("GET", "/accounts/42", ledger.token(now=time.time() - 400))
    assert resp.status_code == 401 and _error(resp) == "invalid_token"


async def test_a_token_signed_by_an_unknown_key_is_refused(ledger: Ledger) -> None:
    resp = await ledger.call("GET", "/accounts/42", TokenFactory().mint(ledger.agent))
    assert resp.status_code == 401 and _error(resp) == "invalid_token"


async def test_a_bearer_use_of_the_token_is_refused(ledger: Ledger) -> None:
    for proof in (None, "make"):
        resp = await ledger.call("GET", "/accounts/42", scheme="Bearer", proof=proof)
        assert resp.status_code == 401 and _error(resp) == "invalid_token"
        assert _www(resp).startswith("DPoP ")


# -- challenges and headers ----------------------------------------------------------------------------------
async def test_no_credentials_get_a_bare_challenge(ledger: Ledger) -> None:
    resp = await ledger.http.get("/accounts/42")
    assert resp.status_code == 401
    assert _www(resp) == f'DPoP {ALGS}, resource_metadata="{BASE}/.well-known/oauth-protected-resource"'
    assert resp.headers["cache-control"] == "no-store"


async def test_both_schemes_are_an_invalid_request(ledger: Ledger) -> None:
    token = ledger.token()
    resp = await ledger.call("GET", "/accounts/42", token, headers=[("Authorization", f"Bearer {token}")])
    assert resp.status_code == 400 and _error(resp) == "invalid_request"


async def test_two_dpop_headers_are_an_invalid_proof(ledger: Ledger) -> None:
    token = ledger.token()
    extra = dpop_proof(ledger.agent, "GET", BASE + "/accounts/42", token)
    resp = await ledger.call("GET", "/accounts/42", token, headers=[("DPoP", extra)])
    assert resp.status_code == 401 and _error(resp) == "invalid_dpop_proof"


async def test_refusals_never_echo_tokens_or_proofs(ledger: Ledger) -> None:
    token = ledger.token(aud="https://secret-audience.example")
    resp = await ledger.call("GET", "/accounts/42", token)
    assert resp.status_code == 401
    for text in (_www(resp), resp.text):
        assert token[:30] not in text and "secret-audience" not in text


def test_challenge_quoting_cannot_be_broken_by_a_description() -> None:
    www = challenge(InvalidTokenError("x", 'bad "quoted" \\ text\r\n'))
    assert www == f'DPoP error="invalid_token", error_description="bad quoted  text", {ALGS}'


async def test_htu_uses_the_configured_base_url_never_the_host_header(ledger: Ledger) -> None:
    token = ledger.token()
    spoofed = dpop_proof(ledger.agent, "GET", "https://evil.example/accounts/42", token)
    resp = await ledger.call("GET", "/accounts/42", token, proof=spoofed,
                             headers={"Host": "evil.example", "X-Forwarded-Host": "evil.example"})
    assert resp.status_code == 401
    ok = await ledger.call("GET", "/accounts/42", headers={"Host": "evil.example", "X-Forwarded-Proto": "http"})
    assert ok.status_code == 200


async def test_unmapped_routes_are_refused_after_authentication(ledger: Ledger) -> None:
    assert (await ledger.http.get("/nowhere")).status_code == 401
    resp = await ledger.call("GET", "/nowhere")
    assert resp.status_code == 403 and _error(resp) == "insufficient_scope"


async def test_protected_resource_metadata(ledger: Ledger) -> None:
    resp = await ledger.http.get("/.well-known/oauth-protected-resource")
    assert resp.status_code == 200
    doc = resp.json()
    assert doc["resource"] == AUDIENCE
    assert doc["authorization_servers"] == [ledger.issuer.issuer]
    assert doc["dpop_bound_access_tokens_required"] is True
    assert doc["dpop_signing_alg_values_supported"] == ["EdDSA", "Ed25519", "ES256"]
    assert doc["authorization_details_types_supported"] == ["ledger"]
    assert "jwks_uri" not in doc  # that would be the resource's own keys (RFC 9728), which it has none of


async def test_server_nonces_and_the_client_retry() -> None:
    lg = Ledger(nonce=DpopNonces(b"n" * 32))
    token = lg.token()
    bare = await lg.call("GET", "/accounts/42", token)
    assert bare.status_code == 401 and _error(bare) == "use_dpop_nonce" and bare.headers["dpop-nonce"]
    sent: list[httpx.Request] = []
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=lg.app), base_url=BASE,
                                 auth=DpopAuth(lg.agent, lambda: token),
                                 event_hooks={"request": [lambda r: _record(sent, r)]}) as client:
        first = await client.get("/accounts/42")
        assert first.status_code == 200 and first.headers["dpop-nonce"]
        assert len(sent) == 2  # refused once for the nonce, then retried with it
        assert (await client.get("/accounts/43")).status_code == 200
        assert len(sent) == 3  # the nonce was remembered
    await lg.http.aclose()


async def _record(sent: list, request: httpx.Request) -> None:
    sent.append(request)


async def test_dpop_auth_with_an_async_token_source(ledger: Ledger) -> None:
    token = ledger.token()

    async def current() -> str:
        return token

    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=ledger.app), base_url=BASE,
                                 auth=DpopAuth(ledger.agent, current)) as client:
        assert (await client.get("/accounts/42?verbose=1")).status_code == 200
        pay = await client.post("/payments", json={"to": "43", "amount": {"value": "5", "currency": "EUR"}})
        assert pay.status_code == 201


async def test_a_refusal_is_a_503_when_the_replay_cache_is_down(ledger: Ledger) -> None:
    class Down:
        async def add(self, key: str) -> bool:
            from shared.errors import Unavailable
            raise Unavailable("down")

    ledger.verifier.replay = Down()
    resp = await ledger.call("GET", "/accounts/42")
    assert resp.status_code == 503 and resp.headers["retry-after"] == "1"


# -- client certificates -----------------------------------------------------------------------------------
async def _asgi(app: Any, scope: dict) -> tuple[int, dict]:
    messages: list[dict] = []

    async def receive() -> dict:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: dict) -> None:
        messages.append(message)

    base = {"type": "http", "method": "GET", "path": "/accounts/42", "raw_path": b"/accounts/42",
            "query_string": b"", "headers": [], "client": ("10.0.0.9", 5000), "scheme": "https"}
    await app({**base, **scope}, receive, send)
    start = messages[0]
    return start["status"], {k.decode(): v.decode() for k, v in start["headers"]}


def _pem(der: bytes) -> str:
    from cryptography import x509
    return x509.load_der_x509_certificate(der).public_bytes(serialization.Encoding.PEM).decode()


async def test_certificate_bound_tokens_through_the_tls_extension_or_a_trusted_proxy() -> None:
    issuer, cert = TokenFactory(), _certificate()
    verifier = Verifier(issuer=issuer.issuer, audience=AUDIENCE, jwks=StaticJwks(issuer.jwks))
    token = issuer.mint(cnf={"x5t#S256": b64u_encode(hashlib.sha256(cert).digest())})
    auth = [(b"authorization", f"Bearer {token}".encode())]

    async def ok(scope: Any, receive: Any, send: Any) -> None:
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b""})

    tls = AgentidMiddleware(ok, verifier=verifier, base_url=BASE, rules=RULES, client_cert="tls")
    ext = {"extensions": {"tls": {"client_cert_chain": [_pem(cert)]}}}
    assert (await _asgi(tls, {"headers": auth, **ext}))[0] == 200
    assert (await _asgi(tls, {"headers": auth}))[0] == 401
    other = {"extensions": {"tls": {"client_cert_chain": [_pem(_certificate())]}}}
    assert (await _asgi(tls, {"headers": auth, **other}))[0] == 401
    unverified = {"extensions": {"tls": {"client_cert_chain": [_pem(cert)], "client_cert_error": "unknown ca"}}}
    assert (await _asgi(tls, {"headers": auth, **unverified}))[0] == 401

    header = [(b"x-client-cert", quote(_pem(cert)).encode())]
    proxied = AgentidMiddleware(ok, verifier=verifier, base_url=BASE, rules=RULES,
                                client_cert_header="X-Client-Cert", trusted_proxies={"10.0.0.9"})
    assert (await _asgi(proxied, {"headers": auth + header}))[0] == 200
    status, headers = await _asgi(proxied, {"headers": auth + header, "client": ("203.0.113.5", 1)})
    assert status == 401 and 'error="invalid_token"' in headers["www-authenticate"]
    with pytest.raises(ValueError):
        AgentidMiddleware(ok, verifier=verifier, base_url=BASE, client_cert_header="X-Client-Cert")


async def test_websockets_are_refused(ledger: Ledger) -> None:
    sent: list[dict] = []

    async def send(message: dict) -> None:
        sent.append(message)

    mw = AgentidMiddleware(ledger.app, verifier=ledger.verifier, base_url=BASE, rules=RULES)
    await mw({"type": "websocket", "path": "/accounts/42", "headers": []}, None, send)  # type: ignore[arg-type]
    assert sent == [{"type": "websocket.close", "code": 1008}]


def test_rules_name_only_placeholders_of_their_path() -> None:
    with pytest.raises(ValueError):
        Rule("GET", "/a/{id}", "read", "https://x.example/a/{other}")
    with pytest.raises(ValueError):
        Rule("GET", "/a", "read")
    rule = Rule("GET", "/a/{id}/b", "read", "https://x.example/a/{id}")
    assert rule.match("GET", "/a/7/b") == {"id": "7"} and rule.match("GET", "/a/7/8/b") is None
    assert rule.match("POST", "/a/7/b") is None


# -- over a real server ---------------------------------------------------------------------------------------
async def test_the_example_service_over_uvicorn() -> None:
    issuer, agent = TokenFactory(), PrivateKey.generate()
    verifier = Verifier(issuer=issuer.issuer, audience=AUDIENCE, jwks=StaticJwks(issuer.jwks))
    token = issuer.mint(agent)
    async with serve(lambda base: create_app(lambda: verifier, base_url=base)) as base_url:
        async with httpx.AsyncClient(base_url=base_url, auth=DpopAuth(agent, lambda: token)) as client:
            resp = await client.get("/accounts/42")
            assert resp.status_code == 200, resp.text
        async with httpx.AsyncClient(base_url=base_url) as plain:
            resp = await plain.get("/accounts/42", headers={"Authorization": f"Bearer {token}"})
            assert resp.status_code == 401
            meta = await plain.get("/.well-known/oauth-protected-resource")
            assert json.loads(meta.text)["resource"] == AUDIENCE


def test_dpop_auth_sync_client_retries_once_with_the_servers_nonce() -> None:
    from shared.dpop import check_proof

    agent, token = PrivateKey.generate(), "tok.en.x"
    nonces = DpopNonces(b"q" * 32)
    seen: list[dict] = []

    def handler(request: httpx.Request) -> httpx.Response:
        proof = request.headers["dpop"]
        assert request.headers["authorization"] == f"DPoP {token}"
        try:
            result = check_proof(proof, method=request.method, url=str(request.url), access_token=token,
                                 expected_jkt=agent.public.thumbprint, nonce_check=nonces)
        except Exception as exc:  # noqa: BLE001 - the test server answers any refusal with a challenge
            seen.append({"refused": type(exc).__name__})
            return httpx.Response(401, headers={"WWW-Authenticate": 'DPoP error="use_dpop_nonce"',
                                                "DPoP-Nonce": nonces.current()})
        seen.append({"htu": result.htu, "nonce": result.nonce})
        return httpx.Response(200, headers={"DPoP-Nonce": nonces.current()})

    with httpx.Client(transport=httpx.MockTransport(handler), auth=DpopAuth(agent, lambda: token)) as client:
        assert client.get("https://ledger.example/accounts/42?x=1").status_code == 200
        assert client.get("https://ledger.example/accounts/43").status_code == 200
    assert [s.get("refused") for s in seen] == ["UseDpopNonceError", None, None]
    assert seen[1] == {"htu": "https://ledger.example/accounts/42", "nonce": nonces.current()}

    async def async_source() -> str:
        return token

    with httpx.Client(transport=httpx.MockTransport(handler), auth=DpopAuth(agent, async_source)) as client, \
            pytest.raises(TypeError):
        client.get("https://ledger.example/accounts/42")
