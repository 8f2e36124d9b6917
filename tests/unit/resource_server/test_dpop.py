"""DPoP proofs (RFC 9449): the spec's vector, every refusal with its reason, independent clients,
replay caches, server nonces, and a fuzzed parser that only ever answers with typed errors."""

from __future__ import annotations

import json
import time

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from joserfc import jws
from joserfc.jwk import ECKey, OKPKey

from shared import dpop
from shared.b64 import b64u_encode
from shared.dpop import (
    DpopNonces,
    MemoryReplayCache,
    ath_of,
    check_proof,
    make_proof,
    normalise_htu,
    verify_proof,
)
from shared.keys import PrivateKey
from shared.oauth_errors import (
    InvalidDpopProofError,
    InvalidTokenError,
    TemporarilyUnavailableError,
    UseDpopNonceError,
    VerificationError,
)

# RFC 9449 Figures 13 and 14 (SPECS section 3).
RFC_PROOF = (
    "eyJ0eXAiOiJkcG9wK2p3dCIsImFsZyI6IkVTMjU2IiwiandrIjp7Imt0eSI6IkVDIiwieCI6Imw4dEZyaHgtMzR0VjNoUklDUkRZOXpD"
    "a0RscEJoRjQyVVFVZldWQVdCRnMiLCJ5IjoiOVZFNGpmX09rX282NHpiVFRsY3VOSmFqSG10NnY5VERWclUwQ2R2R1JEQSIsImNydiI6"
    "IlAtMjU2In19.eyJqdGkiOiJlMWozVl9iS2ljOC1MQUVCIiwiaHRtIjoiR0VUIiwiaHR1IjoiaHR0cHM6Ly9yZXNvdXJjZS5leGFtcGxl"
    "Lm9yZy9wcm90ZWN0ZWRyZXNvdXJjZSIsImlhdCI6MTU2MjI2MjYxOCwiYXRoIjoiZlVIeU8ycjJaM0RaNTNFc05yV0JiMHhXWG9hTnk1"
    "OUlpS0NBcWtzbVFFbyJ9.2oW9RP35yRqzhrtNP86L-Ey71EOptxRimPPToA1plemAgR6pxHF8y6-yqyVnmcw6Fy1dqd-jfxSYoMxhAJpLjA"
)
RFC_TOKEN = "Kz~8mXK1EalYznwH-LC-1fBAo.4Ljp~zsPE_NeO.gxU"
RFC_ATH = "fUHyO2r2Z3DZ53EsNrWBb0xWXoaNy59IiKCAqksmQEo"
RFC_JKT = "0ZcOCORZNYy-DWpqq30jZyJGHTN0d2HglBV3uiguA4I"
RFC_URL = "https://resource.example.org/protectedresource"
RFC_IAT = 1562262618

URL = "https://ledger.example/accounts/42"
TOKEN = "eyJhbGciOiJFZERTQSJ9.e30.c2ln"  # any token68 string: the proof binds its hash
KEY = PrivateKey.generate()
EC_KEY = PrivateKey.generate("ES256")
NOW = 1_800_000_000.0


def _check(proof: object, **kw: object) -> dpop.DpopResult:
    args: dict = {"method": "GET", "url": URL, "access_token": TOKEN, "expected_jkt": KEY.public.thumbprint,
                  "now": NOW, **kw}
    return check_proof(proof, **args)  # type: ignore[arg-type]


def _proof(key: PrivateKey = KEY, **kw: object) -> str:
    args: dict = {"access_token": TOKEN, "now": NOW, **kw}
    method = args.pop("method", "GET")
    url = args.pop("url", URL)
    return make_proof(key, method, url, **args)


def _forge(header: dict, claims: dict, key: PrivateKey | None = KEY, sig: bytes | None = None) -> str:
    """A proof with any header and claims, signed over exactly what is sent (or a given signature)."""
    enc = lambda d: b64u_encode(json.dumps(d).encode())
    signing_input = f"{enc(header)}.{enc(claims)}"
    signature = sig if sig is not None else key.sign(signing_input.encode())  # type: ignore[union-attr]
    return f"{signing_input}.{b64u_encode(signature)}"


def _claims(**kw: object) -> dict:
    return {"jti": "j-1", "htm": "GET", "htu": URL, "iat": int(NOW), "ath": ath_of(TOKEN), **kw}


