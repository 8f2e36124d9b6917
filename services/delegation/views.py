"""Rows of the graph as the structs that cross the bus."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import asyncpg
import msgspec

from contracts import delegation as dlg
from services.delegation.store import NewLink


def record(row: asyncpg.Record, chain: Sequence[str]) -> dlg.DelegationRecord:
    return dlg.DelegationRecord(
        cid=row["cid"], parent=row["parent"], depth=row["depth"], issuer_did=row["issuer_did"],
        audience_did=row["audience_did"], issuer_agent_id=row["issuer_agent_id"],
        audience_agent_id=row["audience_agent_id"], capabilities=list(row["capabilities"]),
        not_before=row["not_before"], expires=row["expires"],
        status="revoked" if row["revoked_at"] is not None else "active",
        granted_at=row["granted_at"], revoked_at=row["revoked_at"], chain=list(chain))


def granted(new: NewLink) -> dlg.DelegationGranted:
    return dlg.DelegationGranted(
        cid=new.cid, parent=new.parent, issuer_did=new.issuer_did, audience_did=new.audience_did,
        issuer_agent_id=new.issuer_agent_id, audience_agent_id=new.audience_agent_id, depth=new.depth,
        capabilities=new.capabilities, not_before=new.not_before, expires=new.expires)


def edge(row: asyncpg.Record) -> dlg.GraphEdge:
    return dlg.GraphEdge(
        cid=row["cid"], parent=row["parent"], issuer=row["issuer_did"], audience=row["audience_did"],
        depth=row["depth"], capabilities=list(row["capabilities"]), expires=row["expires"],
        status="revoked" if row["revoked_at"] is not None else "active")


def revocation_entry(row: asyncpg.Record) -> dlg.RevocationEntry:
    rec = row["record"]
    return dlg.RevocationEntry(
        seq=row["seq"], cid=row["cid"], cause=row["cause"], by=row["by"], reason=row["reason"], at=row["at"],
        record=None if rec is None else msgspec.convert(rec, dlg.RevocationRecord))


def nodes(edges: Sequence[dlg.GraphEdge], authorities: set[str],
          agents: Mapping[str, asyncpg.Record]) -> list[dlg.GraphNode]:
    """One node per principal on the edges, in order of first appearance."""
    out: dict[str, dlg.GraphNode] = {}
    for e in edges:
        for did in (e.issuer, e.audience):
            if did in out:
                continue
            agent = agents.get(did)
            if did in authorities:
                out[did] = dlg.GraphNode(did=did, kind="authority", label="tenant authority")
            elif agent is not None:
                ended = " exited" if agent["ended_at"] is not None else ""
                out[did] = dlg.GraphNode(did=did, kind="agent", agent_id=agent["agent_id"],
                                         label=f"{agent['agent_id']} ({agent['purpose']}, {agent['tier']}){ended}")
            else:
                out[did] = dlg.GraphNode(did=did, kind="external")
    return list(out.values())
