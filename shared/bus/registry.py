"""Sender keys: who may put messages on the bus, and with which key.

Services and operators come from the deployment's keyring; orchestrators and agents are registered
at runtime, so each worker resolves them through a registry backed by registration's state (its own
tables in registration, a cache fed by events elsewhere). A registry answers one question:
the public key and standing of (sender, key id), or None.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Protocol

from shared.keys import PublicKey


@dataclass(frozen=True, slots=True)
class SenderKey:
    sender: str                    # SPIFFE ID (services, operators, orchestrators, agents)
    kind: str                      # service | operator | orchestrator | agent
    key: PublicKey
    subject_id: str                # service name, operator name, orchestrator id or agent id
    tenant: str | None = None      # None for deployment-wide senders (services, operators)
    active: bool = True
    orchestrator_id: str | None = None  # for agents: the orchestrator that spawned them

    @property
    def key_id(self) -> str:
        return self.key.thumbprint

    def may_act_in(self, tenant: str) -> bool:
        return self.tenant is None or self.tenant == tenant


class SenderRegistry(Protocol):
    async def lookup(self, sender: str, key_id: str, tenant: str | None = None) -> SenderKey | None:
        """`tenant` is the tenant of the message's subject, a hint for registries that fetch."""
        ...


class StaticRegistry:
    """Fixed keys, from deployment configuration."""

    def __init__(self, keys: Iterable[SenderKey] = ()) -> None:
        self._keys = {(k.sender, k.key_id): k for k in keys}

    def add(self, key: SenderKey) -> None:
        self._keys[(key.sender, key.key_id)] = key

    def senders(self, kind: str | None = None) -> list[SenderKey]:
        return [k for k in self._keys.values() if kind is None or k.kind == kind]

    async def lookup(self, sender: str, key_id: str, tenant: str | None = None) -> SenderKey | None:
        return self._keys.get((sender, key_id))


class CompositeRegistry:
    """Ask each registry in turn; the first answer wins."""

    def __init__(self, registries: Sequence[SenderRegistry]) -> None:
        self._registries = tuple(registries)

    async def lookup(self, sender: str, key_id: str, tenant: str | None = None) -> SenderKey | None:
        for registry in self._registries:
            found = await registry.lookup(sender, key_id, tenant)
            if found is not None:
                return found
        return None