def _header(key: PrivateKey = KEY, **kw: object) -> dict:
    return {"typ": "dpop+jwt", "alg": key.alg, "jwk": key.public.jwk(), **kw}


def _refused(reason: str, proof: object, error: type[VerificationError] = InvalidDpopProofError, **kw: object) -> None:
    with pytest.raises(error) as caught:
        _check(proof, **kw)
    assert caught.value.reason == reason


# -- the RFC vector ----------------------------------------------------------------------------------
def test_rfc9449_figure_13_vector() -> None:
    assert ath_of(RFC_TOKEN) == RFC_ATH
    result = check_proof(RFC_PROOF, method="GET", url=RFC_URL, access_token=RFC_TOKEN,
                         expected_jkt=RFC_JKT, now=RFC_IAT)
    assert (result.jkt, result.jti, result.htm, result.alg) == (RFC_JKT, "e1j3V_bKic8-LAEB", "GET", "ES256")


def test_rfc_vector_is_refused_an_hour_later_and_for_another_token() -> None:
    with pytest.raises(InvalidDpopProofError, match="iat"):
        check_proof(RFC_PROOF, method="GET", url=RFC_URL, access_token=RFC_TOKEN, now=RFC_IAT + 3600)
    with pytest.raises(InvalidDpopProofError) as caught:
        check_proof(RFC_PROOF, method="GET", url=RFC_URL, access_token=RFC_TOKEN + "x", now=RFC_IAT)
    assert caught.value.reason == "ath_mismatch"


# -- making and accepting ------------------------------------------------------------------------------
@pytest.mark.parametrize("key,alg", [(KEY, None), (KEY, "EdDSA"), (KEY, "Ed25519"), (EC_KEY, None)])
def test_own_proofs_are_accepted(key: PrivateKey, alg: str | None) -> None:
    proof = _proof(key, alg=alg)
    result = _check(proof, expected_jkt=key.public.thumbprint)
    assert result.jkt == key.public.thumbprint
    assert result.alg == (alg or key.alg)


def test_proof_claims_are_as_specified() -> None:
    proof = make_proof(KEY, "POST", "HTTPS://Ledger.Example:443/a/./b?q=1#frag", access_token=TOKEN,
                       nonce="n-1", now=NOW)
    header, claims, _ = __import__("shared.jose", fromlist=["split"]).split(proof)
    assert header == {"typ": "dpop+jwt", "alg": "EdDSA", "jwk": KEY.public.jwk()}
    assert "d" not in header["jwk"]
    assert claims["htu"] == "https://ledger.example/a/b"
    assert claims["htm"] == "POST" and claims["iat"] == int(NOW) and claims["nonce"] == "n-1"
    assert claims["ath"] == ath_of(TOKEN) and 1 <= len(claims["jti"]) <= 64


def test_make_proof_refuses_an_alg_that_does_not_fit_the_key() -> None:
    with pytest.raises(ValueError):
        make_proof(EC_KEY, "GET", URL, alg="Ed25519")
    with pytest.raises(ValueError):
        make_proof(KEY, "GET", URL, alg="ES256")


@pytest.mark.filterwarnings("ignore::joserfc.errors.SecurityWarning")
@pytest.mark.parametrize("alg", ["EdDSA", "Ed25519"])
def test_proofs_made_by_joserfc_are_accepted(alg: str) -> None:
    """An independent JOSE library, under the polymorphic and the fully specified Ed25519 names."""
    key = OKPKey.import_key(KEY.private_jwk())
    header = {"typ": "dpop+jwt", "alg": alg, "jwk": KEY.public.jwk()}
    proof = jws.serialize_compact(header, json.dumps(_claims()), key, algorithms=[alg])
    assert _check(proof).alg == alg


def test_es256_proofs_made_by_joserfc_are_accepted() -> None:
    key = ECKey.import_key(EC_KEY.private_jwk())
    header = {"typ": "dpop+jwt", "alg": "ES256", "jwk": EC_KEY.public.jwk()}
    proof = jws.serialize_compact(header, json.dumps(_claims()), key, algorithms=["ES256"])
    assert _check(proof, expected_jkt=EC_KEY.public.thumbprint).jkt == EC_KEY.public.thumbprint


# -- every refusal, in check order --------------------------------------------------------------------
def test_1_exactly_one_proof() -> None:
    proof = _proof()
    _refused("missing", None)
    _refused("missing", [])
    _refused("multiple_proofs", [proof, proof])
    _refused("multiple_proofs", f"{proof}, {proof}")  # folded by a proxy
    assert _check([proof]).jti


