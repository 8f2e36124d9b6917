"""DPoP (RFC 9449): proofs made by agents, and checked by resource servers and the token endpoint.

A proof is a compact JWS in the `DPoP` header: header `typ: dpop+jwt`, `alg`, and the public
`jwk` it is signed with; claims `jti`, `htm`, `htu` (no query or fragment), `iat`, `ath` (the
SHA-256 of the access token, when one is presented) and `nonce` (once a server has issued one).

`check_proof` runs the checks of RFC 9449 section 4.3 in the SPECS order, each with its own
`reason`, except for two placements:
  - the `jwk` private-member check (7) runs just before the signature check (6): the key has to be
    loaded before a signature can be checked, and a JWK with private members is never loaded;
  - the `jti` is recorded last (`record`, or `verify_proof`): recording is the only step with a
    side effect (a network round trip with the shared cache), so a proof that fails any other
    check never uses up a cache entry, and a resource server can record only after its own checks.

Replay (section 11.1): a proof is accepted once within the `iat` window, keyed by
SHA-256(jkt, htu, jti); the cache is a `shared.bus.replay.OnceSet` (the bus's message-id guard
uses the same sets): `MemoryReplayCache` for one process, `KvReplayCache` (NATS KV `create()`,
entries expire with the bucket's `max_age`) shared by replicas. Full or unreachable: refused.

Nonces (sections 8 and 9): `DpopNonces` derives them from a server secret and the time bucket, so
replicas sharing the secret agree without talking; once a server uses nonces, every proof must
carry a live one, else `use_dpop_nonce` with a fresh `DPoP-Nonce`.
"""

from __future__ import annotations

import hashlib
import os
import re
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from functools import lru_cache
from hmac import compare_digest
from typing import Any, Protocol

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives import hmac as crypto_hmac

from shared import jose
from shared.b64 import b64u_encode
from shared.bus.replay import KvOnceSet, MemoryOnceSet, OnceSet
from shared.errors import Unavailable
from shared.keys import InvalidKey, PrivateKey, PublicKey
from shared.oauth_errors import (
    InvalidDpopProofError,
    InvalidRequestError,
    InvalidTokenError,
    TemporarilyUnavailableError,
    UseDpopNonceError,
)

__all__ = [
    "ALGS",
    "DPOP_TYP",
    "IAT_WINDOW",
    "MAX_JTI_CHARS",
    "MAX_PROOF_CHARS",
    "REPLAY_TTL_S",
    "DpopNonces",
    "DpopResult",
    "KvReplayCache",
    "MemoryReplayCache",
    "NonceCheck",
    "ReplayCache",
    "ath_of",
    "check_proof",
    "make_proof",
    "normalise_htu",
    "record",
    "verify_proof",
]

DPOP_TYP = "dpop+jwt"
# Ed25519 is accepted under the polymorphic `EdDSA` and the fully specified `Ed25519` (RFC 9864),
# each only with an OKP Ed25519 key; ES256 only with a P-256 key. Order is the `algs=` order.
ALGS: tuple[str, ...] = ("EdDSA", "Ed25519", "ES256")
_KEY_FOR_ALG = {"EdDSA": ("OKP", "Ed25519"), "Ed25519": ("OKP", "Ed25519"), "ES256": ("EC", "P-256")}
# An Ed25519 proof with ath and a nonce is about 450 characters, an ES256 one about 600.
MAX_PROOF_CHARS = 4096
MAX_JTI_CHARS = 64
MAX_CLAIM_CHARS = 2048  # htm, htu, nonce, ath
MAX_JWK_MEMBERS = 12
IAT_WINDOW: tuple[float, float] = (60.0, 5.0)  # seconds before / after now
# A proof is live from its first use until its iat leaves the window: at most before + after.
REPLAY_TTL_S = IAT_WINDOW[0] + IAT_WINDOW[1]

_PRIVATE_MEMBERS = frozenset({"d", "p", "q", "dp", "dq", "qi", "oth", "k"})
_METHOD = re.compile(r"[!#$%&'*+.^_`|~0-9A-Za-z-]{1,32}")  # RFC 9110 token


