"""What every gateway request handler shares: the bus, the DPoP replay cache and nonces, the URLs.

Nothing here is state another replica needs: the replay cache is a NATS KV bucket all replicas
share, the nonce secret is derived from the deployment's key-encryption key (so every replica
issues and accepts the same nonces), and the tenant cache only remembers which tenants exist.
"""

from __future__ import annotations

import re
import time
from dataclasses import dataclass, field

from contracts import registration as reg
from contracts import subjects as sub
from contracts.gateway import token_endpoint
from shared.bus import Bus
from shared.config import Settings
from shared.dpop import DpopNonces, ReplayCache
from shared.errors import NotFound

_TENANT = re.compile(r"[a-z0-9][a-z0-9_-]{0,62}")
MISSING_TTL_S = 5.0
MAX_KNOWN_TENANTS = 10_000


@dataclass
class Tenants:
    """Which tenants exist, asked of registration once. Reading a key set or an issuer document for
    a tenant that does not exist must not create one, so documents are served only for these."""

    bus: Bus
    _known: set[str] = field(default_factory=set)
    _missing: dict[str, float] = field(default_factory=dict)

    async def exists(self, tenant: str) -> bool:
        if tenant in self._known:
            return True
        now = time.monotonic()
        if self._missing.get(tenant, 0.0) > now:
            return False
        try:
            await self.bus.request(sub.GET_BUNDLE, tenant, reg.GetBundle())
        except NotFound:
            if len(self._missing) >= MAX_KNOWN_TENANTS:
                self._missing.clear()
            self._missing[tenant] = now + MISSING_TTL_S
            return False
        if len(self._known) >= MAX_KNOWN_TENANTS:
            self._known.clear()
        self._known.add(tenant)
        return True


@dataclass
class Edge:
    settings: Settings
    bus: Bus
    replay: ReplayCache
    nonces: DpopNonces | None
    tenants: Tenants

    @property
    def base(self) -> str:
        """The public base URL, from configuration: never from a client's Host or X-Forwarded-*."""
        return self.settings.base_url()

    def issuer(self, tenant: str) -> str:
        return f"{self.base}/tenants/{tenant}"

    def token_endpoint(self, tenant: str) -> str:
        return token_endpoint(self.issuer(tenant))

    @property
    def ready(self) -> bool:
        return self.bus.nc.is_connected


def valid_tenant(tenant: str) -> bool:
    return bool(_TENANT.fullmatch(tenant))