@pytest.mark.parametrize("garbage", ["", "abc", "a.b", "a.b.c.d", "é.é.é", "x" * 5000, "e30.e30", "W10.e30.AA", "e30.e30.e30=="])
def test_2_a_well_formed_jwt(garbage: str) -> None:
    _refused("malformed", garbage)


@pytest.mark.parametrize("missing", ["jti", "htm", "htu", "iat", "ath"])
def test_3_required_claims(missing: str) -> None:
    claims = _claims()
    del claims[missing]
    _refused("missing_claim", _forge(_header(), claims))


def test_3_claims_are_well_typed_and_bounded() -> None:
    _refused("missing_claim", _forge(_header(), _claims(iat="1800000000")))
    _refused("missing_claim", _forge(_header(), _claims(iat=True)))
    _refused("bad_jti", _forge(_header(), _claims(jti="j" * 65)))
    _refused("bad_jti", _forge(_header(), _claims(jti="")))
    assert _check(_forge(_header(), _claims(jti="j" * 64))).jti == "j" * 64


@pytest.mark.parametrize("typ", [None, "JWT", "at+jwt", "DPOP+JWT ", "application/jwt"])
def test_4_typ(typ: str | None) -> None:
    header = _header(typ=typ)
    if typ is None:
        del header["typ"]
    _refused("bad_typ", _forge(header, _claims()))


@pytest.mark.parametrize("alg", ["none", "HS256", "RS256", "ES384", "EdDSA ", None])
def test_5_alg_allow_list(alg: str | None) -> None:
    _refused("bad_alg", _forge(_header(alg=alg), _claims()))


def test_5_alg_must_fit_the_key_type() -> None:
    _refused("bad_alg", _forge(_header(alg="ES256"), _claims()))           # Ed25519 key under ES256
    _refused("bad_alg", _forge(_header(EC_KEY, alg="Ed25519"), _claims(), EC_KEY))
    _refused("bad_alg", _forge(_header(EC_KEY, alg="EdDSA"), _claims(), EC_KEY))


def test_6_signature() -> None:
    proof = _proof()
    head, _, sig = proof.split(".")
    tampered = f"{head}.{b64u_encode(json.dumps(_claims(htm='POST')).encode())}.{sig}"
    _refused("bad_signature", tampered, method="POST")
    _refused("bad_signature", _forge(_header(), _claims(), sig=b"\x00" * 64))
    other = PrivateKey.generate()
    _refused("bad_signature", _forge(_header(), _claims(), key=other))  # signed by another key


def test_7_jwk_without_private_members() -> None:
    _refused("private_jwk", _forge(_header(jwk=KEY.private_jwk()), _claims()))


@pytest.mark.parametrize("jwk", [None, "key", {}, {"kty": "OKP", "crv": "Ed25519", "x": ["a"]},
                                 {"kty": "OKP", "crv": "Ed25519", "x": "AAAA"},
                                 {"kty": "EC", "crv": "P-256", "x": "AA", "y": "AA"}])
def test_7_jwk_must_be_a_usable_public_key(jwk: object) -> None:
    with pytest.raises(InvalidDpopProofError) as caught:
        _check(_forge(_header(jwk=jwk), _claims()))
    assert caught.value.reason in {"bad_jwk", "bad_alg"}


def test_8_htm() -> None:
    _refused("htm_mismatch", _proof(method="POST"))
    _refused("htm_mismatch", _proof(), method="get")


@pytest.mark.parametrize("other", ["https://ledger.example/accounts/43", "http://ledger.example/accounts/42",
                                   "https://ledger.example:8443/accounts/42", "https://evil.example/accounts/42",
                                   "https://ledger.example/accounts/42/", "https://ledger.example/accounts"])
def test_9_htu(other: str) -> None:
    _refused("htu_mismatch", _proof(url=other))


@pytest.mark.parametrize("equivalent", ["HTTPS://LEDGER.example/accounts/42", "https://ledger.example:443/accounts/42",
                                        "https://ledger.example/accounts/%34%32", "https://ledger.example/a/../accounts/42",
                                        "https://ledger.example/accounts/42?page=2", "https://ledger.example/accounts/42#x"])
