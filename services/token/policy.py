"""Policy with Cedar: a tenant's policy set, compiled once per version, evaluated per request.

Default deny: with no policy set, or no permit matching, nothing is issued; a forbid always wins.
Every (detail, action) pair of a request is one Cedar request and all must be allowed.

What policies see:
- principal `Agent::"<agent id>"` (in `Orchestrator::"<id>"`), attributes from its credential:
  `tier`, `purpose`, `dataClass` and `dataClassLevel` (public 0 < internal 1 < confidential 2 <
  restricted 3), `model` {name, version, digest}, `tools` (names), `attested` (a live TEE posture),
  `attestations` (kinds of live postures), `spiffeId`.
- action `Action::"<action>"` of the detail.
- resource `Resource::"<uri>"` with `type` (the detail type).
- context: `audience`, `lifetime`, `delegationDepth`, `detailType`, `dataClass`/`dataClassLevel` of
  the detail (`"none"`/-1 when it names none), `identifiers`, `onBehalfOf`, and `user` {id, groups}
  when a user delegated (with `User::"<sub>"` as an entity).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import cedarpy

from shared.capabilities import DATA_CLASSES, Capability
from shared.errors import InvalidRequest

LEVEL = {name: i for i, name in enumerate(DATA_CLASSES)}


@dataclass(frozen=True)
class AgentFacts:
    agent_id: str
    spiffe_id: str
    did: str
    tenant: str
    orchestrator_id: str
    tier: str
    purpose: str
    data_class: str
    model: dict[str, Any] = field(default_factory=dict)
    tools: tuple[str, ...] = ()
    attestations: tuple[str, ...] = ()  # kinds of live postures
    credential_id: str | None = None
    key_id: str = ""                    # RFC 7638 thumbprint of the agent's key
    public_jwk: dict[str, str] = field(default_factory=dict)
    active: bool = True
    parent_agent_id: str | None = None

    @property
    def attested(self) -> bool:
        return "tee" in self.attestations


MAX_POLICIES, MAX_ID_CHARS = 10_000, 1024  # contracts.tokens.PolicyIds
MAX_REASON_CHARS, MAX_ERRORS = 1024, 100     # contracts.tokens.PolicyDecision


def _bounded(reason: str) -> str:
    return reason if len(reason) <= MAX_REASON_CHARS else reason[:MAX_REASON_CHARS - 3] + "..."


@dataclass(frozen=True)
class Decision:
    allowed: bool
    determining_policies: list[str]
    errors: list[str]
    reason: str


@dataclass(frozen=True)
class CompiledPolicy:
    version: int
    policy_set: Any
    ids: dict[str, str]  # cedar's policyN -> the policy's @id annotation (or policyN)
    sha256: str


def compile_policy(text: str, schema: str | None, version: int = 0) -> CompiledPolicy:
    """Parse (and, with a schema, validate) a policy set. Raises InvalidRequest with the parser's reasons."""
    try:
        policy_set = cedarpy.PolicySet.from_str(text)
        described = json.loads(cedarpy.policies_to_json_str(text))
    except (ValueError, RuntimeError) as exc:
        raise InvalidRequest(f"policy does not parse: {exc}") from exc
    if schema is not None:
        try:
            result = cedarpy.validate_policies(text, schema)
        except (ValueError, RuntimeError) as exc:
            raise InvalidRequest(f"schema does not parse: {exc}") from exc
        if not result.validation_passed:
            raise InvalidRequest("policy does not validate against the schema: "
                                 + "; ".join(str(e) for e in result.errors)[:800])
    ids = {pid: p.get("annotations", {}).get("id", pid) for pid, p in described.get("staticPolicies", {}).items()}
    # Policy ids travel in every decision, event and audit entry: held to the contract's bounds here.
    if len(ids) > MAX_POLICIES:
        raise InvalidRequest(f"a policy set holds at most {MAX_POLICIES} policies")
    if any(len(i) > MAX_ID_CHARS for i in ids.values()):
        raise InvalidRequest(f"a policy @id is at most {MAX_ID_CHARS} characters")
    return CompiledPolicy(version=version, policy_set=policy_set, ids=ids,
                          sha256=hashlib.sha256(text.encode()).hexdigest())


def _agent_entities(agent: AgentFacts) -> list[dict[str, Any]]:
    return [
        {"uid": {"type": "Orchestrator", "id": agent.orchestrator_id}, "attrs": {}, "parents": []},
        {"uid": {"type": "Agent", "id": agent.agent_id}, "parents": [{"type": "Orchestrator", "id": agent.orchestrator_id}],
         "attrs": {
             "tier": agent.tier, "purpose": agent.purpose, "dataClass": agent.data_class,
             "dataClassLevel": LEVEL.get(agent.data_class, -1),
             "model": {k: str(v) for k, v in agent.model.items()}, "tools": list(agent.tools),
             "attested": agent.attested, "attestations": list(agent.attestations), "spiffeId": agent.spiffe_id,
         }},
    ]


def decide(policy: CompiledPolicy | None, agent: AgentFacts, details: Sequence[Capability], *, audience: str,
           lifetime: int, delegation_depth: int = 0, user: dict[str, Any] | None = None) -> Decision:
    if policy is None:
        return Decision(False, [], [], "no policy set for this tenant: default deny")
    entities = _agent_entities(agent)
    if user is not None:
        entities.append({"uid": {"type": "User", "id": str(user["id"])},
                         "attrs": {"groups": [str(g) for g in user.get("groups", [])]}, "parents": []})
    requests = []
    seen_resources = set()
    for cap in details:
        if cap.resource not in seen_resources:
            seen_resources.add(cap.resource)
            entities.append({"uid": {"type": "Resource", "id": cap.resource}, "attrs": {"type": cap.type}, "parents": []})
        context: dict[str, Any] = {
            "audience": audience, "lifetime": lifetime, "delegationDepth": delegation_depth,
            "detailType": cap.type, "dataClass": cap.data_class or "none",
            "dataClassLevel": LEVEL.get(cap.data_class or "", -1),
            "identifiers": [str(i) for i in (cap.identifiers.to_json() if cap.identifiers else [])],
            "onBehalfOf": user is not None,
        }
        if user is not None:
            context["user"] = {"id": str(user["id"]), "groups": [str(g) for g in user.get("groups", [])]}
        for action in sorted(cap.actions):
            requests.append({"principal": {"type": "Agent", "id": agent.agent_id},
                             "action": {"type": "Action", "id": action},
                             "resource": {"type": "Resource", "id": cap.resource}, "context": context})
    results = cedarpy.is_authorized_batch(requests, policy.policy_set, entities)
    determining: list[str] = []
    errors: list[str] = []
    allowed = True
    for request, result in zip(requests, results):
        reasons = [policy.ids.get(r, r) for r in result.diagnostics.reasons]
        errors += [str(e) for e in result.diagnostics.errors]
        if result.allowed:
            determining += [r for r in reasons if r not in determining]
        else:
            allowed = False
            denial = reasons or ["default deny: no permit matched"]
            action = request["action"]["id"]
            return Decision(False, denial, [_bounded(e) for e in errors[:MAX_ERRORS]],
                            _bounded(f"{action} on {request['resource']['id']} denied by {', '.join(denial)}"))
    return Decision(allowed, determining, [_bounded(e) for e in errors[:MAX_ERRORS]],
                    _bounded("allowed by " + ", ".join(determining)))
