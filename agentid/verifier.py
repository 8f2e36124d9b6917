"""`Verifier`: what a resource server runs on every request, offline, before it acts.

One call checks, in order, and raises a typed `VerificationError` at the first failure:
  1. the `Authorization` header: one header, scheme `DPoP` (or `Bearer` for mTLS-bound tokens);
  2. the access token (RFC 9068 section 4): `typ` at+jwt, `alg` allow-listed and fitting the key,
     `iss` equal to the configured issuer, `aud` naming this resource server, the signature with a
     key from the configured JWKS by `kid` (an unknown `kid` costs one rate-limited refetch),
     `exp`/`nbf`/`iat` with `leeway`, a lifetime of at most `max_token_lifetime_s`, the claim
     shapes, `cnf` with exactly one binding, actor and delegation depth;
  3. the binding: for `cnf.jkt`, the DPoP proof (RFC 9449 section 4.3, `shared.dpop`) for this
     method and URL, this token (`ath`) and this key (`jkt`), with the server nonce when configured;
     for `cnf.x5t#S256`, the client certificate the TLS layer verified;
  4. revocations pushed over NATS (`RevocationFeed`): the token, its agent, its delegation links;
  5. the operation (when given): within ONE of the token's authorization details, by
     `shared.capabilities.permits`, the definition every service shares;
  6. the proof's `jti` is recorded in the replay cache, last, so a refused request never uses one.

Speed: keys are loaded once per JWKS fetch; a verified token is cached (by the SHA-256 of its
text, which is also its `ath`) until it expires, so a repeated token skips step 2's signature and
parsing. Steps 1, 3, 4, 5 and 6 run on every call, cached or not.
"""

from __future__ import annotations

import hashlib
import re
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from hmac import compare_digest
from typing import Any

from agentid.access_token import (
    AccessToken,
    Delegation,
    check_token68,
    parse_authorization,
    read_token,
)
from agentid.jwks import JwksSource, KeyStore
from agentid.revocation import RevocationFeed
from shared import jose
from shared.b64 import b64u_encode
from shared.capabilities import Amount, Capability, CapabilityError, permits
from shared.dpop import ALGS as DPOP_ALGS
from shared.dpop import (
    IAT_WINDOW,
    DpopNonces,
    DpopResult,
    MemoryReplayCache,
    ReplayCache,
    check_proof,
    record,
)
from shared.oauth_errors import (
    InsufficientScopeError,
    InvalidRequestError,
    InvalidTokenError,
)

__all__ = ["ACCESS_TOKEN_ALGS", "VerifiedRequest", "Verifier"]

ACCESS_TOKEN_TYPES = frozenset({"at+jwt", "application/at+jwt"})
ACCESS_TOKEN_ALGS = frozenset({"EdDSA", "Ed25519", "ES256"})
_TENANT_IN_ISSUER = re.compile(r".*/tenants/([a-z0-9][a-z0-9_-]{0,62})")


@dataclass(frozen=True, slots=True)
class VerifiedRequest:
    """Who is calling and what it may do. Put in `request.scope["agentid"]` by the middleware.

    `agent_spiffe_id` / `agent_did` name the agent acting: the outermost actor of an on-behalf-of
    token (only it counts for authorisation), else the subject. `act` is the full chain, for audit.
    """

    agent_spiffe_id: str
    agent_did: str | None
    subject: str
    tenant: str
    client_id: str
    jti: str
    details: tuple[Capability, ...]
    act: Mapping[str, Any] | None
    actors: tuple[str, ...]
    delegation: Delegation | None
    claims: Mapping[str, Any]
    jkt: str | None
    x5t: str | None
    dpop_jti: str | None
    expires_at: float

    def permits(self, action: str, resource: str, *, identifier: str | int | None = None,
                data_class: str | None = None, amount: Amount | Mapping[str, str] | None = None,
                uses: int | None = None, now: float | None = None) -> bool:
        """Whether one operation lies within ONE of the token's details (`capabilities.permits`)."""
        return any(permits(cap, action, resource, identifier=identifier, data_class=data_class,
                           amount=amount, uses=uses, now=now) for cap in self.details)

    def require(self, action: str, resource: str, **operation: Any) -> None:
        """`permits`, or `InsufficientScopeError` (403). A malformed operation: `InvalidRequestError`."""
        try:
            allowed = self.permits(action, resource, **operation)
        except CapabilityError as exc:
            raise InvalidRequestError("bad_operation", "the requested operation is malformed") from exc
        if not allowed:
            raise InsufficientScopeError("outside_details",
                                         "the operation is outside the access token's authorization details")


