"""What an audit entry says about each kind of event: an explicit field list per topic.

A describer turns a decoded, verified event into `Facts`: the subject the event is about, the
decision and its reasons when the event records one, the delegation path (`act`), the user it was
done for, and a few named details. Nothing else from the payload reaches the log: fields are
copied one by one, never dumped, so proofs of possession, public keys, certificates, tokens and
evidence can never land in a leaf by accident. `tests/unit/audit/test_audit_leaf.py` fails when a
catalogue topic has no describer here; a topic without one is still logged (with no details).

The delegation hook: events that carry an RFC 8693 `act` claim (token exchange) or a UCAN chain
(delegation) map it with `act_path()`, which flattens the nested claim into a list, nearest actor
first, each `{"kind": ..., "id": ...}`. Leaves carry it as `act`, and every agent and user on it
becomes a query term.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

MAX_ACT_DEPTH = 16


@dataclass(frozen=True)
class AgentFacts:
    """What entries about an agent inherit from its registration: who spawned it, for whom."""

    agent_id: str
    orchestrator_id: str | None
    controller: dict[str, str] | None
    parent_agent_id: str | None = None


@dataclass(frozen=True)
class Facts:
    subject: dict[str, Any]
    decision: str | None = None              # "allow" or "deny", for events that record a decision
    reasons: tuple[str, ...] = ()
    act: tuple[dict[str, str], ...] = ()     # the delegation path, nearest actor first
    on_behalf_of: str | None = None          # the user the action was done for
    details: dict[str, Any] = field(default_factory=dict)
    registers: AgentFacts | None = None      # set by agent.registered only


def when(value: datetime | None) -> str | None:
    """RFC 3339 UTC with milliseconds: one spelling for every instant in a leaf."""
    if value is None:
        return None
    return value.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.") + f"{value.microsecond // 1000:03d}Z"


def _present(**values: Any) -> dict[str, Any]:
    return {k: v for k, v in values.items() if v is not None}


def _controller(controller: Any) -> dict[str, str]:
    return _present(type=controller.type, id=controller.id)


def _user_of(controller: Mapping[str, str] | None) -> str | None:
    if controller and controller.get("type") == "user":
        return controller.get("id")
    return None


def act_path(claim: Mapping[str, Any] | None, *, kind_of: Callable[[str], str] | None = None) -> tuple[dict[str, str], ...]:
    """Flatten an RFC 8693 `act` claim (`{"sub": a, "act": {"sub": b, ...}}`) into a path.

    `kind_of(sub)` names each actor's kind (agent, orchestrator, service, user); by default a
    SPIFFE ID's path decides (`.../agent/<id>`), anything else is a user.
    """
    path: list[dict[str, str]] = []
    node = claim
    while isinstance(node, Mapping) and len(path) < MAX_ACT_DEPTH:
        sub = node.get("sub")
        if not isinstance(sub, str):
            break
        path.append({"kind": (kind_of or _kind_of_sub)(sub), "id": sub})
        node = node.get("act")
    return tuple(path)


def _kind_of_sub(sub: str) -> str:
    if sub.startswith("spiffe://"):
        parts = sub.split("/")
        if len(parts) >= 5 and parts[3] in ("agent", "orchestrator", "service", "operator"):
            return parts[3]
        return "workload"
    return "user"


# ---- registration ---------------------------------------------------------------------------


def _spawn_requested(e: Any) -> Facts:
    controller = _controller(e.controller)
    return Facts(
        subject=_present(type="spawn", id=e.spawn_id, parent=e.parent_agent_id),
        on_behalf_of=_user_of(controller),
        details=_present(purpose=e.purpose, tier=e.tier, data_class=e.data_class, controller=controller,
                         model=_present(name=e.model.name, version=e.model.version, digest=e.model.digest),
                         tools=len(e.tools), lifetime_s=e.lifetime_s),
    )


def _tenant_created(e: Any) -> Facts:
    return Facts(subject={"type": "tenant", "id": e.tenant},
                 details={"trust_domain": e.trust_domain, "at": when(e.at)})


def _orchestrator_added(e: Any) -> Facts:
    o = e.orchestrator
    a = o.authority
    return Facts(
        subject={"type": "orchestrator", "id": o.orchestrator_id, "spiffe_id": o.spiffe_id},
        details={"name": o.name, "key_id": o.key_id, "status": o.status,
                 "authority": {"tiers": list(a.tiers), "purposes": list(a.purposes),
                               "data_classes": list(a.data_classes), "max_lifetime_s": a.max_lifetime_s,
                               "max_live_agents": a.max_live_agents}},
    )


def _agent_registered(e: Any) -> Facts:
    a = e.agent
    controller = _controller(a.controller)
    facts = AgentFacts(a.agent_id, a.orchestrator_id, controller, a.parent_agent_id)
    return Facts(
        subject=_present(type="agent", id=a.agent_id, spiffe_id=a.spiffe_id, did=a.did,
                         orchestrator=a.orchestrator_id, parent=a.parent_agent_id),
        decision="allow",
        act=({"kind": "orchestrator", "id": a.orchestrator_id},),
        on_behalf_of=_user_of(controller),
        details=_present(spawn_id=e.spawn_id, key_id=a.key_id, purpose=a.purpose, tier=a.tier,
                         data_class=a.data_class, controller=controller,
                         model=_present(name=a.model.name, version=a.model.version, digest=a.model.digest),
                         tools=len(a.tools), expires_at=when(a.expires_at),
                         svid_serial=a.svid.serial if a.svid else None),
        registers=facts,
    )


def _spawn_rejected(e: Any) -> Facts:
    return Facts(subject={"type": "spawn", "id": e.spawn_id, "orchestrator": e.orchestrator_id},
                 decision="deny", reasons=(e.code, e.message),
                 act=({"kind": "orchestrator", "id": e.orchestrator_id},))


def _agent_renewed(e: Any) -> Facts:
    return Facts(subject={"type": "agent", "id": e.agent_id, "spiffe_id": e.spiffe_id},
                 details={"svid_serial": e.serial, "not_after": when(e.not_after)})


def _authorities_rotated(e: Any) -> Facts:
    return Facts(subject={"type": "trust_domain", "id": e.trust_domain},
                 reasons=(e.reason,), details={"bundle_sequence": e.sequence, "at": when(e.at)})


def _orchestrator_revoked(e: Any) -> Facts:
    return Facts(subject={"type": "orchestrator", "id": e.orchestrator_id, "spiffe_id": e.spiffe_id},
                 reasons=(e.reason,), details={"revoked_agents": len(e.revoked_agents), "by": e.by, "at": when(e.at)})


def _agent_exited(e: Any) -> Facts:
    return Facts(subject={"type": "agent", "id": e.agent_id, "spiffe_id": e.spiffe_id, "did": e.did},
                 reasons=(e.reason,), details={"status": e.status, "by": e.by, "at": when(e.at)})


# ---- issuance -------------------------------------------------------------------------------


def _credential_issued(e: Any) -> Facts:
    return Facts(subject={"type": "agent", "id": e.agent_id},
                 details={"credential_id": e.credential_id, "issuer": e.issuer,
                          "status_list_id": e.status_list_id, "status_index": e.status_index,
                          "valid_until": when(e.valid_until), "attested": e.attested})


def _credential_revoked(e: Any) -> Facts:
    return Facts(subject={"type": "agent", "id": e.agent_id}, reasons=(e.reason,),
                 details={"credential_id": e.credential_id, "status_list_id": e.status_list_id,
                          "status_index": e.status_index})


def _artifact_signed(e: Any) -> Facts:
    """The signature's log entry: what an artifact bundle's verifier matches, field by field."""
    return Facts(subject={"type": "agent", "id": e.agent_id, "spiffe_id": e.spiffe_id, "did": e.did},
                 act=act_path(e.act) if e.act else (), on_behalf_of=e.user,
                 details=_present(artifact_name=e.artifact_name, artifact_digest=e.artifact_digest,
                                  envelope_digest=e.envelope_digest, credential_id=e.credential_id,
                                  purpose=e.purpose, signed_at=when(e.signed_at),
                                  delegation=delegation_path(e.delegation)))


# ---- tokens (the token itself, its proofs and the user's token never appear) -------------------


def delegation_path(delegation: Any) -> dict[str, Any] | None:
    """The safe summary of a token's delegation: its depth, root, the parties on the path and the
    links' CIDs.

    Only identifiers (DIDs, SPIFFE IDs, agent ids, CIDs) are kept; anything else in the claim (links,
    proofs) is left out, so a chain of UCAN JWTs can never end up in a leaf.
    """
    if not isinstance(delegation, Mapping):
        return None
    out: dict[str, Any] = {}
    if type(delegation.get("depth")) is int:
        out["depth"] = delegation["depth"]
    for name in ("root", "leaf", "path", "chain", "agent_ids", "issuers", "audiences"):
        value = delegation.get(name)
        ids = [value] if isinstance(value, str) else value if isinstance(value, list) else []
        ids = [v for v in ids if _is_identifier(v)][:MAX_ACT_DEPTH]
        if ids:
            out[name] = ids[0] if isinstance(value, str) else ids
    return out or None


_CID = re.compile(r"b[a-z2-7]{20,120}")  # CIDv1, base32: names a link without being it


def _is_identifier(value: Any) -> bool:
    # Compact JWTs start with "eyJ", so no token, proof or link can pass for an identifier.
    return isinstance(value, str) and (
        (len(value) <= 512 and not any(c.isspace() for c in value)
         and value.startswith(("did:", "spiffe://", "agt_", "orc_")))
        or _CID.fullmatch(value) is not None)


def _token_issued(e: Any) -> Facts:
    details = _present(jti=e.jti, audience=e.audience, expires_at=when(e.expires_at),
                       authorization_types=sorted({str(d.get("type")) for d in e.authorization_details
                                                   if isinstance(d, Mapping)}),
                       policies=list(e.determining_policies), delegation=delegation_path(e.delegation))
    return Facts(subject={"type": "agent", "id": e.agent_id}, decision="allow",
                 act=act_path(e.act), on_behalf_of=e.user, details=details)


def _token_denied(e: Any) -> Facts:
    return Facts(subject={"type": "agent", "id": e.agent_id}, decision="deny", reasons=(e.code, e.reason),
                 on_behalf_of=e.user, details=_present(audience=e.audience, policies=list(e.determining_policies)))


def _token_revoked(e: Any) -> Facts:
    return Facts(subject={"type": "token", "id": e.jti, "sub": e.sub}, reasons=(e.reason,),
                 details={"exp": e.exp})


def _policy_updated(e: Any) -> Facts:
    return Facts(subject={"type": "policy", "id": str(e.version)},
                 details={"version": e.version, "sha256": e.sha256, "at": when(e.at)})


def _token_config_updated(e: Any) -> Facts:
    return Facts(subject={"type": "token_config", "id": str(e.version)},
                 details={"version": e.version, "at": when(e.at)})


def _signing_key_rotated(e: Any) -> Facts:
    return Facts(subject={"type": "signing_key", "id": e.kid}, details={"at": when(e.at)})


def _idp_changed(e: Any) -> Facts:
    return Facts(subject={"type": "identity_provider", "id": e.issuer}, details={"change": e.change, "at": when(e.at)})


def _resource_server_changed(e: Any) -> Facts:
    return Facts(subject={"type": "resource_server", "id": e.client_id, "name": e.name},
                 details={"change": e.change, "audiences": list(e.audiences), "at": when(e.at)})


# ---- delegation (the UCAN links themselves stay out: their CIDs lead to them) --------------------


def _capability(cap: Any) -> dict[str, Any]:
    if not isinstance(cap, Mapping):
        return {}
    return {k: v for k, v in cap.items() if k in ("with", "can", "resource", "actions")
            and (isinstance(v, str) or isinstance(v, list) and all(isinstance(x, str) for x in v))}


def _delegation_granted(e: Any) -> Facts:
    delegator = {"kind": "agent", "id": e.issuer_agent_id} if e.issuer_agent_id else {"kind": "authority",
                                                                                        "id": e.issuer_did}
    return Facts(subject=_present(type="delegation", id=e.cid, parent=e.parent), decision="allow",
                 act=({"kind": "agent", "id": e.audience_agent_id}, delegator),
                 details=_present(issuer=e.issuer_did, audience=e.audience_did, depth=e.depth,
                                  capabilities=[_capability(c) for c in e.capabilities[:MAX_ACT_DEPTH]],
                                  not_before=e.not_before, expires=e.expires))


def _delegation_revoked(e: Any) -> Facts:
    return Facts(subject=_present(type="delegation", id=e.direct[0] if e.direct else None), reasons=(e.reason,),
                 details={"direct": list(e.direct[:MAX_ACT_DEPTH]), "revoked": len(e.cids), "by": e.by,
                          "at": when(e.at), "part": e.part, "parts": e.parts})


def _delegation_config_updated(e: Any) -> Facts:
    return Facts(subject={"type": "delegation_config", "id": str(e.version)},
                 details={"version": e.version, "max_depth": e.max_depth, "at": when(e.at)})


# ---- attestation (evidence and claims stay out: the result id leads to them) ------------------


def _attestation_verified(e: Any) -> Facts:
    return Facts(subject={"type": "agent", "id": e.agent_id}, decision="allow",
                 details=_present(result_id=e.result_id, kind=e.kind, posture=e.posture,
                                  key_id=e.key_thumbprint, artifacts=list(e.artifacts),
                                  reference_version=e.reference_version,
                                  verified_at=when(e.verified_at), expires_at=when(e.expires_at)))


def _attestation_failed(e: Any) -> Facts:
    return Facts(subject={"type": "agent", "id": e.agent_id}, decision="deny", reasons=(e.reason, e.message),
                 details=_present(result_id=e.result_id, kind=e.kind, posture=e.posture,
                                  challenge_id=e.challenge_id, posture_ended=e.posture_ended, at=when(e.at)))


def _reference_values_updated(e: Any) -> Facts:
    return Facts(subject={"type": "reference_values", "id": e.tenant},
                 details={"version": e.version, "digest": e.digest, "set_by": e.set_by, "at": when(e.at)})


DESCRIBERS: dict[str, Callable[[Any], Facts]] = {
    "agent.spawn_requested": _spawn_requested,
    "tenant.created": _tenant_created,
    "orchestrator.added": _orchestrator_added,
    "agent.registered": _agent_registered,
    "agent.spawn_rejected": _spawn_rejected,
    "agent.renewed": _agent_renewed,
    "authorities.rotated": _authorities_rotated,
    "agent.exited": _agent_exited,
    "orchestrator.revoked": _orchestrator_revoked,
    "resource_server.changed": _resource_server_changed,
    "credential.issued": _credential_issued,
    "credential.revoked": _credential_revoked,
    "artifact.signed": _artifact_signed,
    "token.issued": _token_issued,
    "token.denied": _token_denied,
    "token.revoked": _token_revoked,
    "policy.updated": _policy_updated,
    "token_config.updated": _token_config_updated,
    "signing_key.rotated": _signing_key_rotated,
    "idp.changed": _idp_changed,
    "delegation.granted": _delegation_granted,
    "delegation.revoked": _delegation_revoked,
    "delegation_config.updated": _delegation_config_updated,
    "attestation.verified": _attestation_verified,
    "attestation.failed": _attestation_failed,
    "reference_values.updated": _reference_values_updated,
}


def describe(event_name: str, event: Any) -> Facts:
    """The facts of a verified event. Raises whatever a describer raises (the caller logs the
    event without details then): a describer bug must not drop an entry."""
    describer = DESCRIBERS.get(event_name)
    if describer is None:
        return Facts(subject={})
    return describer(event)
