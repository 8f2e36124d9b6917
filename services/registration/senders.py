"""Orchestrators and agents as bus senders, read from registration's own tables.

Uncached on purpose: a revoked orchestrator or an exited agent is refused on its very next message.
"""

from __future__ import annotations

from datetime import UTC, datetime

import asyncpg

from services.registration import store
from shared.bus.registry import SenderKey
from shared.keys import PublicKey


class RegisteredSenders:
    def __init__(self, pool: asyncpg.Pool) -> None:
        self._pool = pool

    async def lookup(self, sender: str, key_id: str, tenant: str | None = None) -> SenderKey | None:
        if "/orchestrator/" in sender:
            orch = await store.orchestrator_by_spiffe(self._pool, sender, key_id)
            if orch is None:
                return None
            return SenderKey(sender=sender, kind="orchestrator", key=PublicKey.from_jwk(orch.public_jwk),
                             subject_id=orch.orchestrator_id, tenant=orch.tenant,
                             active=orch.status == "active")
        if "/agent/" in sender:
            agent = await store.agent_by_spiffe(self._pool, sender, key_id)
            if agent is None:
                return None
            return SenderKey(sender=sender, kind="agent", key=PublicKey.from_jwk(agent.public_jwk),
                             subject_id=agent.agent_id, tenant=agent.tenant,
                             active=agent.status == "active" and agent.expires_at > datetime.now(UTC),
                             orchestrator_id=agent.orchestrator_id)
        return None
