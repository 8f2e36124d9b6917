"""`Deployment`: where an agentid deployment listens and which service keys to trust.

Loaded from the `deployment.json` that `agentid up` writes (or an operator publishes): public
information only, safe to hand to orchestrators, agents and resource servers.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from shared.bus.registry import StaticRegistry
from shared.config import Settings
from shared.keyring import Keyring


@dataclass(frozen=True)
class Deployment:
    nats_url: str
    nats_prefix: str
    keyring: Keyring
    http_url: str | None = None
    # This party's NATS user, never part of the public document: each orchestrator, agent or
    # verifier is given its own seed (deploy/nats.conf lists the public keys).
    nats_nkey_seed: str | None = field(default=None, repr=False)

    @classmethod
    def from_json(cls, doc: Mapping[str, Any], *, nats_nkey_seed: str | None = None) -> Deployment:
        ring = Keyring.from_json(doc["keyring"])
        ring.private_keys.clear()  # a deployment document trusts public keys only
        return cls(nats_url=str(doc["nats_url"]), nats_prefix=str(doc.get("nats_prefix", "agentid")),
                   keyring=ring, http_url=doc.get("http_url"), nats_nkey_seed=nats_nkey_seed)

    @classmethod
    def load(cls, path: str | Path | None = None) -> Deployment:
        """From `path`, else `AGENTID_DEPLOYMENT`, else the data directory's deployment.json; the
        NATS seed from `AGENTID_NATS_NKEY_SEED`."""
        settings = Settings()
        path = path or os.environ.get("AGENTID_DEPLOYMENT") or settings.deployment_path
        return cls.from_json(json.loads(Path(path).read_text()), nats_nkey_seed=settings.nkey_seed)

    def services(self) -> StaticRegistry:
        """The services whose signed replies and events this client accepts."""
        return StaticRegistry(k for k in self.keyring.registry().senders() if k.kind == "service")
