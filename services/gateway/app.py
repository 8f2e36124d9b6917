"""The gateway's routes (Starlette). Every path, method and authentication, in one table:

    GET  /healthz, /readyz                                          liveness; NATS connected
    GET  /.well-known/oauth-authorization-server/tenants/{t}        RFC 8414 metadata of issuer <base>/tenants/{t}
    POST /tenants/{t}/token                                         private_key_jwt + DPoP (RFC 7523, 9449)
    POST /tenants/{t}/introspect                                    HTTP Basic, a registered resource server
    POST /tenants/{t}/revoke                                        HTTP Basic, a registered resource server
    GET  /tenants/{t}/jwks.json                                     the tenant's token signing keys
    GET  /tenants/{t}/did.json                                      the issuer's did:web document
    GET  /tenants/{t}/status-lists/{id}                             a status list credential (application/vc+jwt)
    GET  /tenants/{t}/bundle                                        SPIFFE bundle endpoint (https_web)
    GET  /jwks.json                                                 404: keys are per tenant (points to them)

Every refusal is a JSON error (RFC 6749 section 5.2 shape); a request that breaks anything,
including the gateway's own code, gets an answer and never takes the process down.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Awaitable, Callable
from typing import Any

from opentelemetry import trace
from opentelemetry.trace import SpanKind
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from services.gateway import documents, introspection
from services.gateway.edge import Edge, valid_tenant
from services.gateway.errors import OAuthError
from services.gateway.token import token_endpoint
from shared import telemetry

log = logging.getLogger(__name__)

TenantHandler = Callable[[Edge, str, Request], Awaitable[Response]]


def build_app(edge: Edge) -> Any:
    def per_tenant(handler: TenantHandler) -> Callable[[Request], Awaitable[Response]]:
        async def endpoint(request: Request) -> Response:
            tenant = request.path_params["tenant"]
            if not valid_tenant(tenant):
                raise documents.not_found()
            trace.get_current_span().set_attribute("agentid.tenant", tenant)
            return await handler(edge, tenant, request)
        return endpoint

    async def status_list(request: Request) -> Response:
        tenant, list_id = request.path_params["tenant"], request.path_params["list_id"]
        if not valid_tenant(tenant) or not documents.valid_list_id(list_id):
            raise documents.not_found()
        return await documents.status_list(edge, tenant, list_id, request)

    async def healthz(request: Request) -> Response:
        return JSONResponse({"status": "ok"})

    async def readyz(request: Request) -> Response:
        if edge.ready:
            return JSONResponse({"status": "ready"})
        return JSONResponse({"status": "not ready", "reason": "no NATS connection"}, status_code=503)

    async def bare_jwks(request: Request) -> Response:
        return await documents.bare_jwks(edge, request)

    def route(path: str, endpoint: Callable[[Request], Awaitable[Response]], method: str) -> Route:
        return Route(path, traced(path, endpoint), methods=[method])

    routes = [
        Route("/healthz", healthz, methods=["GET"]),
        Route("/readyz", readyz, methods=["GET"]),
        Route("/jwks.json", bare_jwks, methods=["GET"]),
        route("/.well-known/oauth-authorization-server/tenants/{tenant}", per_tenant(documents.authorization_server),
              "GET"),
        route("/tenants/{tenant}/token", per_tenant(token_endpoint), "POST"),
        route("/tenants/{tenant}/introspect", per_tenant(introspection.introspect), "POST"),
        route("/tenants/{tenant}/revoke", per_tenant(introspection.revoke), "POST"),
        route("/tenants/{tenant}/jwks.json", per_tenant(documents.jwks), "GET"),
        route("/tenants/{tenant}/did.json", per_tenant(documents.did_document), "GET"),
        route("/tenants/{tenant}/bundle", per_tenant(documents.bundle), "GET"),
        route("/tenants/{tenant}/status-lists/{list_id}", status_list, "GET"),
    ]
    app = Starlette(routes=routes, exception_handlers={
        OAuthError: _oauth_error, HTTPException: _http_error, Exception: _unexpected})
    app.router.redirect_slashes = False  # a path is ours exactly or not at all: never a redirect
    return _Guard(app)


class _Guard:
    """Starlette answers an unexpected exception (with `_unexpected`) and then re-raises it for
    the server to log with its traceback; stop it here: one line with its type is logged."""

    def __init__(self, app: Any) -> None:
        self.app = app

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        with contextlib.suppress(Exception):  # already answered and logged by `_unexpected`
            await self.app(scope, receive, send)


Endpoint = Callable[[Request], Awaitable[Response]]


def traced(template: str, endpoint: Endpoint) -> Endpoint:
    """A server span per request, continuing the client's W3C trace context, so one trace runs from
    an OAuth client through the bus to the token worker. Only the method, the route template and
    the status are recorded: never a URL with its query, a header or a body."""
    async def endpoint_in_span(request: Request) -> Response:
        carrier = {k: v for k, v in request.headers.items() if k in ("traceparent", "tracestate")}
        with telemetry.tracer.start_as_current_span(
            f"{request.method} {template}", context=telemetry.extract(carrier), kind=SpanKind.SERVER,
            attributes={"http.request.method": request.method, "http.route": template},
            record_exception=False, set_status_on_exception=False,
        ) as span:
            try:
                response = await endpoint(request)
            except OAuthError as exc:
                span.set_attribute("http.response.status_code", exc.status)
                telemetry.mark_error(span, exc.error)
                raise
            span.set_attribute("http.response.status_code", response.status_code)
            return response
    return endpoint_in_span


async def _oauth_error(request: Request, exc: Any) -> Response:
    return exc.response()


async def _http_error(request: Request, exc: Any) -> Response:
    """Starlette's own refusals (unknown path, wrong method), in the same JSON shape."""
    error = {404: "not_found", 405: "method_not_allowed"}.get(exc.status_code, "invalid_request")
    headers = dict(exc.headers or {})
    return JSONResponse({"error": error}, status_code=exc.status_code, headers=headers)


async def _unexpected(request: Request, exc: Exception) -> Response:
    # The type only: an exception's text could quote what the client sent.
    log.error("gateway: unexpected %s on %s %s", type(exc).__name__, request.method, request.url.path)
    return JSONResponse({"error": "server_error"}, status_code=500, headers={"Cache-Control": "no-store"})
