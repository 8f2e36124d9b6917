"""What makes each topic's event happen: the coverage rule's list for topics.

An event cannot be derived from its contract the way a refused request can: a valid one must come
from the worker that owns it (its signature, its outbox). So for every topic a trigger does what
makes the owner emit it (mostly: send a route's valid example). The suite uses the event it causes
as the template of its forgeries, and a second one, after the garbage, to prove the consumers still
consume. A topic without a trigger fails tests/hostile/test_coverage.py.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

import msgspec

from agentid.keys import AgentKey
from contracts import attestation as att
from contracts import subjects as sub
from contracts import tokens as tok
from shared.bus.signing import sign
from shared.errors import AttestationFailed, PolicyDenied
from tests.helpers import ledger
from tests.hostile.examples import EXAMPLES
from tests.hostile.world import AUDIENCE, World

Trigger = Callable[[World], Awaitable[str]]  # returns the tenant whose subject gets the event


def via(route: sub.Route[Any, Any]) -> Trigger:
    """Send the route's valid example: its owner emits the event as a consequence."""
    async def trigger(w: World) -> str:
        ex = await EXAMPLES[route.name](w)
        subject = route.subject(ex.tenant, w.root)
        payload = msgspec.json.encode(ex.body)
        code, body = await w.h.raw_request(subject, payload, sign(ex.sender.signer, subject, payload), timeout=10.0)
        assert code == ex.expect, f"trigger {route.name} got {code}: {body}"
        return ex.tenant
    return trigger


async def _spawn_requested(w: World) -> str:
    request = w.spawn_request(w.orch, w.tenant, AgentKey.generate())
    await w.bus(w.orch).publish_event(sub.SPAWN_REQUESTED, w.tenant, request, msg_id=request.spawn_id)
    return w.tenant


async def _spawn_rejected(w: World) -> str:
    # A tier the orchestrator's authority does not include: registration refuses it with an event.
    request = w.spawn_request(w.orch, w.tenant, AgentKey.generate(), tier="high")
    await w.bus(w.orch).publish_event(sub.SPAWN_REQUESTED, w.tenant, request, msg_id=request.spawn_id)
    return w.tenant


async def _token_denied(w: World) -> str:
    try:
        await w.call(w.agent.party, sub.TOKEN_ISSUE, tok.IssueToken(
            authorization_details=[ledger(["pay"])], audience=AUDIENCE))
    except PolicyDenied:
        return w.tenant
    raise AssertionError("the policy allowed a payment")


async def _attestation_failed(w: World) -> str:
    ch = await w.call(w.agent.party, sub.ATTESTATION_CHALLENGE, att.RequestChallenge())
    try:
        await w.call(w.agent.party, sub.ATTESTATION_VERIFY, att.VerifyEvidence(
            kind="aws-nitro", evidence=b"\x00hostile" * 8, challenge_id=ch.challenge_id))
    except AttestationFailed:
        return w.tenant
    raise AssertionError("junk evidence verified")


TRIGGERS: dict[str, Trigger] = {
    sub.SPAWN_REQUESTED.name: _spawn_requested,
    sub.TENANT_CREATED.name: via(sub.CREATE_TENANT),
    sub.ORCHESTRATOR_ADDED.name: via(sub.ADD_ORCHESTRATOR),
    sub.ORCHESTRATOR_REVOKED.name: via(sub.REVOKE_ORCHESTRATOR),
    sub.AGENT_REGISTERED.name: via(sub.SPAWN),
    sub.AGENT_SPAWN_REJECTED.name: _spawn_rejected,
    sub.AGENT_RENEWED.name: via(sub.RENEW_SVID),
    sub.AUTHORITIES_ROTATED.name: via(sub.ROTATE_AUTHORITIES),
    sub.AGENT_EXITED.name: via(sub.EXIT_AGENT),
    sub.CREDENTIAL_ISSUED.name: via(sub.SPAWN),
    sub.CREDENTIAL_REVOKED.name: via(sub.REVOKE_CREDENTIAL),
    sub.ARTIFACT_SIGNED.name: via(sub.RECORD_ARTIFACT),
    sub.TOKEN_ISSUED.name: via(sub.TOKEN_ISSUE),
    sub.TOKEN_DENIED.name: _token_denied,
    sub.TOKEN_REVOKED.name: via(sub.TOKEN_REVOKE),
    sub.POLICY_UPDATED.name: via(sub.POLICY_SET),
    sub.TOKEN_CONFIG_UPDATED.name: via(sub.TOKEN_CONFIG_SET),
    sub.SIGNING_KEY_ROTATED.name: via(sub.TOKEN_ROTATE_KEY),
    sub.IDP_CHANGED.name: via(sub.IDP_ADD),
    sub.RESOURCE_SERVER_CHANGED.name: via(sub.RS_ADD),
    sub.ATTESTATION_VERIFIED.name: via(sub.ATTESTATION_VERIFY),
    sub.ATTESTATION_FAILED.name: _attestation_failed,
    sub.REFERENCE_VALUES_UPDATED.name: via(sub.SET_REFERENCE_VALUES),
    sub.DELEGATION_GRANTED.name: via(sub.DELEGATION_GRANT),
    sub.DELEGATION_REVOKED.name: via(sub.DELEGATION_REVOKE),
    sub.DELEGATION_CONFIG_UPDATED.name: via(sub.DELEGATION_CONFIG_SET),
}
