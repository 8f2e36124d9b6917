"""Agent-to-agent delegation for agent runtimes: UCAN chains signed with the agent's own key.

    chain = await delegation.root(agent)                     # the agent's root from its tenant
    link = await delegation.delegate(agent, to=other.did, capabilities=[{...}], expires=600)
    await delegation.revoke(agent, link.cid)                 # the link and everything below it

`delegate` signs the new link locally (the private key never leaves the agent), then asks the
delegation worker to check the whole chain and record the link. The holder presents `link.chain`
(or `link.cid`) when it asks for a token.
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any

from contracts import delegation as dlg
from contracts import subjects as sub
from shared import ucan
from shared.capabilities import Capability, from_rar

if TYPE_CHECKING:
    from agentid.agent import Agent

__all__ = ["Delegation", "chain", "check", "delegate", "revoke", "root", "to_dot"]


@dataclass(frozen=True)
class Delegation:
    """A recorded link and its chain, root first (`chain[-1] == jwt`)."""

    jwt: str
    cid: str
    chain: tuple[str, ...]
    record: dlg.DelegationRecord

    @classmethod
    def of(cls, record: dlg.DelegationRecord) -> Delegation:
        return cls(jwt=record.chain[-1], cid=record.cid, chain=tuple(record.chain), record=record)


async def root(agent: Agent) -> Delegation:
    """This agent's root UCAN from its tenant authority (its base capabilities).

    Raises `NotFound` when the tenant's delegation rules grant the agent nothing."""
    return Delegation.of(await agent.bus.request(sub.DELEGATION_ROOT, agent.tenant, dlg.GetRoot()))


async def chain(agent: Agent, cid: str) -> Delegation:
    """A recorded link this agent is on, with its chain."""
    return Delegation.of(await agent.bus.request(sub.DELEGATION_CHAIN, agent.tenant, dlg.GetChain(cid=cid)))


async def delegate(agent: Agent, to: str, capabilities: Sequence[Capability | Mapping[str, Any]],
                   expires: datetime | float, *, parent: str | Delegation | None = None,
                   not_before: datetime | float | None = None) -> Delegation:
    """Delegate `capabilities` (each within what the parent grants) to the agent with DID `to`.

    `parent` is the delegation this agent holds and narrows: a `Delegation`, a recorded CID, or
    None for the agent's root. `expires` is a datetime or a number of seconds from now; a link
    never outlives its parent, so a later time is shortened to the parent's. Raises
    `DelegationInvalid` (with `detail["reason"]`) when the worker refuses the chain.
    """
    held = parent if isinstance(parent, Delegation) else (
        await root(agent) if parent is None else await chain(agent, parent))
    proof = ucan.parse(held.jwt)
    if proof.aud != agent.did:
        raise ValueError("that delegation is held by another principal, not this agent")
    now = int(time.time())
    exp = _epoch(expires, now)
    if proof.exp is not None:
        exp = min(exp, proof.exp)
    # A child's window must lie inside its parent's (UCAN 0.10 section 6.1): start no earlier.
    nbf = max(_epoch(not_before, now) if not_before is not None else now, proof.nbf or 0)
    nbf = min(nbf, exp)
    caps = [c if isinstance(c, Capability) else from_rar(c) for c in capabilities]
    jwt = ucan.issue(agent.key.private, to, caps, expires=exp, not_before=nbf, proofs=[held.jwt])
    record = await agent.bus.request(sub.DELEGATION_GRANT, agent.tenant,
                                     dlg.GrantDelegation(chain=[*held.chain, jwt]))
    return Delegation.of(record)


async def revoke(agent: Agent, cid: str, *, reason: str = "revoked") -> dlg.DelegationRevocation:
    """Revoke link `cid` (one this agent issued, or one below it) and every link below it, with a
    UCAN revocation record signed by this agent's key."""
    record = ucan.revocation(agent.key.private, cid)
    return await agent.bus.request(sub.DELEGATION_REVOKE, agent.tenant, dlg.RevokeDelegation(
        cid=cid, record=dlg.RevocationRecord(**record), reason=reason))


async def check(agent: Agent, held: Delegation | Sequence[str] | str) -> dlg.ChainCheck:
    """Whether a chain this agent holds is valid now (a `Delegation`, its JWTs, or its leaf CID)."""
    if isinstance(held, str):
        body = dlg.CheckChain(leaf_cid=held, holder_did=agent.did)
    else:
        body = dlg.CheckChain(chain=list(held.chain if isinstance(held, Delegation) else held), holder_did=agent.did)
    return await agent.bus.request(sub.DELEGATION_CHECK, agent.tenant, body)


def _epoch(value: datetime | float, now: int) -> int:
    if isinstance(value, datetime):
        if value.tzinfo is None:
            raise ValueError("give an aware datetime (UTC)")
        return int(value.timestamp())
    if isinstance(value, bool) or not isinstance(value, int | float) or value <= 0:
        raise ValueError("a time is an aware datetime or a positive number of seconds from now")
    return now + int(value)


# -- Graphviz ----------------------------------------------------------------------------------------
def to_dot(graph: dlg.DelegationGraph) -> str:
    """The graph in Graphviz DOT: principals as nodes, links as edges (revoked links dashed, red)."""
    lines = ["digraph delegation {", "  rankdir=LR;", '  node [shape=box, fontname="Helvetica"];',
             '  edge [fontname="Helvetica", fontsize=10];']
    for node in graph.nodes:
        label = node.label or _short(node.did)
        shape = "doubleoctagon" if node.kind == "authority" else "box"
        lines.append(f"  {_q(node.did)} [label={_q(label + chr(10) + _short(node.did))}, shape={shape}];")
    for edge in graph.edges:
        abilities = sorted({f"{d.get('type')}:{a}" for d in edge.capabilities for a in d.get("actions", [])})
        label = f"depth {edge.depth}\n" + ("\n".join(abilities) if abilities else "(nothing)")
        style = ', style=dashed, color="red", fontcolor="red"' if edge.status == "revoked" else ""
        lines.append(f"  {_q(edge.issuer)} -> {_q(edge.audience)} [label={_q(label)}, tooltip={_q(edge.cid)}{style}];")
    lines.append("}")
    return "\n".join(lines) + "\n"


def _q(text: str) -> str:
    escaped = text.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")
    return f'"{escaped}"'


def _short(did: str) -> str:
    return did if len(did) <= 24 else f"{did[:16]}...{did[-6:]}"
