"""The public documents: RFC 8414 metadata, token keys, did:web documents, status lists, SPIFFE
bundles. Each is read from its owner over the bus on every request (rotations show at once; a
resource server that meets an unknown `kid` gets the new key on its one refetch).

Token keys, issuers and trust domains are per tenant, so every document lives under the tenant's
issuer URL `<base>/tenants/<tenant>`. The bare `/jwks.json` names no tenant: it answers 404 with a
pointer to the tenant's `jwks_uri` rather than a mixture of tenants' keys.
"""

from __future__ import annotations

import re
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from contracts import gateway as gw
from contracts import issuance as iss
from contracts import registration as reg
from contracts import subjects as sub
from contracts import tokens as tok
from services.gateway.edge import Edge
from services.gateway.errors import OAuthError
from shared.dpop import ALGS as DPOP_ALGS
from shared.errors import AgentidError, NotFound, Unavailable

ASSERTION_ALGS = ["EdDSA", "Ed25519", "ES256"]
def not_found() -> OAuthError:
    return OAuthError(404, "not_found", "no such document")

_LIST_ID = re.compile(r"[A-Za-z0-9_-]{1,64}")


def valid_list_id(list_id: str) -> bool:
    return bool(_LIST_ID.fullmatch(list_id))


def _failed(exc: AgentidError) -> OAuthError:
    if isinstance(exc, NotFound):
        return not_found()
    if isinstance(exc, Unavailable):
        return OAuthError(503, "temporarily_unavailable", "the service is unavailable; retry shortly",
                          {"Retry-After": "1"})
    return OAuthError(500, "server_error", "internal error")


async def _require_tenant(edge: Edge, tenant: str) -> None:
    try:
        if not await edge.tenants.exists(tenant):
            raise not_found()
    except AgentidError as exc:
        raise _failed(exc) from exc


def metadata(edge: Edge, tenant: str, detail_types: list[str]) -> dict[str, Any]:
    issuer = edge.issuer(tenant)
    return {
        "issuer": issuer,
        "token_endpoint": gw.token_endpoint(issuer),
        "jwks_uri": f"{issuer}/jwks.json",
        "introspection_endpoint": f"{issuer}/introspect",
        "revocation_endpoint": f"{issuer}/revoke",
        # No authorization endpoint: agents get tokens without a browser, so no response types.
        "response_types_supported": [],
        "grant_types_supported": [gw.CLIENT_CREDENTIALS, gw.TOKEN_EXCHANGE],
        "token_endpoint_auth_methods_supported": ["private_key_jwt"],
        "token_endpoint_auth_signing_alg_values_supported": ASSERTION_ALGS,
        "introspection_endpoint_auth_methods_supported": ["client_secret_basic"],
        "revocation_endpoint_auth_methods_supported": ["client_secret_basic"],
        "dpop_signing_alg_values_supported": list(DPOP_ALGS),
        "authorization_details_types_supported": detail_types,
        "tls_client_certificate_bound_access_tokens": False,
    }


async def authorization_server(edge: Edge, tenant: str, request: Request) -> JSONResponse:
    """RFC 8414 section 3: `<base>/.well-known/oauth-authorization-server/tenants/<tenant>`."""
    await _require_tenant(edge, tenant)
    try:
        config = await edge.bus.request(sub.TOKEN_CONFIG_GET, tenant, tok.GetTokenConfig())
    except AgentidError as exc:
        raise _failed(exc) from exc
    return JSONResponse(metadata(edge, tenant, sorted(config.config.detail_types)))


async def jwks(edge: Edge, tenant: str, request: Request) -> JSONResponse:
    await _require_tenant(edge, tenant)
    try:
        keys = await edge.bus.request(sub.TOKEN_JWKS, tenant, tok.GetJwks())
    except AgentidError as exc:
        raise _failed(exc) from exc
    return JSONResponse({"keys": keys.keys})


async def bare_jwks(edge: Edge, request: Request) -> JSONResponse:
    return JSONResponse({"error": "not_found", "error_description": "token keys are per tenant: "
                         f"{edge.base}/tenants/<tenant>/jwks.json (the jwks_uri of the tenant's metadata)"},
                        status_code=404)


async def did_document(edge: Edge, tenant: str, request: Request) -> Response:
    """The tenant issuer's did:web document (`did:web:<host>:tenants:<tenant>`); 404 while issuers
    are did:key (no AGENTID_DID_WEB_HOST), which resolve without any document."""
    await _require_tenant(edge, tenant)
    try:
        issuer = await edge.bus.request(sub.GET_ISSUER, tenant, iss.GetIssuer())
    except AgentidError as exc:
        raise _failed(exc) from exc
    if not issuer.did.startswith("did:web:"):
        raise not_found()
    return JSONResponse(issuer.did_document, media_type="application/did+json")


async def status_list(edge: Edge, tenant: str, list_id: str, request: Request) -> Response:
    """The Bitstring Status List credential at the URL its credentials name (`application/vc+jwt`)."""
    try:
        record = await edge.bus.request(sub.GET_STATUS_LIST, tenant, iss.GetStatusList(list_id=list_id))
    except AgentidError as exc:
        raise _failed(exc) from exc
    return Response(record.vc_jwt, media_type="application/vc+jwt")


async def bundle(edge: Edge, tenant: str, request: Request) -> JSONResponse:
    """The SPIFFE bundle endpoint (`https_web` profile: plain GET, no client authentication, the
    bundle JWKS as UTF-8 JSON). TLS with a Web PKI certificate is the front proxy's job."""
    try:
        trust = await edge.bus.request(sub.GET_BUNDLE, tenant, reg.GetBundle())
    except AgentidError as exc:
        raise _failed(exc) from exc
    return JSONResponse(trust.jwks)