# -- the request URI ------------------------------------------------------------------------------
# Not shared.uri: resource URIs refuse queries, trailing slashes and empty segments, which a
# request URI may have. This is the plain RFC 3986 section 6.2.2 / 6.2.3 normalisation.
_URL = re.compile(r"([A-Za-z][A-Za-z0-9+.-]*)://([^/?#]*)([^?#]*)(?:\?[^#]*)?(?:#.*)?", re.DOTALL)
_HOST = re.compile(r"[a-z0-9._~-]+|\[[0-9a-f:.]+\]")
_PORT = re.compile(r"[0-9]{1,5}")
_PATH = re.compile(r"[A-Za-z0-9\-._~!$&'()*+,;=:@/%]*")
_PCT = re.compile(r"%(.?.?)")
_HEX = frozenset("0123456789abcdefABCDEF")
_UNRESERVED = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-._~")
_DEFAULT_PORTS = {"http": "80", "https": "443"}


@lru_cache(maxsize=8192)
def normalise_htu(url: str) -> str:
    """The `htu` form of an http(s) URL: RFC 3986 normalised, without query and fragment.

    Lower-case scheme and host, default port dropped, empty path `/`, percent-escapes upper-case
    and decoded when they stand for unreserved characters, dot segments removed. Userinfo,
    non-ASCII and control characters are refused (ValueError).
    """
    if not isinstance(url, str) or not url or len(url) > MAX_CLAIM_CHARS:
        raise ValueError("a URL has 1 to 2048 characters")
    if not url.isascii() or any(c <= " " or c == "\x7f" for c in url):
        raise ValueError("a URL is printable ASCII without spaces")
    m = _URL.fullmatch(url)
    if m is None:
        raise ValueError("not an absolute URL")
    scheme, authority, path = m.group(1).lower(), m.group(2), m.group(3)
    if scheme not in _DEFAULT_PORTS:
        raise ValueError("htu is an http or https URL")
    if "@" in authority:
        raise ValueError("a URL with userinfo is refused")
    if authority.startswith("["):
        host, _, rest = authority.partition("]")
        host += "]"
        port = rest[1:] if rest.startswith(":") else None
        if rest and port is None:
            raise ValueError("malformed IP literal")
    else:
        host, colon, port_text = authority.partition(":")
        port = port_text if colon else None
    host = host.lower()
    if not _HOST.fullmatch(host):
        raise ValueError("malformed host")
    if port:
        if not _PORT.fullmatch(port) or int(port) > 65535:
            raise ValueError("malformed port")
        port = str(int(port))
    if port and port != _DEFAULT_PORTS[scheme]:
        host = f"{host}:{port}"
    if not _PATH.fullmatch(path):
        raise ValueError("the path has characters that must be percent-encoded")
    if "%" in path:
        path = _PCT.sub(_fix_escape, path)
    return f"{scheme}://{host}{_remove_dot_segments(path) or '/'}"


def _fix_escape(match: re.Match[str]) -> str:
    pair = match.group(1)
    if len(pair) != 2 or not set(pair) <= _HEX:
        raise ValueError("a '%' starts a two-digit hex escape")
    char = chr(int(pair, 16))
    return char if char in _UNRESERVED else "%" + pair.upper()


def _remove_dot_segments(path: str) -> str:
    """RFC 3986 section 5.2.4 for an absolute (or empty) path."""
    if "." not in path:
        return path
    segments = path.split("/")[1:]
    out: list[str] = []
    for i, seg in enumerate(segments):
        last = i == len(segments) - 1
        if seg in (".", ".."):
            if seg == ".." and out:
                out.pop()
            if last:
                out.append("")
            continue
        out.append(seg)
    return "/" + "/".join(out)


def ath_of(access_token: str) -> str:
    """`ath`: base64url SHA-256 of the ASCII access token."""
    return b64u_encode(hashlib.sha256(access_token.encode("ascii")).digest())


# -- making proofs ----------------------------------------------------------------------------------
def make_proof(
    key: PrivateKey,
    method: str,
    url: str,
    *,
    access_token: str | None = None,
    nonce: str | None = None,
    alg: str | None = None,
    now: float | None = None,
    jti: str | None = None,
) -> str:
    """A DPoP proof for one request, signed with `key` (the agent's key; only its public JWK is sent).

    `alg` defaults to the key's (`EdDSA` or `ES256`); `Ed25519` may be asked for an Ed25519 key.
    `url` may carry a query or fragment: `htu` is the normalised URL without them.
    """
    alg = alg or key.alg
    if alg not in _KEY_FOR_ALG or (key.alg == "EdDSA") != (_KEY_FOR_ALG[alg][0] == "OKP"):
        raise ValueError(f"{alg} does not fit a {key.alg} key")
    if not _METHOD.fullmatch(method):
        raise ValueError("not an HTTP method")
    claims: dict[str, Any] = {
        "jti": jti or b64u_encode(os.urandom(16)),
        "htm": method,
        "htu": normalise_htu(url),
        "iat": int(time.time() if now is None else now),
    }
    if access_token is not None:
        claims["ath"] = ath_of(access_token)
    if nonce is not None:
        claims["nonce"] = nonce
    return jose.sign(claims, key, typ=DPOP_TYP, headers={"jwk": key.public.jwk()}, alg=alg)


