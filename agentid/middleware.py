"""ASGI middleware for resource servers (Starlette, FastAPI, any ASGI app), built on `Verifier`.

    app.add_middleware(AgentidMiddleware, verifier=verifier, base_url="https://ledger.example",
                       rules=[Rule("GET", "/accounts/{id}", "read", "https://ledger.example/accounts/{id}")])

Every HTTP request is verified before the app sees it:
  - a `Rule` maps (method, path template) to the action and resource URI template the request
    needs; `{name}` placeholders are filled from the path (still percent-encoded, as the client
    sent it). A request no rule matches is refused with 403 once its credentials are checked,
    unless `unmatched="authenticate"` (credentials only); `public_paths` skip verification.
  - The request URL checked against the proof's `htu` is `base_url` plus the raw request path:
    behind a proxy, set `base_url` to the external URL; `Host` and `X-Forwarded-*` are never used.
  - On success `scope["agentid"]` (so `request.scope["agentid"]`) holds the `VerifiedRequest`;
    handlers check operation-specific caveats with `verified.require(...)`, and a
    `VerificationError` they raise before responding is answered like the middleware's own.
  - Refusals: the status and `WWW-Authenticate: DPoP error=..., error_description=..., algs=...`
    of RFC 6750 / RFC 9449 (no `error` when no credentials were sent), `DPoP-Nonce` with
    `use_dpop_nonce`, and `resource_metadata` (RFC 9728). Descriptions are fixed sentences: no
    token or proof text is ever echoed. With server nonces, successful responses carry a fresh
    `DPoP-Nonce`.
  - RFC 9728 protected-resource metadata is served at `/.well-known/oauth-protected-resource`
    (and with the resource's path appended, when it has one).
  - mTLS-bound tokens (`cnf.x5t#S256`): the client certificate comes from the ASGI TLS extension
    (`client_cert="tls"`) or, only when configured, from a header set by a proxy in
    `trusted_proxies` (URL-escaped PEM, as nginx's `$ssl_client_escaped_cert`).
"""

from __future__ import annotations

import json
import re
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal
from urllib.parse import unquote, urlsplit

from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding

from agentid.verifier import Verifier
from shared.dpop import ALGS as DPOP_ALGS
from shared.oauth_errors import (
    InsufficientScopeError,
    UseDpopNonceError,
    VerificationError,
)

__all__ = ["SCOPE_KEY", "AgentidMiddleware", "Rule", "challenge"]

SCOPE_KEY = "agentid"
METADATA_PATH = "/.well-known/oauth-protected-resource"
MAX_HEADER_VALUES = 4  # more Authorization or DPoP headers than this is refused like two of them
_PARAM = re.compile(r"\{([A-Za-z_][A-Za-z0-9_]*)\}")

Scope = Mapping[str, Any]
Receive = Callable[[], Awaitable[Mapping[str, Any]]]
Send = Callable[[Mapping[str, Any]], Awaitable[None]]
Asgi = Callable[[Any, Receive, Send], Awaitable[None]]


@dataclass(frozen=True)
class Rule:
    """What a route needs: `action` on `resource` (URI template), optionally naming `identifier`
    (template, e.g. `"{id}"`) and touching data of class `data_class`.

    `action=None`: the middleware checks the credentials only and the handler authorises the
    operation with `scope["agentid"].require(...)`, for caveats that depend on the body (an
    `amount`): a capability with a caveat never permits an operation that does not state its value.
    """

    method: str
    path: str
    action: str | None
    resource: str | None = None
    identifier: str | None = None
    data_class: str | None = None
    _pattern: re.Pattern[str] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if (self.action is None) != (self.resource is None):
            raise ValueError("a rule names both an action and a resource, or neither")
        names = _PARAM.findall(self.path)
        for template in (self.resource, self.identifier):
            if template is not None and not set(_PARAM.findall(template)) <= set(names):
                raise ValueError(f"{template!r} uses a placeholder the path {self.path!r} does not have")
        parts = _PARAM.split(self.path)  # literal, name, literal, name, ...
        regex = "".join(re.escape(p) if i % 2 == 0 else f"(?P<{p}>[^/]+)" for i, p in enumerate(parts))
        object.__setattr__(self, "_pattern", re.compile(regex))  # compiled once, here

    def match(self, method: str, path: str) -> dict[str, str] | None:
        # HEAD is GET without a body (the app answers it with the GET route), so it needs the same.
        if method != self.method and not (method == "HEAD" and self.method == "GET"):
            return None
        m = self._pattern.fullmatch(path)
        return m.groupdict() if m else None

    @staticmethod
    def fill(template: str | None, params: Mapping[str, str]) -> str | None:
        if template is None:
            return None
        return _PARAM.sub(lambda m: params[m.group(1)], template)