def test_9_htu_is_compared_normalised(equivalent: str) -> None:
    assert _check(_forge(_header(), _claims(htu=equivalent))).htu == URL


def test_9_htu_that_is_not_a_url() -> None:
    _refused("htu_mismatch", _forge(_header(), _claims(htu="https://user@ledger.example/accounts/42")))
    _refused("htu_mismatch", _forge(_header(), _claims(htu="ftp://ledger.example/accounts/42")))


def test_10_nonce() -> None:
    clock = [NOW]
    nonces = DpopNonces(b"s" * 32, period_s=60, clock=lambda: clock[0])
    with pytest.raises(UseDpopNonceError) as caught:
        _check(_proof(), nonce_check=nonces)
    assert caught.value.reason == "nonce_missing" and caught.value.nonce == nonces.current()
    with pytest.raises(UseDpopNonceError) as caught:
        _check(_proof(nonce="made-up"), nonce_check=nonces)
    assert caught.value.reason == "nonce_stale"
    issued = nonces.current()
    assert _check(_proof(nonce=issued), nonce_check=nonces).nonce == issued
    clock[0] += 60  # the next bucket: the previous nonce is still live
    assert _check(_proof(nonce=issued), nonce_check=nonces)
    clock[0] += 60  # two buckets on: refused, with a fresh nonce
    with pytest.raises(UseDpopNonceError) as caught:
        _check(_proof(nonce=issued), nonce_check=nonces)
    assert caught.value.nonce != issued


def test_nonces_are_the_same_on_replicas_sharing_the_secret_only() -> None:
    a, b = DpopNonces(b"k" * 32, clock=lambda: NOW), DpopNonces(b"k" * 32, clock=lambda: NOW)
    c = DpopNonces(b"z" * 32, clock=lambda: NOW)
    assert a.current() == b.current() != c.current()
    assert b.valid(a.current()) and not c.valid(a.current())
    with pytest.raises(ValueError):
        DpopNonces(b"short")


@pytest.mark.parametrize("offset,ok", [(-60, True), (-61, False), (5, True), (6, False)])
def test_11_iat_window(offset: int, ok: bool) -> None:
    proof = _proof(now=NOW + offset)
    if ok:
        assert _check(proof)
    else:
        _refused("iat_window", proof)


async def test_11_jti_unseen() -> None:
    cache = MemoryReplayCache()
    proof = _proof()
    kw = {"method": "GET", "url": URL, "access_token": TOKEN, "replay": cache, "now": NOW}
    await verify_proof(proof, **kw)  # type: ignore[arg-type]
    with pytest.raises(InvalidDpopProofError) as caught:
        await verify_proof(proof, **kw)  # type: ignore[arg-type]
    assert caught.value.reason == "replayed"
    await verify_proof(_proof(), **kw)  # another jti is fine  # type: ignore[arg-type]


async def test_replay_key_is_per_key_and_url() -> None:
    """The same jti from another key, or for another URL, is another proof."""
    cache = MemoryReplayCache()
    for key, url in [(KEY, URL), (EC_KEY, URL), (KEY, URL + "0")]:
        await verify_proof(_proof(key, jti="same", url=url), method="GET", url=url, access_token=TOKEN,
                           replay=cache, now=NOW)


async def test_a_refused_proof_does_not_use_up_its_jti() -> None:
    cache = MemoryReplayCache()
    proof = _proof()
    with pytest.raises(InvalidTokenError):
        await verify_proof(proof, method="GET", url=URL, access_token=TOKEN, expected_jkt=EC_KEY.public.thumbprint,
                           replay=cache, now=NOW)
    assert len(cache) == 0


async def test_a_full_replay_cache_fails_closed() -> None:
    cache = MemoryReplayCache(max_entries=1)
    await verify_proof(_proof(), method="GET", url=URL, access_token=TOKEN, replay=cache, now=NOW)
    with pytest.raises(TemporarilyUnavailableError) as caught:
        await verify_proof(_proof(), method="GET", url=URL, access_token=TOKEN, replay=cache, now=NOW)
    assert caught.value.status == 503


async def test_replay_entries_expire_with_the_window() -> None:
    clock = [0.0]
    cache = MemoryReplayCache(ttl_s=65, clock=lambda: clock[0])
    assert await cache.add("k") and not await cache.add("k")
    clock[0] = 65.0
    assert await cache.add("k")


