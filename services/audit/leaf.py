"""The audit leaf: the exact bytes each log entry commits to.

A leaf is canonical JSON (shared/canonical.py, RFC 8785 for our values) of one object:

    v             1, the leaf format
    seq           0-based index of the entry in its log
    time          when the actor signed the event (its envelope timestamp), RFC 3339 UTC, ms;
                  for a rejected event without a usable timestamp, when JetStream stored it
    tenant        the tenant named by the event's subject
    event         the topic (`agent.registered`), or the subject's tail for an unknown one
    msg_id        the envelope's message id
    status        "verified" (known sender, valid signature, allowed producer, decodable body)
                  or "rejected" (logged anyway, never dropped; `reasons` says why)
    actor         who signed it: {"id": SPIFFE ID, "kind", "name", "key_id"}; for a rejected
                  event, what its headers claim: {"id", "key_id", "claimed": true}
    act           (optional) the delegation path, nearest actor first
    on_behalf_of  (optional) the user the action was done for
    subject       what the event is about: {"type", "id", ...}; {} when rejected
    decision      (optional) "allow" | "deny" when the event records a decision
    reasons       (optional) decision reasons, or why the event was rejected
    details       (optional) a few named fields of the event (services/audit/describe.py)
    trace_id      the W3C trace id from the event's traceparent header, or null
    event_digest  "sha256:<hex>" of the bus signing input of the event as received:
                  'agentid-msg-v1' LF subject LF sender LF key-id LF msg-id LF timestamp LF
                  SHA-256(payload) (shared/bus/signing.py). Whoever holds the original signed
                  event recomputes it from the subject, headers and payload; the signature
                  header is a signature over exactly these bytes.

The log's leaf hash is SHA-256(0x00 || leaf) (RFC 9162). Query terms (agents, users,
orchestrators) are derived from the leaf alone by `terms_of`, so they can be re-derived and checked.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from services.audit.describe import AgentFacts, Facts
from shared.canonical import canonical_json

LEAF_VERSION = 1
# Leaves are small (a few hundred bytes); the cap keeps a query page under the NATS payload limit.
MAX_LEAF_BYTES = 8192


@dataclass(frozen=True)
class Observed:
    """One message as the audit saw it on the stream, before it has a place in a log."""

    subject: str
    tenant: str
    event: str
    msg_id: str | None
    time_ms: int
    actor: dict[str, Any]
    verified: bool
    reasons: tuple[str, ...]
    trace_id: str | None
    event_digest: str
    dedup_key: bytes          # identifies the message as received, whatever its verdict
    facts: Facts | None = None


@dataclass(frozen=True)
class Terms:
    """The entry's index columns."""

    event: str
    at: datetime
    trace_id: str | None
    agents: list[str]
    users: list[str]
    orchestrators: list[str]


def iso_ms(ms: int) -> str:
    at = datetime.fromtimestamp(ms / 1000, UTC)
    return at.strftime("%Y-%m-%dT%H:%M:%S.") + f"{ms % 1000:03d}Z"


def enrich(facts: Facts, agents: dict[str, AgentFacts]) -> tuple[dict[str, Any], str | None]:
    """The subject completed with what the log knows of its agent (orchestrator), and for whom."""
    subject = dict(facts.subject)
    on_behalf_of = facts.on_behalf_of
    if subject.get("type") == "agent":
        known = agents.get(str(subject.get("id")))
        if known is not None:
            if known.orchestrator_id and "orchestrator" not in subject:
                subject["orchestrator"] = known.orchestrator_id
            if on_behalf_of is None and known.controller and known.controller.get("type") == "user":
                on_behalf_of = known.controller.get("id")
    return subject, on_behalf_of


def leaf_object(seq: int, ob: Observed, agents: dict[str, AgentFacts]) -> dict[str, Any]:
    leaf: dict[str, Any] = {
        "v": LEAF_VERSION, "seq": seq, "time": iso_ms(ob.time_ms), "tenant": ob.tenant, "event": ob.event,
        "msg_id": ob.msg_id, "status": "verified" if ob.verified else "rejected", "actor": ob.actor,
        "subject": {}, "trace_id": ob.trace_id, "event_digest": ob.event_digest,
    }
    reasons = list(ob.reasons)
    facts = ob.facts
    if facts is not None:
        subject, on_behalf_of = enrich(facts, agents)
        leaf["subject"] = subject
        if facts.act:
            leaf["act"] = [dict(a) for a in facts.act]
        if on_behalf_of is not None:
            leaf["on_behalf_of"] = on_behalf_of
        if facts.decision is not None:
            leaf["decision"] = facts.decision
        reasons = list(facts.reasons) + reasons
        if facts.details:
            leaf["details"] = facts.details
    if reasons:
        leaf["reasons"] = reasons
    return leaf


def build_leaf(seq: int, ob: Observed, agents: dict[str, AgentFacts]) -> bytes:
    leaf = leaf_object(seq, ob, agents)
    try:
        data = canonical_json(leaf)
    except TypeError:  # a detail canonical JSON cannot hold (a float): the entry is logged without it
        leaf["details"] = {"omitted": "not canonical JSON"}
        data = canonical_json(leaf)
    if len(data) > MAX_LEAF_BYTES and "details" in leaf:
        leaf["details"] = {"omitted": "too large"}
        data = canonical_json(leaf)
    if len(data) > MAX_LEAF_BYTES:
        # Only a rejected event's claimed headers or reasons can be this long: keep what identifies it.
        leaf["actor"] = {k: _clip(v) for k, v in leaf["actor"].items()}
        leaf["reasons"] = [_clip(r) for r in leaf.get("reasons", [])]
        leaf["event"], leaf["msg_id"] = _clip(leaf["event"]), _clip(leaf["msg_id"])
        data = canonical_json(leaf)
    return data


def _clip(value: Any) -> Any:
    return value[:200] if isinstance(value, str) else value


def _strings(values: Iterable[Any]) -> list[str]:
    return sorted({v for v in values if isinstance(v, str) and v})


def terms_of(leaf: dict[str, Any], at: datetime) -> Terms:
    """Index terms of a leaf. Rejected entries get none: only operators see them."""
    agents: list[Any] = []
    users: list[Any] = []
    orchestrators: list[Any] = []
    if leaf.get("status") == "verified":
        actor, subject = leaf.get("actor") or {}, leaf.get("subject") or {}
        kinds = {"agent": agents, "orchestrator": orchestrators, "user": users}
        if actor.get("kind") in kinds:
            kinds[actor["kind"]].append(actor.get("name"))
        if subject.get("type") in kinds:
            kinds[subject["type"]].append(subject.get("id"))
        if subject.get("type") == "agent" or subject.get("type") == "spawn":
            agents.append(subject.get("parent"))
        orchestrators.append(subject.get("orchestrator"))
        for hop in leaf.get("act") or ():
            if hop.get("kind") in kinds:
                kinds[hop["kind"]].append(_last_segment(hop.get("id")))
        users.append(leaf.get("on_behalf_of"))
    trace = leaf.get("trace_id")
    return Terms(event=str(leaf.get("event")), at=at, trace_id=trace if isinstance(trace, str) else None,
                 agents=_strings(agents), users=_strings(users), orchestrators=_strings(orchestrators))


def _last_segment(value: Any) -> Any:
    """Act paths name parties by SPIFFE ID or by id; index agents and orchestrators by their id."""
    if isinstance(value, str) and value.startswith("spiffe://"):
        return value.rsplit("/", 1)[-1]
    return value