class Verifier:
    """Verifies requests for one resource server (`audience`) and one issuer (one tenant)."""

    def __init__(
        self,
        *,
        issuer: str,
        audience: str,
        jwks: JwksSource | KeyStore,
        replay: ReplayCache | None = None,
        revocations: RevocationFeed | None = None,
        max_delegation_depth: int = 5,
        leeway: float = 30.0,
        nonce: DpopNonces | None = None,
        token_cache_size: int = 10_000,
        max_token_lifetime_s: float = 300.0,
        iat_window: tuple[float, float] = IAT_WINDOW,
        tenant: str | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        """`issuer` is compared exactly with `iss` and never used to find keys; `jwks` is where keys
        come from. `replay` defaults to a process-local cache: give replicas a shared
        `KvReplayCache`. Without `revocations`, a revoked token stays valid until it expires.
        `tenant` defaults to the `/tenants/<tenant>` suffix of `issuer`; tokens must name it."""
        self.issuer = issuer
        self.audience = audience
        self.keys = jwks if isinstance(jwks, KeyStore) else KeyStore(jwks)
        self.replay: ReplayCache = replay if replay is not None else MemoryReplayCache(sum(iat_window))
        self.revocations = revocations
        self.max_delegation_depth = max_delegation_depth
        self.leeway = leeway
        self.nonce = nonce
        self.max_token_lifetime_s = max_token_lifetime_s
        self.iat_window = iat_window
        match = _TENANT_IN_ISSUER.fullmatch(issuer)
        self.tenant = tenant or (match.group(1) if match else None)
        self._clock = clock
        self._cache_size = token_cache_size
        self._tokens: dict[bytes, AccessToken] = {}
        self.keys.on_change(self._tokens.clear)  # a key left the JWKS: re-verify everything
        if revocations is not None:
            if self.tenant is None or revocations.tenant != self.tenant:
                raise ValueError("the revocation feed must follow this verifier's tenant")
            if revocations.max_token_lifetime_s < max_token_lifetime_s or revocations.skew_s < leeway:
                raise ValueError("the revocation feed forgets revocations before tokens expire")
        if sum(iat_window) <= 0:
            raise ValueError("the iat window must not be empty")

    @property
    def dpop_algs(self) -> tuple[str, ...]:
        return DPOP_ALGS

    async def start(self) -> None:
        """Load the keys and start the revocation feed now, rather than on the first request."""
        await self.keys.refresh()
        if self.revocations is not None:
            await self.revocations.start()

    async def aclose(self) -> None:
        """Stop the revocation feed and close the JWKS source's connections (NATS stays open:
        it belongs to whoever connected it)."""
        if self.revocations is not None:
            await self.revocations.close()
        closer = getattr(self.keys.source, "aclose", None)
        if closer is not None:
            await closer()

    async def verify(
        self,
        method: str,
        url: str,
        authorization: str | Sequence[str] | None,
        dpop: str | Sequence[str] | None = None,
        *,
        client_cert: bytes | None = None,
        action: str | None = None,
        resource: str | None = None,
        identifier: str | int | None = None,
        data_class: str | None = None,
        amount: Amount | Mapping[str, str] | None = None,
        uses: int | None = None,
    ) -> VerifiedRequest:
        """Verify one request. `url` is this server's own view of the request URL (its configured
        external base URL plus the path), never one built from `Host` or `X-Forwarded-*`.
        `client_cert` is the DER of the TLS client certificate, when mTLS verified one.
        With `action`, `resource` (and the operation's caveat values) must be within the details.
        Raises a `shared.oauth_errors.VerificationError`."""
        now = self._clock()
        scheme, token = parse_authorization(authorization)
        try:
            digest = hashlib.sha256(token.encode("ascii")).digest()
        except UnicodeEncodeError as exc:
            raise InvalidTokenError("malformed", "the access token is malformed") from exc
        at = self._tokens.get(digest)
        if at is None:
            at = await self._verify_token(token, now)
            self._remember(digest, at)
        elif now > at.exp + self.leeway:
            del self._tokens[digest]
            raise InvalidTokenError("expired", "the access token has expired")

        proof: DpopResult | None = None
        if at.jkt is not None:
            if scheme != "dpop":
                raise InvalidTokenError("bound_as_bearer", "the access token is DPoP-bound: use the DPoP scheme")
            proof = check_proof(dpop, method=method, url=url, ath=b64u_encode(digest), expected_jkt=at.jkt,
                                nonce_check=self.nonce, now=now, iat_window=self.iat_window)
        else:
            if scheme != "bearer":
                raise InvalidTokenError("not_dpop_bound", "the access token is certificate-bound, not DPoP-bound")
            if client_cert is None or not compare_digest(
                    b64u_encode(hashlib.sha256(client_cert).digest()), at.x5t or ""):
                raise InvalidTokenError("certificate_binding",
                                        "the access token is bound to another client certificate")

        if self.revocations is not None:
            self.revocations.check(at, now)
        if action is not None:
            if resource is None:
                raise TypeError("an action needs the resource it acts on")
            self._authorise(at, action, resource, identifier, data_class, amount, uses, now)
        if proof is not None:
            await record(proof, self.replay)
        return VerifiedRequest(
            agent_spiffe_id=at.agent, agent_did=at.agent_did_acting, subject=at.sub, tenant=at.tenant,
            client_id=at.client_id, jti=at.jti, details=at.details, act=at.act, actors=at.actors,
            delegation=at.delegation, claims=at.claims, jkt=at.jkt, x5t=at.x5t,
            dpop_jti=proof.jti if proof is not None else None, expires_at=at.exp,
        )

    # -- the token -----------------------------------------------------------------------------------
    async def _verify_token(self, token: str, now: float) -> AccessToken:
        check_token68(token)
        try:
            header, claims, signature = jose.split(token)
        except jose.JoseError as exc:
            raise InvalidTokenError("malformed", "the access token is not a well-formed JWT") from exc
        typ = header.get("typ")
        if not isinstance(typ, str) or typ.lower() not in ACCESS_TOKEN_TYPES:
            raise InvalidTokenError("bad_typ", "the token is not an access token (typ at+jwt)")
        alg = header.get("alg")
        if not isinstance(alg, str) or alg not in ACCESS_TOKEN_ALGS:
            raise InvalidTokenError("bad_alg", "the access token alg is not accepted")
        if "crit" in header:
            raise InvalidTokenError("bad_header", "the access token has critical extensions")
        kid = header.get("kid")
        if not isinstance(kid, str) or not kid:
            raise InvalidTokenError("unknown_key", "the access token names no signing key")
        if claims.get("iss") != self.issuer:
            raise InvalidTokenError("bad_issuer", "the access token is from another issuer")
        aud = claims.get("aud")
        if not (aud == self.audience or (isinstance(aud, list) and self.audience in aud)):
            raise InvalidTokenError("bad_audience", "the access token is for another audience")
        # Only after iss and aud: a token for someone else never triggers a JWKS refetch.
        found = await self.keys.get(kid)
        if found is None:
            raise InvalidTokenError("unknown_key", "the access token is signed by an unknown key")
        if alg not in found.algs:
            raise InvalidTokenError("bad_alg", "the access token alg does not fit its key")
        if not found.key.verify(signature, token[: token.rindex(".")].encode("ascii")):
            raise InvalidTokenError("bad_signature", "the access token signature does not verify")
        self._check_times(claims, now)
        return read_token(claims, kid=kid, tenant=self.tenant, max_delegation_depth=self.max_delegation_depth)

    def _check_times(self, claims: Mapping[str, Any], now: float) -> None:
        values = (claims.get("exp"), claims.get("iat"), claims.get("nbf", claims.get("iat")))
        if not all(isinstance(v, int | float) and not isinstance(v, bool) for v in values):
            raise InvalidTokenError("bad_claims", "the access token needs numeric exp and iat")
        exp, iat, nbf = (float(v) for v in values)  # type: ignore[arg-type]
        if now > exp + self.leeway:
            raise InvalidTokenError("expired", "the access token has expired")
        if now + self.leeway < nbf or now + self.leeway < iat:
            raise InvalidTokenError("not_yet_valid", "the access token is not valid yet")
        # The revocation feed forgets an event after the longest token lifetime: a longer-lived
        # token could outlive its revocation, so it is refused outright.
        if exp - iat > self.max_token_lifetime_s:
            raise InvalidTokenError("lifetime_too_long", "the access token lives longer than accepted")

    def _remember(self, digest: bytes, at: AccessToken) -> None:
        tokens = self._tokens
        # Lifetimes are alike, so insertion order is close to expiry order: drop the oldest.
        # (Expired entries also go when they are next presented.)
        while len(tokens) >= self._cache_size > 0:
            del tokens[next(iter(tokens))]
        if self._cache_size > 0:
            tokens[digest] = at

    # -- the operation -------------------------------------------------------------------------------
    def _authorise(self, at: AccessToken, action: str, resource: str, identifier: str | int | None,
                   data_class: str | None, amount: Amount | Mapping[str, str] | None, uses: int | None,
                   now: float) -> None:
        try:
            for cap in at.details:
                if permits(cap, action, resource, identifier=identifier, data_class=data_class,
                           amount=amount, uses=uses, now=now):
                    return
        except CapabilityError as exc:
            raise InvalidRequestError("bad_operation", "the requested operation is malformed") from exc
        raise InsufficientScopeError("outside_details",
                                     "the operation is outside the access token's authorization details")
