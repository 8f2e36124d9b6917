"""The token endpoint: `POST <issuer>/token`.

Grants: `client_credentials` (RFC 6749 section 4.4) for an agent, and token exchange (RFC 8693) for
an orchestrator (a user's token, with the agent's `actor_token`) or an agent handing its
on-behalf-of token to a sub-agent. Clients authenticate with `private_key_jwt` (RFC 7523); every
request carries a DPoP proof (RFC 9449) for this endpoint's public URL, and the token is bound to
its key. Details are RFC 9396 `authorization_details`; the audience is RFC 8707 `resource` (or
RFC 8693 `audience`), one per token.

Order: the form, then the DPoP proof (nonce, then single use), and only then the client assertion
is relayed to the token worker, which verifies it and spends its `jti`. A client told
`use_dpop_nonce` therefore retries with the same assertion, as OAuth clients do.
"""

from __future__ import annotations

import json
from typing import Any

import msgspec
from starlette.requests import Request
from starlette.responses import JSONResponse

from contracts import gateway as gw
from contracts import subjects as sub
from contracts import tokens as tok
from services.gateway.edge import Edge
from services.gateway.errors import (
    NO_STORE,
    OAuthError,
    from_dpop,
    from_grant,
    invalid_client,
    invalid_request,
)
from services.gateway.forms import Form, read_form
from shared import dpop
from shared.errors import AgentidError
from shared.oauth_errors import VerificationError

GRANT_TYPES = (gw.CLIENT_CREDENTIALS, gw.TOKEN_EXCHANGE)


async def token_endpoint(edge: Edge, tenant: str, request: Request) -> JSONResponse:
    form = await read_form(request)
    params = _params(form, request)
    proof = await _check_dpop(edge, tenant, request)
    grant = _validated({**params, "dpop_jkt": proof.jkt})
    try:
        issued = await edge.bus.request(sub.TOKEN_GRANT, tenant, grant)
    except AgentidError as exc:
        raise from_grant(exc, exchange=grant.grant_type == gw.TOKEN_EXCHANGE) from exc
    body = {"access_token": issued.access_token, "token_type": issued.token_type,
            "issued_token_type": issued.issued_token_type, "expires_in": issued.expires_in,
            "authorization_details": issued.authorization_details}
    headers = dict(NO_STORE)
    if edge.nonces is not None:
        headers["DPoP-Nonce"] = edge.nonces.current()  # RFC 9449 section 8.2: keep the client current
    return JSONResponse(body, headers=headers)


def _params(form: Form, request: Request) -> dict[str, Any]:
    """The relayed request's parameters, checked here except the client's credentials."""
    if "authorization" in request.headers:
        # RFC 6749 section 5.2: authenticated by a header we do not accept -> 401 with its scheme.
        raise invalid_client("authenticate with private_key_jwt; HTTP authentication is not accepted here",
                             basic=True)
    grant_type = form.require("grant_type")
    if grant_type not in GRANT_TYPES:
        raise OAuthError(400, "unsupported_grant_type", "the grant types are client_credentials and token exchange")
    if form.one("client_assertion_type") != gw.JWT_BEARER_ASSERTION or form.one("client_assertion") is None:
        raise invalid_client("authenticate with a private_key_jwt client assertion (RFC 7523)")
    if "client_secret" in form:
        raise invalid_request("use one client authentication method")
    if "scope" in form:
        raise OAuthError(400, "invalid_scope", "ask with authorization_details (RFC 9396), not scope")
    params: dict[str, Any] = {
        "grant_type": grant_type, "client_assertion": form.one("client_assertion"),
        "client_id": form.one("client_id"),
        "authorization_details": _details(form.require("authorization_details")),
        "audience": _audience(form),
    }
    if grant_type == gw.TOKEN_EXCHANGE:
        requested = form.one("requested_token_type")
        if requested is not None and requested != tok.ACCESS_TOKEN_TYPE:
            raise invalid_request("the requested_token_type can only be an access token")
        params.update(subject_token=form.require("subject_token"),
                      subject_token_type=form.require("subject_token_type"),
                      actor_token=form.require("actor_token"), actor_token_type=form.require("actor_token_type"))
    else:
        for name in ("subject_token", "actor_token", "subject_token_type", "actor_token_type"):
            if name in form:
                raise invalid_request(f"{name} belongs to a token exchange")
    return params


def _validated(params: dict[str, Any]) -> gw.TokenGrant:
    try:
        return msgspec.convert(params, gw.TokenGrant)
    except msgspec.ValidationError as exc:
        raise invalid_request(f"a parameter is out of bounds: {_where(exc)}") from exc


def _details(raw: str) -> list[dict[str, Any]]:
    """RFC 9396: a JSON array of objects; anything else is `invalid_authorization_details`."""
    try:
        value = json.loads(raw, object_pairs_hook=_no_duplicates, parse_constant=_no_constant)
        return msgspec.convert(value, tok.Details)
    except (ValueError, RecursionError, msgspec.ValidationError) as exc:
        raise OAuthError(400, "invalid_authorization_details",
                         "authorization_details is a JSON array of 1 to 16 detail objects") from exc


def _no_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    obj = dict(pairs)
    if len(obj) != len(pairs):
        raise ValueError("duplicate member")
    return obj


def _no_constant(name: str) -> Any:
    raise ValueError(f"JSON constant {name} is not allowed")


def _audience(form: Form) -> str:
    """One audience per token: `resource` (RFC 8707) or `audience` (RFC 8693); both must agree."""
    named = {*form.many("resource"), *form.many("audience")}
    if not named:
        raise OAuthError(400, "invalid_target", "name the resource (RFC 8707) the token is for")
    if len(named) > 1:
        raise OAuthError(400, "invalid_target", "a token is for one resource")
    return named.pop()


def _where(exc: msgspec.ValidationError) -> str:
    # msgspec names the path (`$.subject_token`) and the rule broken, never the value.
    return str(exc).rsplit(" - at ", 1)[-1] if " - at " in str(exc) else "a parameter"


async def _check_dpop(edge: Edge, tenant: str, request: Request) -> dpop.DpopResult:
    try:
        result = dpop.check_proof(request.headers.getlist("dpop") or None, method="POST",
                                  url=edge.token_endpoint(tenant), nonce_check=edge.nonces)
        await dpop.record(result, edge.replay)
    except VerificationError as exc:
        raise from_dpop(exc) from exc
    return result
