"""The HTTP token endpoint's grants, answered by the token worker (`token.grant`).

The gateway has already checked what only it can see: the form, and the DPoP proof (RFC 9449) for
its own public URL, nonce and single use included. It relays the client's assertion unverified;
this module authenticates the client (RFC 7523 `private_key_jwt`: a JWT signed by the key the
client registered, for this issuer, used once), and from then on the request is a bus request from
that client: the very handlers `token.issue` and `token.exchange` run, with the same checks, on a
context whose sender is the authenticated client. What differs over HTTP:
  - the token is bound to the DPoP proof's key (`cnf.jkt` = proof jkt), the key the client proved
    in the request, rather than to the key that signed a bus message;
  - a token exchange (RFC 8693) names its actor with an `actor_token` the agent signed, and the
    DPoP proof must be made with that agent's key: on-behalf-of tokens stay bound to the agent.

Client assertions and actor tokens share one single-use namespace per signer (the worker's replay
guard), so any JWT an agent signs is spent once, for one purpose. The guard remembers an id for
`2 * max_skew + 1` seconds; an assertion is accepted only while its `iat` is within `max_skew` of
now, so no assertion outlives the memory of its `jti`.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from contracts import gateway as gw
from contracts import subjects as sub
from contracts import tokens as tok
from shared import jose
from shared.bus.registry import SenderKey
from shared.directory import to_sender_key
from shared.errors import Forbidden, InvalidClient, InvalidProof, InvalidRequest
from shared.worker import Context

if TYPE_CHECKING:
    from services.token.worker import TokenWorker

ASSERTION_ALGS = ("EdDSA", "Ed25519", "ES256")
ASSERTION_MAX_LIFETIME_S = 300
ASSERTION_TYP = "client-authentication+jwt"  # draft-ietf-oauth-rfc7523bis explicit typing
_ACCEPTED_TYPS = frozenset({"jwt", ASSERTION_TYP})
MAX_JTI_CHARS = 64
MAX_CLIENT_KEYS = 8
_AGENT_ID = re.compile(r"spiffe://[a-z0-9._-]{1,255}/agent/([A-Za-z0-9_-]{1,64})")


def routes(worker: TokenWorker) -> dict[sub.Route[Any, Any], Any]:
    """Every route of the HTTP edge, for `TokenWorker.routes()`."""
    from services.token.resource_servers import ResourceServers

    grants, servers = Grants(worker), ResourceServers(worker)
    return {
        sub.TOKEN_GRANT: grants.grant,
        sub.TOKEN_RS_INTROSPECT: servers.introspect,
        sub.TOKEN_RS_REVOKE: servers.revoke,
        sub.RS_ADD: servers.add,
        sub.RS_LIST: servers.list,
        sub.RS_REMOVE: servers.remove,
    }


def require_gateway(ctx: Context) -> None:
    """These routes relay HTTP requests: only the gateway service sends them."""
    if ctx.sender.kind != "service" or ctx.sender.subject_id != gw.GATEWAY_SERVICE:
        raise Forbidden("only the gateway relays HTTP requests")


def _refused(reason: str) -> InvalidClient:
    # One message for every cause (no client enumeration); the reason is for logs and traces.
    return InvalidClient("client authentication failed", {"reason": reason})


class Grants:
    def __init__(self, worker: TokenWorker) -> None:
        self.w = worker

    async def grant(self, req: gw.TokenGrant, ctx: Context) -> tok.IssuedToken:
        require_gateway(ctx)
        client = await self.authenticate(req.client_assertion, req.client_id, ctx.tenant)
        # From here on the client is the sender, as if it had signed a bus request itself.
        as_client = dataclasses.replace(ctx, sender=client)
        if req.grant_type == gw.CLIENT_CREDENTIALS:
            return await self._client_credentials(req, as_client)
        return await self._exchange(req, as_client)

    async def _client_credentials(self, req: gw.TokenGrant, ctx: Context) -> tok.IssuedToken:
        if ctx.sender.kind != "agent":
            raise Forbidden("client_credentials is for agents; an orchestrator exchanges its user's token")
        if req.subject_token is not None or req.actor_token is not None:
            raise InvalidRequest("subject and actor tokens belong to a token exchange")
        issue = tok.IssueToken(authorization_details=req.authorization_details, audience=req.audience)
        return await self.w.issue(issue, ctx, cnf={"jkt": req.dpop_jkt})

    async def _exchange(self, req: gw.TokenGrant, ctx: Context) -> tok.IssuedToken:
        if req.subject_token is None or req.subject_token_type is None:
            raise InvalidRequest("subject_token and subject_token_type are required")
        if req.actor_token is None:
            raise InvalidRequest("actor_token (a JWT the acting agent signed) is required")
        exchange = tok.ExchangeToken(
            subject_token=req.subject_token, subject_token_type=req.subject_token_type,
            actor_token=req.actor_token, actor_token_type=req.actor_token_type,
            audience=req.audience, authorization_details=req.authorization_details)
        actor = await self.w.facts(ctx.tenant, self.w._actor_id(exchange))
        if req.dpop_jkt != actor.key_id:
            # The exchanged token is bound to the agent's key: the agent made this proof, or no token.
            exc = InvalidProof("the DPoP proof must be made with the acting agent's key")
            await self.w._record_denial(ctx, actor, req.audience, exc)
            raise exc
        return await self.w.exchange(exchange, ctx)

    # -- client authentication (RFC 7523 section 3) ------------------------------------------------
    async def authenticate(self, assertion: str, client_id: str | None, tenant: str) -> SenderKey:
        """The registered client that signed `assertion` for this issuer, or InvalidClient."""
        try:
            header, unverified, _ = jose.split(assertion)
        except jose.JoseError as exc:
            raise _refused("malformed") from exc
        named = unverified.get("sub")
        if not isinstance(named, str) or len(named) > 2048 or (client_id is not None and client_id != named):
            raise _refused("client_id")
        typ = header.get("typ")
        if typ is not None and (not isinstance(typ, str) or typ.lower() not in _ACCEPTED_TYPS):
            raise _refused("typ")  # a JWT explicitly typed for something else (dpop+jwt, at+jwt, ...)
        candidates = await self._keys_of(named, tenant)
        if not candidates:
            raise _refused("unknown_client")
        kid = header.get("kid")
        client, claims = self._verify(assertion, sorted(candidates, key=lambda k: k.key_id != kid))
        if claims["iss"] != named or claims["sub"] != named:
            raise _refused("iss_sub")
        self._check_audience(claims["aud"], typ, self.w.issuer(tenant))
        if claims["exp"] - claims["iat"] > ASSERTION_MAX_LIFETIME_S:
            raise _refused("lifetime")
        if not client.active:
            raise _refused("inactive")
        jti = claims["jti"]
        if not isinstance(jti, str) or not 0 < len(jti) <= MAX_JTI_CHARS:
            raise _refused("jti")
        if not await self.w.replay.first_seen(client.sender, jti):
            raise _refused("replayed")
        return client

    def _verify(self, assertion: str, keys: list[SenderKey]) -> tuple[SenderKey, dict[str, Any]]:
        skew = self.w.settings.max_skew_s
        for key in keys[:MAX_CLIENT_KEYS]:
            try:
                _, claims = jose.verify(assertion, key.key, algorithms=ASSERTION_ALGS, typ=None,
                                        require=("iss", "sub", "aud", "exp", "iat", "jti"),
                                        leeway=5, max_age=max(1.0, skew - 5))
            except jose.JoseError as exc:
                if exc.reason in ("bad_signature", "bad_alg"):
                    continue  # another of the client's keys may have signed it
                raise _refused(exc.reason) from exc
            return key, claims
        raise _refused("bad_signature")

    @staticmethod
    def _check_audience(aud: Any, typ: Any, issuer: str) -> None:
        """One audience (a string, or an array of one: several audiences are how an assertion made
        for one server is replayed at another). The token endpoint URL (RFC 7523); or the issuer
        with explicit typing (rfc7523bis), since our actor tokens name the issuer as audience and
        must never double as their signer's client assertion."""
        if isinstance(aud, list) and len(aud) == 1:
            aud = aud[0]
        if aud == gw.token_endpoint(issuer):
            return
        if aud == issuer and isinstance(typ, str) and typ.lower() == ASSERTION_TYP:
            return
        raise _refused("audience")

    async def _keys_of(self, sender: str, tenant: str) -> list[SenderKey]:
        """The client's registered keys in this tenant, from this worker's sender directory (an
        agent spawned a moment ago is fetched from registration first)."""
        rows = await self._directory_rows(sender, tenant)
        if not rows:
            agent = _AGENT_ID.fullmatch(sender)
            if agent and await self.w.directory.ensure_agent(tenant, agent.group(1)):
                rows = await self._directory_rows(sender, tenant)
        return [to_sender_key(r) for r in rows]

    async def _directory_rows(self, sender: str, tenant: str) -> list[Mapping[str, Any]]:
        return await self.w.pool.fetch(
            f'SELECT * FROM "{self.w.schema}".senders WHERE sender = $1 AND tenant = $2 LIMIT $3',
            sender, tenant, MAX_CLIENT_KEYS + 1)