# -- checking proofs --------------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class DpopResult:
    """A proof that passed every check but the replay check (see `record`)."""

    jkt: str  # RFC 7638 thumbprint of the proof key: the token's `cnf.jkt` must equal it
    jti: str
    htm: str
    htu: str
    iat: float
    alg: str
    nonce: str | None
    replay_key: str  # what the replay cache records: b64u SHA-256(jkt, htu, jti)
    key: PublicKey


class NonceCheck(Protocol):
    def valid(self, nonce: str) -> bool: ...

    def current(self) -> str: ...


def check_proof(
    proof: str | Sequence[str] | None,
    *,
    method: str,
    url: str,
    access_token: str | None = None,
    ath: str | None = None,
    expected_jkt: str | None = None,
    nonce_check: NonceCheck | None = None,
    now: float | None = None,
    iat_window: tuple[float, float] = IAT_WINDOW,
) -> DpopResult:
    """Every RFC 9449 section 4.3 check except the replay check. Raises a `VerificationError`.

    `proof` is the `DPoP` header: a string, or every value the request carried (check 1).
    `access_token` (or its precomputed `ath`) makes `ath` required and checked, as at a resource
    server; `expected_jkt` is the token's `cnf.jkt` (a mismatch is `invalid_token`, as in RFC 9449
    Figure 16). `url` is the request URL as this server knows it (never a client-chosen Host).
    """
    # 1. exactly one DPoP header (a comma means a proxy folded several into one)
    if proof is None:
        raise InvalidDpopProofError("missing", "a DPoP proof is required")
    if not isinstance(proof, str):
        values = list(proof[:2]) if isinstance(proof, Sequence) else None
        if values is None or len(values) != 1:
            raise InvalidDpopProofError(
                "missing" if values == [] else "multiple_proofs", "send exactly one DPoP header")
        proof = values[0]
    if not isinstance(proof, str):
        raise InvalidDpopProofError("malformed", "the DPoP proof is not a JWT")
    if "," in proof:
        raise InvalidDpopProofError("multiple_proofs", "send exactly one DPoP header")
    # 2. one well-formed JWT
    if not proof or len(proof) > MAX_PROOF_CHARS:
        raise InvalidDpopProofError("malformed", "the DPoP proof is empty or too large")
    try:
        header, claims, signature = jose.split(proof)
    except jose.JoseError as exc:
        raise InvalidDpopProofError("malformed", "the DPoP proof is not a well-formed JWT") from exc
    # 3. required claims, well typed and bounded
    jti, htm, htu, iat = claims.get("jti"), claims.get("htm"), claims.get("htu"), claims.get("iat")
    if not isinstance(jti, str) or not isinstance(htm, str) or not isinstance(htu, str) or \
            not isinstance(iat, int | float) or isinstance(iat, bool):
        raise InvalidDpopProofError("missing_claim", "the DPoP proof needs jti, htm, htu and iat")
    if not jti or len(jti) > MAX_JTI_CHARS:
        raise InvalidDpopProofError("bad_jti", "the DPoP proof jti has 1 to 64 characters")
    if len(htm) > MAX_CLAIM_CHARS or len(htu) > MAX_CLAIM_CHARS:
        raise InvalidDpopProofError("malformed", "a DPoP proof claim is too long")
    expected_ath = ath if ath is not None else (ath_of(access_token) if access_token is not None else None)
    proof_ath = claims.get("ath")
    if expected_ath is not None and not isinstance(proof_ath, str):
        raise InvalidDpopProofError("missing_claim", "the DPoP proof needs ath with an access token")
    proof_nonce = claims.get("nonce")
    if proof_nonce is not None and (not isinstance(proof_nonce, str) or len(proof_nonce) > MAX_CLAIM_CHARS):
        raise InvalidDpopProofError("malformed", "the DPoP proof nonce is not a string")
    # 4. typ
    if header.get("typ") != DPOP_TYP:
        raise InvalidDpopProofError("bad_typ", "the DPoP proof typ is not dpop+jwt")
    # 5. alg: allow-listed and asymmetric; never none or HMAC
    alg = header.get("alg")
    if not isinstance(alg, str) or alg not in _KEY_FOR_ALG:
        raise InvalidDpopProofError("bad_alg", "the DPoP proof alg is not accepted")
    if "crit" in header:
        raise InvalidDpopProofError("bad_header", "the DPoP proof has critical extensions")
    # 7. the jwk is a public key of the type alg names
    jwk = header.get("jwk")
    if not isinstance(jwk, dict) or len(jwk) > MAX_JWK_MEMBERS:
        raise InvalidDpopProofError("bad_jwk", "the DPoP proof has no usable jwk")
    if not _PRIVATE_MEMBERS.isdisjoint(jwk):
        raise InvalidDpopProofError("private_jwk", "the DPoP proof jwk carries private key members")
    if (jwk.get("kty"), jwk.get("crv")) != _KEY_FOR_ALG[alg]:
        raise InvalidDpopProofError("bad_alg", "the DPoP proof alg does not fit its key type")
    key = _load_key(jwk)
    # 6. the signature, with that key
    if not key.verify(signature, proof[: proof.rindex(".")].encode("ascii")):
        raise InvalidDpopProofError("bad_signature", "the DPoP proof signature does not verify")
    # 8. htm
    if htm != method:
        raise InvalidDpopProofError("htm_mismatch", "the DPoP proof is for another HTTP method")
    # 9. htu, normalised on both sides
    try:
        request_htu = normalise_htu(url)
    except ValueError as exc:
        raise InvalidRequestError("bad_request_url", "the request URL cannot be checked") from exc
    try:
        proof_htu = normalise_htu(htu)
    except ValueError as exc:
        raise InvalidDpopProofError("htu_mismatch", "the DPoP proof htu is not a valid URL") from exc
    if proof_htu != request_htu:
        raise InvalidDpopProofError("htu_mismatch", "the DPoP proof is for another URL")
    # 10. nonce: once a server issues nonces, every proof carries a live one
    if nonce_check is not None and (proof_nonce is None or not nonce_check.valid(proof_nonce)):
        raise UseDpopNonceError("nonce_missing" if proof_nonce is None else "nonce_stale",
                                "the resource server requires a fresh nonce in the DPoP proof",
                                nonce=nonce_check.current())
    # 11. iat within the window (the jti is recorded by `record`)
    now = time.time() if now is None else now
    before, after = iat_window
    if not now - before <= iat <= now + after:
        raise InvalidDpopProofError("iat_window", "the DPoP proof iat is outside the accepted window")
    # 12. ath and the key binding
    # Bytes: compare_digest refuses non-ASCII str, and the claim is the client's input.
    if expected_ath is not None and not compare_digest(str(proof_ath).encode(), expected_ath.encode()):
        raise InvalidDpopProofError("ath_mismatch", "the DPoP proof is for another access token")
    jkt = key.thumbprint
    if expected_jkt is not None and not compare_digest(jkt, expected_jkt):
        raise InvalidTokenError("key_binding", "Invalid DPoP key binding")
    replay_key = b64u_encode(hashlib.sha256(f"{jkt}\n{proof_htu}\n{jti}".encode()).digest())
    return DpopResult(jkt=jkt, jti=jti, htm=htm, htu=proof_htu, iat=iat, alg=alg,
                      nonce=proof_nonce, replay_key=replay_key, key=key)