def test_12_ath() -> None:
    _refused("ath_mismatch", _proof(access_token="another-token"))


def test_12_key_binding_is_invalid_token() -> None:
    _refused("key_binding", _proof(EC_KEY), InvalidTokenError)


def test_without_an_access_token_ath_is_optional() -> None:
    """At a token endpoint there is no token yet: ath is neither required nor checked."""
    proof = make_proof(KEY, "POST", URL, now=NOW)
    assert check_proof(proof, method="POST", url=URL, now=NOW).jkt == KEY.public.thumbprint


def test_critical_header_extensions_are_refused() -> None:
    _refused("bad_header", _forge(_header(crit=["exp"]), _claims()))


# -- htu normalisation ------------------------------------------------------------------------------
@pytest.mark.parametrize("url,expected", [
    ("HTTP://Example.COM", "http://example.com/"),
    ("http://example.com:80/", "http://example.com/"),
    ("https://example.com:8443", "https://example.com:8443/"),
    ("https://example.com/a/b/../../c/./d", "https://example.com/c/d"),
    ("https://example.com/a/b/.", "https://example.com/a/b/"),
    ("https://example.com/%7euser/%2f", "https://example.com/~user/%2F"),
    ("https://[::1]:443/x", "https://[::1]/x"),
    ("https://example.com/p?q=1#f", "https://example.com/p"),
])
def test_htu_normalisation(url: str, expected: str) -> None:
    assert normalise_htu(url) == expected


@pytest.mark.parametrize("url", ["", "/relative", "https://u:p@example.com/", "https://exa mple.com/",
                                 "https://example.com/é", "https://example.com/%zz", "mailto:a@b",
                                 "https://example.com:99999/", "https://ex_ample.com\n/"])
def test_htu_refusals(url: str) -> None:
    with pytest.raises(ValueError):
        normalise_htu(url)


# -- fuzzing: garbage in, typed error out ------------------------------------------------------------
_json = st.recursive(st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
                     lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
                     max_leaves=12)


def _segment(value: object) -> str:
    return b64u_encode(json.dumps(value).encode())


@settings(max_examples=300, suppress_health_check=[HealthCheck.too_slow], deadline=None)
@given(st.one_of(
    st.text(max_size=200),
    st.lists(st.text(max_size=50), max_size=3),
    st.builds(lambda h, c, s: f"{_segment(h)}.{_segment(c)}.{b64u_encode(s)}", _json, _json, st.binary(max_size=80)),
    st.builds(lambda h, c: _forge({**_header(), **h}, {**_claims(), **c}),
              st.dictionaries(st.sampled_from(["typ", "alg", "jwk", "crit", "kid"]), _json, max_size=2),
              st.dictionaries(st.sampled_from(["jti", "htm", "htu", "iat", "ath", "nonce"]), _json, max_size=2)),
))
def test_any_input_gets_a_typed_answer(proof: object) -> None:
    try:
        _check(proof)
    except VerificationError:
        pass


def test_refusals_never_echo_the_proof() -> None:
    proof = _proof(url="https://evil.example/secret-path")
    with pytest.raises(VerificationError) as caught:
        _check(proof)
    assert "secret-path" not in caught.value.description and proof[:20] not in str(caught.value)


def test_time_is_read_from_the_clock_by_default() -> None:
    proof = make_proof(KEY, "GET", URL, access_token=TOKEN)
    assert check_proof(proof, method="GET", url=URL, access_token=TOKEN).iat <= time.time()


async def test_kv_replay_cache_uses_create_and_fails_closed() -> None:
    from nats.js.errors import KeyWrongLastSequenceError

    from shared.dpop import KvReplayCache, record

    class Kv:
        def __init__(self, failure: Exception | None = None) -> None:
            self.keys: set[str] = set()
            self.failure = failure

        async def create(self, key: str, value: bytes) -> int:
            if self.failure is not None:
                raise self.failure
            if key in self.keys:
                raise KeyWrongLastSequenceError()
            self.keys.add(key)
            return len(self.keys)

    result = _check(_proof())
    shared = KvReplayCache(Kv())  # type: ignore[arg-type]
    await record(result, shared)
    with pytest.raises(InvalidDpopProofError, match="replayed"):
        await record(result, shared)
    with pytest.raises(TemporarilyUnavailableError):
        await record(result, KvReplayCache(Kv(ConnectionError("gone"))))  # type: ignore[arg-type]
