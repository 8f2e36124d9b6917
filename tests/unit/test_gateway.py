"""The gateway's pure parts: form and Basic parsing, the error mapping, nonce keys, assertion audiences."""

from __future__ import annotations

import base64

import pytest
from starlette.requests import Request

from services.gateway.errors import OAuthError, from_dpop, from_grant
from services.gateway.forms import Form, basic_credentials
from services.gateway.worker import nonce_secret
from services.token.grants import Grants
from shared.dpop import DpopNonces
from shared.errors import (
    AgentInactive,
    InternalError,
    InvalidClient,
    InvalidGrant,
    PolicyDenied,
    RateLimited,
    Unavailable,
)
from shared.oauth_errors import InvalidDpopProofError, UseDpopNonceError

ISSUER = "https://as.example/tenants/acme"


def request(*headers: tuple[str, str]) -> Request:
    return Request({"type": "http", "method": "POST", "path": "/", "headers": [
        (k.lower().encode("latin-1"), v.encode("latin-1")) for k, v in headers]})


def test_form_parameters_appear_once_and_empty_ones_are_omitted() -> None:
    form = Form([("a", "1"), ("b", ""), ("r", "x"), ("r", "y"), ("a2", "z")])
    assert form.one("a") == "1" and form.one("b") is None and "b" not in form
    assert form.many("r") == ["x", "y"]
    with pytest.raises(OAuthError) as err:
        form.one("r")
    assert (err.value.status, err.value.error) == (400, "invalid_request")
    with pytest.raises(OAuthError):
        form.require("missing")


def test_basic_credentials_are_form_url_decoded() -> None:
    raw = base64.b64encode(b"rs%5F1+a:s%3Acret+x").decode()
    assert basic_credentials(request(("Authorization", f"Basic {raw}"))) == ("rs_1 a", "s:cret x")
    assert basic_credentials(request()) is None


@pytest.mark.parametrize("header", ["Bearer x", "Basic", "Basic !!!", "Basic " + base64.b64encode(b"nocolon").decode(),
                                    "Basic " + base64.b64encode(b":secret").decode(),
                                    "Basic " + base64.b64encode(b"id:").decode(),
                                    "Basic " + base64.b64encode(b"id:%zz%").decode() + "=",
                                    "Basic " + base64.b64encode(b"\xff:x").decode()])
def test_bad_basic_credentials_are_invalid_client_with_a_challenge(header: str) -> None:
    with pytest.raises(OAuthError) as err:
        basic_credentials(request(("Authorization", header)))
    assert (err.value.status, err.value.error) == (401, "invalid_client")
    assert err.value.headers["WWW-Authenticate"].startswith("Basic realm=")


def test_two_authorization_headers_are_a_bad_request() -> None:
    with pytest.raises(OAuthError) as err:
        basic_credentials(request(("Authorization", "Basic a"), ("Authorization", "Basic b")))
    assert err.value.error == "invalid_request"


def test_token_endpoint_error_mapping() -> None:
    client = from_grant(InvalidClient("x"), exchange=False)
    assert (client.status, client.error) == (401, "invalid_client")
    assert from_grant(InvalidGrant("bad subject"), exchange=True).error == "invalid_request"  # RFC 8693 2.2.2
    assert from_grant(AgentInactive("gone"), exchange=True).error == "invalid_request"
    assert from_grant(PolicyDenied("no"), exchange=False).error == "invalid_scope"
    limited = from_grant(RateLimited("too many tokens", {"retry_after_s": 0.2}), exchange=False)
    assert (limited.status, limited.headers["Retry-After"]) == (429, "1")
    unavailable = from_grant(Unavailable("down"), exchange=False)
    assert unavailable.status == 503 and unavailable.headers["Retry-After"] == "1"
    internal = from_grant(InternalError("db password in a message"), exchange=False)
    assert (internal.status, internal.description) == (500, "internal error")


def test_dpop_errors_are_400_at_the_authorization_server() -> None:
    assert from_dpop(InvalidDpopProofError("missing", "x")).status == 400
    nonce = from_dpop(UseDpopNonceError("nonce_missing", "x", nonce="n1"))
    assert (nonce.status, nonce.error, nonce.headers["DPoP-Nonce"]) == (400, "use_dpop_nonce", "n1")


def test_error_descriptions_keep_to_the_rfc_6749_characters() -> None:
    body = OAuthError(400, "invalid_request", 'a "quoted"\\ thing\nhere').response().body
    assert b'\\"' not in body and b"\\\\" not in body and b"\\n" not in body


def test_replicas_derive_the_same_nonces_from_one_kek() -> None:
    kek = bytes(range(32))
    assert nonce_secret(kek) == nonce_secret(bytes(range(32))) != nonce_secret(bytes(32)) != kek
    a, b = DpopNonces(nonce_secret(kek)), DpopNonces(nonce_secret(kek))
    assert b.valid(a.current())
    assert not DpopNonces(nonce_secret(bytes(32))).valid(a.current())


@pytest.mark.parametrize(("aud", "typ", "ok"), [
    (f"{ISSUER}/token", None, True),
    ([f"{ISSUER}/token"], "JWT", True),
    (ISSUER, "client-authentication+jwt", True),
    (ISSUER, None, False),                       # what an actor token carries
    (ISSUER, "JWT", False),
    ([f"{ISSUER}/token", "https://other.example"], None, False),
    ("https://other.example/token", None, False),
    (None, None, False),
    ([], None, False),
])
def test_client_assertion_audiences(aud: object, typ: str | None, ok: bool) -> None:
    if ok:
        Grants._check_audience(aud, typ, ISSUER)
    else:
        with pytest.raises(InvalidClient):
            Grants._check_audience(aud, typ, ISSUER)