# Proof keys repeat (an agent signs every proof with its one key): keep loaded keys, bounded, so a
# repeated key costs a dict lookup instead of a point decode and a thumbprint.
_KEY_CACHE: dict[tuple[Any, ...], PublicKey] = {}
_KEY_CACHE_MAX = 4096


def _load_key(jwk: Mapping[str, Any]) -> PublicKey:
    cache_key = (jwk.get("kty"), jwk.get("crv"), jwk.get("x"), jwk.get("y"))
    if not all(isinstance(v, str | None) for v in cache_key):
        raise InvalidDpopProofError("bad_jwk", "the DPoP proof jwk is not a valid public key")
    key = _KEY_CACHE.get(cache_key)
    if key is None:
        try:
            key = PublicKey.from_jwk({k: v for k, v in jwk.items() if k in ("kty", "crv", "x", "y")})
        except InvalidKey as exc:
            raise InvalidDpopProofError("bad_jwk", "the DPoP proof jwk is not a valid public key") from exc
        if len(_KEY_CACHE) >= _KEY_CACHE_MAX:
            _KEY_CACHE.pop(next(iter(_KEY_CACHE)))
        _KEY_CACHE[cache_key] = key
    return key


# -- replay -------------------------------------------------------------------------------------------
ReplayCache = OnceSet


