"""The HTTP edge: what the gateway relays to the token worker, and the resource-server registry.

The gateway holds no keys and no state. It checks what only it can see (the HTTP request, the
DPoP proof for its own URL), and relays the rest of an OAuth request, which the token worker
authenticates itself (the client assertion against the client's registered key, a resource
server's secret against its stored hash).
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Literal

import msgspec

from contracts.tokens import Details, SubjectTokenType
from contracts.types import Id, Jws, Name, Struct, Uri, anchored

CLIENT_CREDENTIALS = "client_credentials"
TOKEN_EXCHANGE = "urn:ietf:params:oauth:grant-type:token-exchange"
JWT_BEARER_ASSERTION = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"
JWT_TOKEN_TYPE = "urn:ietf:params:oauth:token-type:jwt"
GATEWAY_SERVICE = "gateway"

# RFC 7638 SHA-256 thumbprint, base64url without padding.
Thumbprint = Annotated[str, msgspec.Meta(pattern=anchored(r"[A-Za-z0-9_-]{43}"))]
Secret = Annotated[str, msgspec.Meta(min_length=1, max_length=256)]
Audiences = Annotated[list[Uri], msgspec.Meta(min_length=1, max_length=16)]


def token_endpoint(issuer: str) -> str:
    """The token endpoint of a tenant issuer (`<base>/tenants/<tenant>`): one place for the path."""
    return f"{issuer}/token"


class TokenGrant(Struct, kw_only=True):
    """A token request from the HTTP token endpoint (RFC 6749 section 4.4 or RFC 8693), relayed by
    the gateway after it verified the DPoP proof (RFC 9449, nonce and replay included).

    `client_assertion` (RFC 7523 `private_key_jwt`) is checked by the token worker against the
    client's registered key; `dpop_jkt` is the proof key the token is bound to."""

    grant_type: Literal["client_credentials", "urn:ietf:params:oauth:grant-type:token-exchange"]
    client_assertion: Jws
    client_id: Uri | None = None
    dpop_jkt: Thumbprint
    authorization_details: Details
    audience: Uri
    subject_token: Jws | None = None
    subject_token_type: SubjectTokenType | None = None
    actor_token: Jws | None = None
    actor_token_type: Literal["urn:ietf:params:oauth:token-type:jwt"] | None = None


# -- resource servers (introspection and revocation clients) ---------------------------------------
class AddResourceServer(Struct, kw_only=True):
    """Register a resource server that may introspect and revoke the tenant's tokens for the
    audiences it serves (exact URIs): tokens for any other audience look inactive to it."""

    name: Name
    audiences: Audiences


class ResourceServerRecord(Struct, kw_only=True):
    client_id: Id
    name: Name
    audiences: Audiences
    created_at: datetime


class ResourceServerCredentials(Struct, kw_only=True):
    """Returned once, at registration: the secret is stored only as a scrypt hash."""

    client_id: Id
    client_secret: Secret
    name: Name
    audiences: Audiences
    created_at: datetime


class ListResourceServers(Struct, kw_only=True):
    pass


class ResourceServerList(Struct, kw_only=True):
    resource_servers: Annotated[list[ResourceServerRecord], msgspec.Meta(max_length=1000)]


class ResourceServerChanged(Struct, kw_only=True):
    """A resource server was registered or removed: who may read the tenant's tokens changed."""

    client_id: Id
    name: Name
    audiences: Audiences
    change: Literal["added", "removed"]
    at: datetime


class RemoveResourceServer(Struct, kw_only=True):
    client_id: Id


class ResourceServerCall(Struct, kw_only=True):
    """Introspection (RFC 7662) or revocation (RFC 7009) by a resource server, relayed by the
    gateway with the HTTP Basic credentials it received (form-url-decoded)."""

    client_id: Annotated[str, msgspec.Meta(min_length=1, max_length=256)]
    client_secret: Secret
    token: Annotated[str, msgspec.Meta(min_length=1, max_length=16384)]


class Revocation(Struct, kw_only=True):
    """`revoked` is true when a live token was revoked now; RFC 7009 answers 200 either way."""

    revoked: bool
