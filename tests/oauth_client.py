"""A third party's OAuth client, for the gateway tests: httpx for HTTP and joserfc for every JWT it
signs (client assertions, DPoP proofs, actor tokens), nothing of ours. Keys are joserfc keys; the
agents and orchestrators they belong to are registered from their public halves."""

from __future__ import annotations

import secrets
import time
from typing import Any

import httpx
from joserfc import jwt
from joserfc.jwk import ECKey

ASSERTION_TYPE = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"
TOKEN_EXCHANGE = "urn:ietf:params:oauth:grant-type:token-exchange"
JWT_TYPE = "urn:ietf:params:oauth:token-type:jwt"
ACCESS_TOKEN_TYPE = "urn:ietf:params:oauth:token-type:access_token"
ID_TOKEN_TYPE = "urn:ietf:params:oauth:token-type:id_token"


def new_key() -> ECKey:
    return ECKey.generate_key("P-256")


def client_assertion(key: ECKey, client_id: str, audience: Any, *, typ: str | None = None, iat: float | None = None,
                     lifetime: int = 60, jti: str | None = None) -> str:
    """RFC 7523 section 3: iss = sub = client_id, aud = the authorization server, exp, single-use jti."""
    now = int(time.time() if iat is None else iat)
    header: dict[str, Any] = {"alg": "ES256"}
    if typ is not None:
        header["typ"] = typ
    claims = {"iss": client_id, "sub": client_id, "aud": audience, "iat": now, "exp": now + lifetime,
              "jti": jti or secrets.token_urlsafe(16)}
    return jwt.encode(header, claims, key)


def actor_token(key: ECKey, spiffe_id: str, issuer: str) -> str:
    """The acting agent's consent to a token exchange: a JWT it signed for the issuer."""
    now = int(time.time())
    return jwt.encode({"alg": "ES256", "typ": "JWT"}, {"iss": spiffe_id, "sub": spiffe_id, "aud": issuer, "iat": now,
                                                      "exp": now + 60, "jti": secrets.token_urlsafe(16)}, key)


def dpop_proof(key: ECKey, method: str, url: str, *, nonce: str | None = None, access_token: str | None = None,
               iat: float | None = None) -> str:
    """RFC 9449 section 4.2, made with joserfc."""
    import base64
    import hashlib

    claims: dict[str, Any] = {"jti": secrets.token_urlsafe(16), "htm": method, "htu": url,
                              "iat": int(time.time() if iat is None else iat)}
    if nonce is not None:
        claims["nonce"] = nonce
    if access_token is not None:
        digest = hashlib.sha256(access_token.encode("ascii")).digest()
        claims["ath"] = base64.urlsafe_b64encode(digest).rstrip(b"=").decode()
    return jwt.encode({"alg": "ES256", "typ": "dpop+jwt", "jwk": key.as_dict(private=False)}, claims, key)


async def discover(http: httpx.AsyncClient, base: str, tenant: str) -> dict[str, Any]:
    """RFC 8414 section 3, with the mix-up check of section 3.3: the metadata is the issuer's."""
    issuer = f"{base}/tenants/{tenant}"
    resp = await http.get(f"{base}/.well-known/oauth-authorization-server/tenants/{tenant}")
    resp.raise_for_status()
    metadata = resp.json()
    assert metadata["issuer"] == issuer
    return metadata


async def token_request(http: httpx.AsyncClient, url: str, form: dict[str, Any], proof: str | None,
                        **headers: str) -> httpx.Response:
    sent = dict(headers)
    if proof is not None:
        sent["DPoP"] = proof
    return await http.post(url, data=form, headers=sent)


def client_credentials_form(assertion: str, details: list[dict[str, Any]], resource: str) -> dict[str, Any]:
    import json

    return {"grant_type": "client_credentials", "client_assertion_type": ASSERTION_TYPE,
            "client_assertion": assertion, "authorization_details": json.dumps(details), "resource": resource}


def exchange_form(assertion: str, subject_token: str, subject_token_type: str, actor: str,
                  details: list[dict[str, Any]], audience: str) -> dict[str, Any]:
    import json

    return {"grant_type": TOKEN_EXCHANGE, "client_assertion_type": ASSERTION_TYPE, "client_assertion": assertion,
            "subject_token": subject_token, "subject_token_type": subject_token_type, "actor_token": actor,
            "actor_token_type": JWT_TYPE, "authorization_details": json.dumps(details), "audience": audience}
