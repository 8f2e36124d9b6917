"""On behalf of a user (RFC 8693): who may exchange what, for whom, and the `act` chain.

- A user's own token (from a trusted identity provider) is exchanged by an orchestrator for one of
  its agents: user tokens live with orchestrators and never reach agents.
- An on-behalf-of token we issued is re-exchanged by the agent holding it (its key is the token's
  `cnf.jkt`) for one of its sub-agents, or by their orchestrator. The `act` chain is kept and
  extended, never dropped, and the details may only narrow.
"""

from __future__ import annotations

import time
from typing import Any

from contracts import tokens as tok
from services.token.policy import AgentFacts
from shared import jose
from shared.bus.replay import ReplayGuard
from shared.errors import AgentInactive, Forbidden, InvalidGrant, InvalidRequest
from shared.keys import PublicKey
from shared.worker import Context

ACTOR_TOKEN_LEEWAY_S = 5


def act_depth(act: dict[str, Any] | None) -> int:
    depth = 0
    while isinstance(act, dict):
        depth += 1
        act = act.get("act")
    return depth


def extend_act(actor: AgentFacts, previous: dict[str, Any] | None) -> dict[str, Any]:
    """The new outermost actor; earlier actors nest inside (only the outermost authorises)."""
    act: dict[str, Any] = {"sub": actor.spiffe_id, "did": actor.did}
    if previous is not None:
        act["act"] = previous
    return act


async def verify_actor_token(token: str, actor: AgentFacts, *, audience: str, replay: ReplayGuard,
                             max_skew_s: float) -> None:
    """A JWT the agent signed with its own key, for our token endpoint, used once.

    Once means: accepted only while the replay guard still remembers its `jti`. The guard keeps
    ids for 2 x max_skew_s + 1 seconds, so the token's age (plus the leeway for clocks ahead) must
    stay within max_skew_s: a token past that is refused as too old, never accepted a second time."""
    try:
        _, claims = jose.verify(token, PublicKey.from_jwk(actor.public_jwk), algorithms=("EdDSA", "Ed25519", "ES256"),
                                typ=None, audience=audience, require=("iat", "exp", "jti", "sub", "iss"),
                                leeway=ACTOR_TOKEN_LEEWAY_S, max_age=max(1.0, max_skew_s - ACTOR_TOKEN_LEEWAY_S))
    except jose.JoseError as exc:
        raise InvalidGrant(f"actor token rejected: {exc.reason}") from exc
    if claims["sub"] != actor.spiffe_id or claims["iss"] != actor.spiffe_id:
        raise InvalidGrant("actor token is about another agent")
    if not isinstance(claims["jti"], str) or len(claims["jti"]) > 64 or not await replay.first_seen(actor.spiffe_id,
                                                                                                   claims["jti"]):
        raise InvalidGrant("actor token already used")


def make_actor_token(key: Any, spiffe_id: str, audience: str, *, now: float | None = None) -> str:
    """For SDKs and tests: the actor token an agent signs (RFC 8693 actor_token of type jwt)."""
    from shared.ids import new_id

    iat = int(time.time() if now is None else now)
    return jose.sign({"iss": spiffe_id, "sub": spiffe_id, "aud": audience, "iat": iat, "exp": iat + 120,
                      "jti": new_id()}, key, typ="JWT")


def authorise_caller(ctx: Context, actor: AgentFacts, *, reexchange: bool, holder_jkt: str | None) -> None:
    """Who may ask: for a user's own token only the actor's orchestrator; for a re-exchange the
    agent that holds the token, for its own sub-agent, or the orchestrator of both."""
    if not actor.active:
        raise AgentInactive("the acting agent is not active")
    sender = ctx.sender
    if sender.kind == "orchestrator":
        if actor.orchestrator_id != sender.subject_id:
            raise Forbidden("the agent belongs to another orchestrator")
        return
    if not reexchange:
        raise Forbidden("a user's token is exchanged by the orchestrator, never by an agent")
    if holder_jkt != sender.key.thumbprint:
        raise Forbidden("only the agent holding the token may hand it on")
    if actor.parent_agent_id != sender.subject_id:
        raise Forbidden("an agent hands a user's token on only to its own sub-agent")


def require_actor(req: tok.ExchangeToken) -> None:
    if (req.actor_agent_id is None) == (req.actor_token is None):
        raise InvalidRequest("name the acting agent by actor_agent_id or by an actor_token, not both")
    if req.actor_token is not None and req.actor_token_type is None:
        raise InvalidRequest("actor_token_type is required with actor_token")
