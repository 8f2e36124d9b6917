"""Tokens over HTTP: an agent asks the gateway's token endpoint, as any OAuth client would.

    token = await client_credentials(http, base_url, tenant, key, spiffe_id, details, resource)

Discovery (RFC 8414, with the issuer check), a `private_key_jwt` client assertion signed with the
agent's key (RFC 7523), a DPoP proof (RFC 9449; the token is bound to `dpop_key`, the agent's key
unless another is given) and one retry when the server asks for a DPoP nonce. For runtimes that
reach agentid over HTTP rather than NATS.
"""

from __future__ import annotations

import json
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import httpx

from shared import jose
from shared.dpop import make_proof
from shared.errors import (
    AgentidError,
    Forbidden,
    InvalidAuthorizationDetails,
    InvalidClient,
    InvalidGrant,
    InvalidProof,
    InvalidRequest,
    InvalidScope,
    InvalidTarget,
    Unavailable,
)
from shared.ids import new_id
from shared.keys import PrivateKey

ASSERTION_TYPE = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"


@dataclass(frozen=True)
class HttpToken:
    access_token: str
    token_type: str
    expires_in: int
    authorization_details: list[dict[str, Any]]
    metadata: dict[str, Any]  # the authorization server's, as discovered


async def discover(http: httpx.AsyncClient, base_url: str, tenant: str) -> dict[str, Any]:
    issuer = f"{base_url.rstrip('/')}/tenants/{tenant}"
    resp = await http.get(f"{base_url.rstrip('/')}/.well-known/oauth-authorization-server/tenants/{tenant}")
    if resp.status_code != 200:
        raise Unavailable(f"no authorization server metadata (HTTP {resp.status_code})")
    metadata = jose.parse_json_object(resp.content)
    if metadata.get("issuer") != issuer:  # RFC 8414 section 3.3: no mix-up
        raise InvalidRequest("the metadata is not the issuer's")
    return metadata


async def client_credentials(http: httpx.AsyncClient, base_url: str, tenant: str, key: PrivateKey, spiffe_id: str,
                             authorization_details: Sequence[Mapping[str, Any]], resource: str, *,
                             dpop_key: PrivateKey | None = None) -> HttpToken:
    metadata = await discover(http, base_url, tenant)
    endpoint = metadata["token_endpoint"]
    now = int(time.time())
    assertion = jose.sign({"iss": spiffe_id, "sub": spiffe_id, "aud": endpoint, "iat": now, "exp": now + 60,
                           "jti": new_id()}, key, typ="JWT")
    form = {"grant_type": "client_credentials", "client_assertion_type": ASSERTION_TYPE,
            "client_assertion": assertion, "authorization_details": json.dumps(list(authorization_details)),
            "resource": resource}
    nonce: str | None = None
    for _ in range(2):  # the second try only with the nonce the server asked for
        proof = make_proof(dpop_key or key, "POST", endpoint, nonce=nonce)
        resp = await http.post(endpoint, data=form, headers={"DPoP": proof})
        body = jose.parse_json_object(resp.content) if resp.content else {}
        if resp.status_code == 400 and body.get("error") == "use_dpop_nonce" and nonce is None:
            nonce = resp.headers.get("DPoP-Nonce")
            continue
        if resp.status_code != 200:
            raise _error(resp.status_code, body)
        return HttpToken(access_token=body["access_token"], token_type=body["token_type"],
                         expires_in=body["expires_in"], authorization_details=body["authorization_details"],
                         metadata=metadata)
    raise InvalidProof("the token endpoint asked for a DPoP nonce twice")


# The OAuth error codes as the SDK's typed errors.
_ERRORS: dict[str, type[AgentidError]] = {
    "invalid_client": InvalidClient, "invalid_dpop_proof": InvalidProof, "use_dpop_nonce": InvalidProof,
    "invalid_scope": InvalidScope, "invalid_authorization_details": InvalidAuthorizationDetails,
    "invalid_target": InvalidTarget, "invalid_grant": InvalidGrant, "unauthorized_client": Forbidden,
    "temporarily_unavailable": Unavailable,
}


def _error(status: int, body: Mapping[str, Any]) -> AgentidError:
    code = str(body.get("error", ""))
    cls = _ERRORS.get(code, Unavailable if status >= 500 else InvalidRequest)
    return cls(f"token endpoint: {code or status}: {body.get('error_description', '')}"[:1024])
