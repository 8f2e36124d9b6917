"""Checking a chain against the graph: what `delegation.grant` and `delegation.check` share.

First `shared.ucan.verify_chain` (signatures, time, nesting, attenuation, depth, trusted root,
revocation against the store), then the graph's own checks: every link but a new leaf is recorded
here with the same parent, and every agent on the path is a live agent of this tenant (both in
this worker's own agent table and in its sender directory; either may learn of an exit first).
"""

from __future__ import annotations

import time
from collections.abc import Collection, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import asyncpg

from services.delegation import store
from shared import ucan
from shared.errors import DelegationInvalid


def invalid(reason: str, message: str | None = None) -> DelegationInvalid:
    return DelegationInvalid(message or f"delegation refused: {reason}", {"reason": reason})


@dataclass(frozen=True)
class Checked:
    verified: ucan.VerifiedChain
    recorded: dict[str, asyncpg.Record]  # the chain's links recorded here, by CID
    agent_ids: list[str]                 # the audience agent of each link, root link first
    max_depth: int

    @property
    def leaf(self) -> ucan.Ucan:
        return self.verified.links[-1]


async def verify(conn: asyncpg.Connection, directory: Any, *, tenant: str, chain: Sequence[str], holder_did: str,
                 trusted_roots: Collection[str], max_depth: int, new_leaf: bool) -> Checked:
    """Check `chain` (root first) for `holder_did` now. With `new_leaf`, its last link may be
    unrecorded (it is being granted). Raises `DelegationInvalid` with `detail["reason"]`."""
    try:
        cids = [ucan.cid(token) for token in chain]
    except ucan.DelegationError as exc:
        raise invalid(exc.code, str(exc)) from exc
    revoked = await store.revoked_among(conn, tenant, cids)
    try:
        verified = ucan.verify_chain(list(chain), audience_did=holder_did, trusted_roots=trusted_roots,
                                     max_depth=max_depth, now=time.time(), revoked=revoked)
    except ucan.DelegationError as exc:
        raise invalid(exc.code, str(exc)) from exc

    recorded = await store.links(conn, tenant, cids)
    for i, link in enumerate(verified.links):
        row = recorded.get(link.cid)
        if row is None and new_leaf and i == len(cids) - 1:
            continue
        # The same CID under another parent is another chain (a UCAN may name several proofs).
        if row is None or row["parent"] != (cids[i - 1] if i else None):
            raise invalid("not_recorded", "a link of this chain was never granted here")

    agent_ids: list[str] = []
    for link in verified.links:
        row = recorded.get(link.cid)
        if row is not None:
            agent_ids.append(row["audience_agent_id"])
            continue
        agent = await store.agent_by_did(conn, tenant, link.aud)
        if agent is None:
            raise invalid("unknown_agent", "the audience is not an agent of this tenant")
        agent_ids.append(agent["agent_id"])
    await _all_active(conn, directory, tenant, agent_ids)
    return Checked(verified, recorded, agent_ids, max_depth)


async def _all_active(conn: asyncpg.Connection, directory: Any, tenant: str, agent_ids: Sequence[str]) -> None:
    rows = await store.agents(conn, tenant, agent_ids)
    now = datetime.now(UTC)
    for agent_id in dict.fromkeys(agent_ids):
        row = rows.get(agent_id)
        if row is None:
            raise invalid("unknown_agent", "an agent on the chain is not an agent of this tenant")
        if row["ended_at"] is not None or row["expires_at"] <= now:
            raise invalid("agent_inactive", f"agent {agent_id} on the chain is no longer active")
        sender = await directory.get(conn, agent_id)
        if sender is not None and not sender["active"]:
            raise invalid("agent_inactive", f"agent {agent_id} on the chain is no longer active")
