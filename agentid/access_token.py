"""The access token as a resource server reads it: the `Authorization` header, and the claims of a
token whose signature has been checked, turned into one immutable `AccessToken`.

The contract (RFC 9068 plus ours): `iss`, `sub`, `aud`, `exp`, `iat`, optional `nbf`, `jti`,
`client_id`, `tenant`, `authorization_details` (RFC 9396, parsed by `shared.capabilities`), `cnf`
with exactly one of `jkt` (DPoP) or `x5t#S256` (mTLS), optional `agent_did`, `credential_id`,
`act` (RFC 8693 actor chain) and `delegation` (`{"depth", "chain"}`). Anything malformed refuses
the whole token (`invalid_token`): a claim we misread could widen what the token allows.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any

from shared.capabilities import Capability, CapabilityError, parse_authorization_details
from shared.oauth_errors import (
    InvalidRequestError,
    InvalidTokenError,
    MissingCredentialsError,
)

MAX_AUTHORIZATION_CHARS = 16 * 1024 + 16
MAX_ID_CHARS = 2048   # sub, client_id, DIDs, actor ids
MAX_JTI_CHARS = 128
MAX_CHAIN = 64        # CIDs in a delegation chain (an input bound; depth is the policy bound)
_TOKEN68 = re.compile(r"[A-Za-z0-9\-._~+/]+=*")
_B64U_SHA256 = re.compile(r"[A-Za-z0-9_-]{43}")
_SCHEMES = {"dpop": "dpop", "bearer": "bearer"}


def parse_authorization(value: str | Sequence[str] | None) -> tuple[str, str]:
    """(scheme, token) of the `Authorization` header: scheme is `dpop` or `bearer`.

    `value` is the header, or every value the request carried. No header, or another scheme:
    `MissingCredentialsError` (a bare challenge). Several headers, or several credentials folded
    into one: `InvalidRequestError`. A malformed token: `InvalidTokenError`.
    """
    if value is not None and not isinstance(value, str):
        values = list(value[:2]) if isinstance(value, Sequence) else []
        if len(values) > 1:
            raise InvalidRequestError("multiple_authorization", "send one Authorization header")
        value = values[0] if values else None
    if not value:
        raise MissingCredentialsError("no_credentials", "an access token is required")
    if not isinstance(value, str) or len(value) > MAX_AUTHORIZATION_CHARS:
        raise InvalidTokenError("malformed", "the Authorization header is malformed or too large")
    scheme, _, rest = value.partition(" ")
    kind = _SCHEMES.get(scheme.lower())
    if kind is None:
        raise MissingCredentialsError("unsupported_scheme", "use the DPoP authentication scheme")
    token = rest.strip(" ")
    if "," in token or " " in token:
        raise InvalidRequestError("multiple_credentials", "send one access token, with one scheme")
    if not token:
        raise InvalidTokenError("malformed", "the access token is missing")
    return kind, token


def check_token68(token: str) -> None:
    if not _TOKEN68.fullmatch(token):
        raise InvalidTokenError("malformed", "the access token is malformed")


@dataclass(frozen=True, slots=True)
class Delegation:
    depth: int
    chain: tuple[str, ...]  # UCAN CIDs, root first


@dataclass(frozen=True, slots=True)
class AccessToken:
    """A token whose signature, issuer and audience were checked. Cached by verifiers until `exp`."""

    claims: Mapping[str, Any]
    kid: str
    jti: str
    sub: str
    client_id: str
    tenant: str
    agent_did: str | None
    credential_id: str | None
    details: tuple[Capability, ...]
    jkt: str | None
    x5t: str | None
    act: Mapping[str, Any] | None
    actors: tuple[str, ...]        # act.sub values, outermost (the current actor) first
    actor_dids: tuple[str | None, ...]
    delegation: Delegation | None
    iat: float
    exp: float
    principals: frozenset[str]     # every identity whose retirement revokes this token

    @property
    def agent(self) -> str:
        """The agent acting: the outermost actor, or the subject when there is no `act`."""
        return self.actors[0] if self.actors else self.sub

    @property
    def agent_did_acting(self) -> str | None:
        return self.actor_dids[0] if self.actors else self.agent_did


def _bad(what: str) -> InvalidTokenError:
    return InvalidTokenError("bad_claims", f"the access token claim {what} is malformed")


def _string(claims: Mapping[str, Any], name: str, *, required: bool = True, limit: int = MAX_ID_CHARS) -> Any:
    value = claims.get(name)
    if value is None and not required:
        return None
    if not isinstance(value, str) or not 1 <= len(value) <= limit:
        raise _bad(name)
    return value


def read_token(claims: Mapping[str, Any], *, kid: str, tenant: str | None, max_delegation_depth: int) -> AccessToken:
    """Everything after the signature and time checks: claim shapes, binding, details, chains."""
    sub = _string(claims, "sub")
    client_id = _string(claims, "client_id")
    jti = _string(claims, "jti", limit=MAX_JTI_CHARS)
    token_tenant = _string(claims, "tenant", limit=64)
    if tenant is not None and token_tenant != tenant:
        raise InvalidTokenError("wrong_tenant", "the access token belongs to another tenant")
    agent_did = _string(claims, "agent_did", required=False)
    credential_id = _string(claims, "credential_id", required=False)
    jkt, x5t = _binding(claims.get("cnf"))
    details = _details(claims.get("authorization_details"))
    act = claims.get("act")
    actors, actor_dids = _actors(act, max_delegation_depth)
    delegation = _delegation(claims.get("delegation"), max_delegation_depth)
    principals = {sub, client_id, *actors}
    principals.update(d for d in (agent_did, *actor_dids) if d)
    return AccessToken(
        claims=MappingProxyType(dict(claims)), kid=kid, jti=jti, sub=sub, client_id=client_id,
        tenant=token_tenant, agent_did=agent_did, credential_id=credential_id, details=details,
        jkt=jkt, x5t=x5t, act=MappingProxyType(act) if act is not None else None, actors=actors,
        actor_dids=actor_dids, delegation=delegation, iat=claims["iat"], exp=claims["exp"],
        principals=frozenset(principals),
    )


# Tokens for one grant repeat (every refresh of every agent with the same policy), and parsed
# details are immutable: keep them by their exact JSON value. `repr` of a decoded JSON value is an
# unambiguous spelling of it (1, 1.0, True and "1" all differ), so equal keys mean equal details.
_DETAILS_CACHE: dict[str, tuple[Capability, ...]] = {}
_DETAILS_CACHE_MAX = 1024


def _details(value: Any) -> tuple[Capability, ...]:
    key = repr(value)
    details = _DETAILS_CACHE.get(key)
    if details is None:
        try:
            details = tuple(parse_authorization_details(value))
        except CapabilityError as exc:
            raise InvalidTokenError("bad_details", "the access token authorization_details are malformed") from exc
        if len(_DETAILS_CACHE) >= _DETAILS_CACHE_MAX:
            _DETAILS_CACHE.pop(next(iter(_DETAILS_CACHE)))
        _DETAILS_CACHE[key] = details
    return details


def _binding(cnf: Any) -> tuple[str | None, str | None]:
    """Exactly one confirmation method: `jkt` (DPoP) or `x5t#S256` (mTLS). Never a bearer token."""
    if not isinstance(cnf, dict) or len(cnf) != 1:
        raise InvalidTokenError("bad_cnf", "the access token must be bound to exactly one key")
    (name, value), = cnf.items()
    if name not in ("jkt", "x5t#S256"):
        raise InvalidTokenError("bad_cnf", "the access token has an unknown confirmation method")
    if not isinstance(value, str) or not _B64U_SHA256.fullmatch(value):
        raise InvalidTokenError("bad_cnf", "the access token confirmation is malformed")
    return (value, None) if name == "jkt" else (None, value)


def _actors(act: Any, max_depth: int) -> tuple[tuple[str, ...], tuple[str | None, ...]]:
    """The actor chain, outermost first. Only the outermost authorises; all are revocable."""
    actors: list[str] = []
    dids: list[str | None] = []
    node = act
    while node is not None:
        if not isinstance(node, dict):
            raise _bad("act")
        actor = node.get("sub")
        did = node.get("did")
        if not isinstance(actor, str) or not 1 <= len(actor) <= MAX_ID_CHARS:
            raise _bad("act")
        if did is not None and (not isinstance(did, str) or not 1 <= len(did) <= MAX_ID_CHARS):
            raise _bad("act")
        actors.append(actor)
        dids.append(did)
        if len(actors) > max_depth:
            raise InvalidTokenError("depth_exceeded", "the access token actor chain is too deep")
        node = node.get("act")
    return tuple(actors), tuple(dids)


def _delegation(value: Any, max_depth: int) -> Delegation | None:
    if value is None:
        return None
    # `root`, `path`, `agent_ids` and `max_depth` describe the chain for people; `depth` and `chain`
    # are what is enforced.
    if not isinstance(value, dict) or set(value) - {"depth", "chain", "root", "path", "agent_ids", "max_depth"}:
        raise _bad("delegation")
    depth, chain = value.get("depth"), value.get("chain")
    if not isinstance(depth, int) or isinstance(depth, bool) or depth < 0:
        raise _bad("delegation")
    if not isinstance(chain, list) or not 1 <= len(chain) <= MAX_CHAIN or \
            not all(isinstance(c, str) and 1 <= len(c) <= 256 for c in chain):
        raise _bad("delegation")
    if depth > max_depth:
        raise InvalidTokenError("depth_exceeded", "the access token delegation chain is too deep")
    return Delegation(depth=depth, chain=tuple(chain))