class MemoryReplayCache(MemoryOnceSet):
    """One process's proof cache: entries live `ttl_s` (at least the iat window); full: refused."""

    def __init__(self, ttl_s: float = REPLAY_TTL_S, max_entries: int = 1_000_000,
                 clock: Callable[[], float] = time.monotonic) -> None:
        super().__init__(ttl_s, max_entries, clock)


class KvReplayCache(KvOnceSet):
    """A proof cache shared by every replica: a NATS KV bucket whose `max_age` is the iat window."""

    @classmethod
    async def open(cls, nc: Any, bucket: str, *, ttl_s: float = REPLAY_TTL_S) -> KvReplayCache:
        """Bind to (or create) `bucket` on the connection `nc` (a nats client, or a `Bus`)."""
        from nats.js.api import KeyValueConfig, StorageType
        from nats.js.errors import BucketNotFoundError

        js = getattr(nc, "js", None) or getattr(nc, "nc", nc).jetstream()
        try:
            kv = await js.key_value(bucket)
        except BucketNotFoundError:
            # Creating an existing bucket with the same configuration succeeds, so replicas racing
            # here all end up bound to one bucket.
            kv = await js.create_key_value(KeyValueConfig(bucket=bucket, ttl=ttl_s, storage=StorageType.MEMORY))
        return cls(kv)


async def record(result: DpopResult, replay: ReplayCache) -> None:
    """Record the proof's jti: refuse it if it was already used (check 11, second half)."""
    try:
        fresh = await replay.add(result.replay_key)
    except Unavailable as exc:
        raise TemporarilyUnavailableError("replay_cache_unavailable",
                                          "the proof replay cache is unavailable") from exc
    if not fresh:
        raise InvalidDpopProofError("replayed", "this DPoP proof was already used")


async def verify_proof(
    proof: str | Sequence[str] | None,
    *,
    method: str,
    url: str,
    access_token: str | None = None,
    expected_jkt: str | None = None,
    nonce_check: NonceCheck | None = None,
    replay: ReplayCache,
    now: float | None = None,
    iat_window: tuple[float, float] = IAT_WINDOW,
) -> DpopResult:
    """`check_proof`, then `record`: the whole of RFC 9449 section 4.3."""
    result = check_proof(proof, method=method, url=url, access_token=access_token,
                         expected_jkt=expected_jkt, nonce_check=nonce_check, now=now, iat_window=iat_window)
    await record(result, replay)
    return result


# -- server nonces ------------------------------------------------------------------------------------
class DpopNonces:
    """Server nonces: b64u(HMAC-SHA256(secret, time bucket)). The current and previous buckets are
    live, so a nonce lasts between one and two periods; replicas with one secret agree."""

    _DOMAIN = b"agentid-dpop-nonce-v1\n"

    def __init__(self, secret: bytes, *, period_s: float = 300.0, clock: Callable[[], float] = time.time) -> None:
        if not isinstance(secret, bytes) or len(secret) < 32:
            raise ValueError("a nonce secret has at least 32 bytes")
        if period_s <= 0:
            raise ValueError("period_s must be positive")
        self._secret = secret
        self._period = period_s
        self._clock = clock
        self._by_bucket: dict[int, str] = {}

    def _nonce(self, bucket: int) -> str:
        nonce = self._by_bucket.get(bucket)
        if nonce is None:
            mac = crypto_hmac.HMAC(self._secret, hashes.SHA256())
            mac.update(self._DOMAIN + str(bucket).encode())
            nonce = b64u_encode(mac.finalize())
            if len(self._by_bucket) > 4:
                self._by_bucket.clear()
            self._by_bucket[bucket] = nonce
        return nonce

    def _bucket(self) -> int:
        return int(self._clock() // self._period)

    def current(self) -> str:
        return self._nonce(self._bucket())

    def valid(self, nonce: str) -> bool:
        bucket = self._bucket()
        given = nonce.encode("utf-8", "replace")
        # Constant-time comparisons, both made every time.
        now_ok = compare_digest(given, self._nonce(bucket).encode())
        prev_ok = compare_digest(given, self._nonce(bucket - 1).encode())
        return now_ok | prev_ok
