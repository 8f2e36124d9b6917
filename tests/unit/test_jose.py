"""Strict JWS verification: every refusal has its reason."""

from __future__ import annotations

import json
import time

import jwt
import pytest

from shared import jose
from shared.b64 import b64u_encode
from shared.keys import PrivateKey

KEY = PrivateKey.generate()
EC = PrivateKey.generate("ES256")


def _token(claims: dict | None = None, **kw: object) -> str:
    return jose.sign({"exp": time.time() + 60, "iat": time.time(), **(claims or {})}, KEY, typ="x+jwt", **kw)  # type: ignore[arg-type]


def _verify(token: str, **kw: object) -> dict:
    return jose.verify(token, KEY.public, **{"algorithms": ["EdDSA"], "typ": "x+jwt", **kw})[1]  # type: ignore[arg-type]


def _forge(header: dict, payload: dict, sig: bytes = b"\x00" * 64) -> str:
    enc = lambda d: b64u_encode(json.dumps(d).encode())  # noqa: E731
    return f"{enc(header)}.{enc(payload)}.{b64u_encode(sig)}"


def test_valid_token_verifies() -> None:
    assert _verify(_token({"sub": "a"}))["sub"] == "a"


def test_rfc8037_signature_vector() -> None:
    key = PrivateKey.from_jwk({"kty": "OKP", "crv": "Ed25519", "d": "nWGxne_9WmC6hEr0kuwsxERJxWl7MmkZcDusAxyuf2A",
                               "x": "11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo"})
    sig = key.sign(b"eyJhbGciOiJFZERTQSJ9.RXhhbXBsZSBvZiBFZDI1NTE5IHNpZ25pbmc")
    assert b64u_encode(sig) == "hgyY0il_MGCjP0JzlnLWG1PPOt7-09PGcvMg3AIbQR6dWbhijcNR4ki4iylGjg5BhVsPt9g7sVvpAr_MuM0KAg"


@pytest.mark.parametrize("token,reason", [
    ("a.b", "malformed"),
    ("a.b.c.d", "malformed"),
    ("!!.e30.AA", "malformed"),
])
def test_malformed(token: str, reason: str) -> None:
    with pytest.raises(jose.JoseError) as err:
        _verify(token)
    assert err.value.reason == reason


def test_alg_none_and_hmac_are_refused() -> None:
    none = _forge({"alg": "none", "typ": "x+jwt"}, {"exp": time.time() + 60}, b"")
    hs = jwt.encode({"exp": time.time() + 60}, "s" * 32, algorithm="HS256", headers={"typ": "x+jwt"})
    for token in (none, hs):
        with pytest.raises(jose.JoseError) as err:
            _verify(token, algorithms=["EdDSA", "none", "HS256"])
        assert err.value.reason == "bad_alg"


def test_alg_must_fit_the_key() -> None:
    with pytest.raises(jose.JoseError) as err:
        jose.verify(jose.sign({"exp": time.time() + 9}, EC, typ="x+jwt"), KEY.public,
                    algorithms=["EdDSA", "ES256"], typ="x+jwt")
    assert err.value.reason == "bad_alg"


def test_wrong_key_and_tampering() -> None:
    token = _token()
    with pytest.raises(jose.JoseError) as err:
        jose.verify(token, PrivateKey.generate().public, algorithms=["EdDSA"], typ="x+jwt")
    assert err.value.reason == "bad_signature"
    h, p, s = token.split(".")
    other = b64u_encode(json.dumps({"exp": time.time() + 999}).encode())
    with pytest.raises(jose.JoseError) as err:
        _verify(f"{h}.{other}.{s}")
    assert err.value.reason == "bad_signature"


def test_typ_audience_issuer_time() -> None:
    with pytest.raises(jose.JoseError) as err:
        _verify(_token(), typ="at+jwt")
    assert err.value.reason == "bad_typ"
    with pytest.raises(jose.JoseError) as err:
        _verify(_token({"aud": "a"}), audience="b")
    assert err.value.reason == "bad_audience"
    with pytest.raises(jose.JoseError) as err:
        _verify(_token({"iss": "a"}), issuer="b")
    assert err.value.reason == "bad_issuer"
    with pytest.raises(jose.JoseError) as err:
        _verify(_token({"exp": 1000}), leeway=0)
    assert err.value.reason == "expired"
    with pytest.raises(jose.JoseError) as err:
        _verify(_token({"nbf": time.time() + 600}))
    assert err.value.reason == "not_yet_valid"
    with pytest.raises(jose.JoseError) as err:
        _verify(_token({"iat": time.time() - 600}), max_age=60)
    assert err.value.reason == "too_old"
    with pytest.raises(jose.JoseError) as err:
        _verify(jose.sign({"iat": 1}, KEY, typ="x+jwt"))
    assert err.value.reason == "missing_claim"


def test_duplicate_members_are_refused() -> None:
    header = b64u_encode(b'{"alg":"EdDSA","typ":"x+jwt","typ":"other"}')
    payload = b64u_encode(b'{"exp":9999999999}')
    sig = b64u_encode(KEY.sign(f"{header}.{payload}".encode()))
    with pytest.raises(jose.JoseError) as err:
        _verify(f"{header}.{payload}.{sig}")
    assert err.value.reason == "malformed"


def test_ed25519_fully_specified_alg_is_accepted_only_when_allowed() -> None:
    token = jose.sign({"exp": time.time() + 60}, KEY, typ="x+jwt", alg="Ed25519")
    assert jose.verify(token, KEY.public, algorithms=["Ed25519"], typ="x+jwt")[0]["alg"] == "Ed25519"
    with pytest.raises(jose.JoseError):
        jose.verify(token, KEY.public, algorithms=["EdDSA"], typ="x+jwt")


def test_deeply_nested_json_is_malformed_not_a_crash() -> None:
    deep = b64u_encode(b"[" * 5000 + b"]" * 5000)
    with pytest.raises(jose.JoseError) as err:
        _verify(f"{b64u_encode(b'{}')}.{deep}.AA")
    assert err.value.reason == "malformed"