def challenge(error: VerificationError | None, *, algs: Sequence[str] = DPOP_ALGS,
              resource_metadata: str | None = None) -> str:
    """The `WWW-Authenticate` value for a refusal (or a bare challenge when `error` is None)."""
    params = []
    if error is not None and error.code:
        params.append(f'error="{error.code}"')
        params.append(f'error_description="{_quoted(error.description)}"')
    params.append(f'algs="{" ".join(algs)}"')
    if resource_metadata:
        params.append(f'resource_metadata="{_quoted(resource_metadata)}"')
    return "DPoP " + ", ".join(params)


def _quoted(text: str) -> str:
    return "".join(c for c in text if c not in '"\\' and " " <= c <= "~")


class AgentidMiddleware:
    def __init__(
        self,
        app: Asgi,
        *,
        verifier: Verifier | Callable[[], Verifier],
        base_url: str,
        rules: Iterable[Rule] = (),
        unmatched: Literal["deny", "authenticate"] = "deny",
        public_paths: Iterable[str] = (),
        resource: str | None = None,
        authorization_servers: Sequence[str] = (),
        jwks_uri: str | None = None,
        authorization_details_types: Sequence[str] = (),
        resource_name: str | None = None,
        client_cert: Literal["tls"] | None = None,
        client_cert_header: str | None = None,
        trusted_proxies: Iterable[str] = (),
    ) -> None:
        """`resource` (the RFC 9728 resource identifier) defaults to the verifier's audience.
        `jwks_uri` is the resource server's OWN key set (RFC 9728), not the token issuer's."""
        self.app = app
        self._verifier = verifier
        self._base = base_url.rstrip("/")
        self.rules = tuple(rules)
        self._unmatched = unmatched
        self._public = frozenset(public_paths)
        self._resource = resource
        self._authorization_servers = list(authorization_servers)
        self._jwks_uri = jwks_uri
        self._detail_types = list(authorization_details_types)
        self._resource_name = resource_name
        self._client_cert = client_cert
        if client_cert_header is not None and not trusted_proxies:
            raise ValueError("a client certificate header is only trusted from named proxies")
        self._cert_header = client_cert_header.lower().encode("latin-1") if client_cert_header else None
        self._trusted_proxies = frozenset(trusted_proxies)
        self._metadata_paths: frozenset[str] = frozenset()
        self._metadata_body: bytes | None = None
        self._metadata_url: str | None = None

    # -- plumbing ----------------------------------------------------------------------------------
    @property
    def verifier(self) -> Verifier:
        v = self._verifier
        return v if isinstance(v, Verifier) else v()

    def _metadata(self) -> None:
        """Built on first use: the verifier (and so the default resource) may appear at start-up."""
        resource = self._resource or self.verifier.audience
        path = urlsplit(resource).path.rstrip("/")
        self._metadata_paths = frozenset({METADATA_PATH, METADATA_PATH + path})
        self._metadata_url = f"{self._base}{METADATA_PATH}{path}"
        doc: dict[str, Any] = {
            "resource": resource,
            "authorization_servers": self._authorization_servers or [self.verifier.issuer],
            "bearer_methods_supported": ["header"],
            "dpop_bound_access_tokens_required": True,
            "dpop_signing_alg_values_supported": list(DPOP_ALGS),
            "tls_client_certificate_bound_access_tokens": bool(self._client_cert or self._cert_header),
        }
        if self._detail_types:
            doc["authorization_details_types_supported"] = self._detail_types
        if self._jwks_uri:
            doc["jwks_uri"] = self._jwks_uri
        if self._resource_name:
            doc["resource_name"] = self._resource_name
        self._metadata_body = json.dumps(doc, separators=(",", ":")).encode()

    async def __call__(self, scope: Any, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            await self.app(scope, receive, send)
            return
        if scope["type"] != "http":
            # No DPoP over other protocols here: refuse rather than pass an unverified socket on.
            if scope["type"] == "websocket":
                await send({"type": "websocket.close", "code": 1008})
            return
        if self._metadata_body is None:
            self._metadata()
        path: str = scope["path"]
        method: str = scope["method"]
        if path in self._metadata_paths and method == "GET":
            await _respond(send, 200, self._metadata_body or b"{}", [(b"cache-control", b"max-age=300")])
            return
        if path in self._public:
            await self.app(scope, receive, send)
            return
        verifier = self.verifier
        try:
            verified = await self._verify(verifier, scope)
        except VerificationError as err:
            await self._refuse(send, err)
            return
        scope[SCOPE_KEY] = verified
        started = False
        nonce = verifier.nonce

        async def send_wrapper(message: Mapping[str, Any]) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
                if nonce is not None:
                    message = {**message, "headers": [*message.get("headers", ()),
                                                      (b"dpop-nonce", nonce.current().encode())]}
            await send(message)

        try:
            await self.app(scope, receive, send_wrapper)
        except VerificationError as err:
            if started:
                raise
            await self._refuse(send, err)

    async def _verify(self, verifier: Verifier, scope: Any) -> Any:
        raw_path = scope.get("raw_path")
        # The path as the client sent it (still percent-encoded), which its proof's htu names.
        path = raw_path.decode("latin-1").split("?", 1)[0] if raw_path else scope["path"]
        method = scope["method"]
        rule, params = None, {}
        for candidate in self.rules:
            found = candidate.match(method, path)
            if found is not None:
                rule, params = candidate, found
                break
        authorization: list[str] = []
        dpop: list[str] = []
        cert_header: str | None = None
        for name, value in scope["headers"]:
            if name == b"authorization":
                authorization.append(value.decode("latin-1"))
            elif name == b"dpop":
                dpop.append(value.decode("latin-1"))
            elif self._cert_header is not None and name == self._cert_header:
                cert_header = value.decode("latin-1")
            if len(authorization) > MAX_HEADER_VALUES or len(dpop) > MAX_HEADER_VALUES:
                break
        operation: dict[str, Any] = {}
        if rule is not None and rule.action is not None:
            operation = {"action": rule.action, "resource": Rule.fill(rule.resource, params),
                         "identifier": Rule.fill(rule.identifier, params), "data_class": rule.data_class}
        verified = await verifier.verify(
            method, self._base + path, authorization or None, dpop or None,
            client_cert=self._peer_certificate(scope, cert_header), **operation)
        if rule is None and self._unmatched == "deny":
            raise InsufficientScopeError("no_rule", "no authorization rule covers this request")
        return verified

    def _peer_certificate(self, scope: Any, header: str | None) -> bytes | None:
        """DER of the client certificate the TLS layer verified, or None."""
        pem: str | None = None
        if self._client_cert == "tls":
            tls = (scope.get("extensions") or {}).get("tls") or {}
            chain = tls.get("client_cert_chain") or ()
            # ASGI TLS extension: a chain the server could not verify comes with an error string.
            pem = chain[0] if chain and tls.get("client_cert_error") is None else None
        elif header is not None:
            client = scope.get("client")
            if client and client[0] in self._trusted_proxies:
                pem = unquote(header)
        if not pem:
            return None
        try:
            return x509.load_pem_x509_certificate(pem.encode("ascii")).public_bytes(Encoding.DER)
        except (ValueError, UnicodeEncodeError):
            return None

    async def _refuse(self, send: Send, err: VerificationError) -> None:
        headers: list[tuple[bytes, bytes]] = [(b"cache-control", b"no-store")]
        if err.status == 503:
            headers.append((b"retry-after", b"1"))
        else:
            www = challenge(err, resource_metadata=self._metadata_url)
            headers.append((b"www-authenticate", www.encode("latin-1")))
        if isinstance(err, UseDpopNonceError):
            headers.append((b"dpop-nonce", err.nonce.encode("latin-1")))
        body: dict[str, str] = {"error": err.code or "unauthorized", "error_description": err.description}
        await _respond(send, err.status, json.dumps(body).encode(), headers)


async def _respond(send: Send, status: int, body: bytes, headers: list[tuple[bytes, bytes]]) -> None:
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-type", b"application/json"),
                            (b"content-length", str(len(body)).encode()), *headers]})
    await send({"type": "http.response.body", "body": body})
