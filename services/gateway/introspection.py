"""Introspection (RFC 7662, `POST <issuer>/introspect`) and revocation (RFC 7009,
`POST <issuer>/revoke`) for registered resource servers, authenticated with HTTP Basic.

Introspection of a live token returns its claims with the full `act` chain and the `delegation`
path; anything else (unknown, expired, revoked, another tenant's or another resource server's)
is `{"active": false}` and nothing more. Revocation answers 200 with an empty body whether or not
there was anything to revoke (RFC 7009 section 2.2).
"""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from contracts import gateway as gw
from contracts import subjects as sub
from services.gateway.edge import Edge
from services.gateway.errors import (
    NO_STORE,
    from_resource_server_call,
    invalid_client,
    invalid_request,
)
from services.gateway.forms import basic_credentials, read_form
from shared.errors import AgentidError

MAX_TOKEN_CHARS = 16 * 1024


async def _call(request: Request) -> gw.ResourceServerCall:
    credentials = basic_credentials(request)
    if credentials is None:
        raise invalid_client("authenticate with HTTP Basic", basic=True)
    form = await read_form(request)
    if "client_secret" in form or "client_assertion" in form:
        raise invalid_request("use one client authentication method")
    token = form.require("token")
    if len(token) > MAX_TOKEN_CHARS:
        raise invalid_request("the token is too large")
    client_id, secret = credentials
    if len(client_id) > 256 or len(secret) > 256:
        raise invalid_client(basic=True)
    return gw.ResourceServerCall(client_id=client_id, client_secret=secret, token=token)


async def introspect(edge: Edge, tenant: str, request: Request) -> JSONResponse:
    call = await _call(request)
    try:
        result = await edge.bus.request(sub.TOKEN_RS_INTROSPECT, tenant, call)
    except AgentidError as exc:
        raise from_resource_server_call(exc) from exc
    body = {**(result.claims or {}), "active": True} if result.active else {"active": False}
    return JSONResponse(body, headers=NO_STORE)


async def revoke(edge: Edge, tenant: str, request: Request) -> Response:
    call = await _call(request)
    try:
        await edge.bus.request(sub.TOKEN_RS_REVOKE, tenant, call)
    except AgentidError as exc:
        raise from_resource_server_call(exc) from exc
    return Response(status_code=200, headers=NO_STORE)
