"""Operator access: the CLI's signed connection to a deployment, with an operator key."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from shared.bus import Bus
from shared.bus.inbox import operator_inbox
from shared.config import Settings
from shared.errors import Unavailable
from shared.keyring import Keyring


@dataclass(frozen=True)
class Target:
    """Where the deployment is: the running stack's record, or the configured URLs."""

    nats_url: str
    nats_prefix: str
    database_url: str | None
    http_url: str | None


def locate(settings: Settings) -> Target:
    """The deployment to talk to. Raises Unavailable when none is configured or running."""
    from services.stack import read_stack

    if settings.nats_url:
        return Target(settings.nats_url, settings.nats_prefix, settings.database_url, None)
    stack = read_stack(settings)
    if stack is None:
        raise Unavailable("no running stack: start one with `agentid up`, or set AGENTID_NATS_URL")
    return Target(stack["nats_url"], stack.get("nats_prefix", settings.nats_prefix),
                  stack.get("database_url"), stack.get("http_url"))


def load_keyring(settings: Settings) -> Keyring:
    path: Path = settings.keyring_path
    if not path.exists():
        raise Unavailable(f"no keyring at {path}")
    return Keyring.load(path)


async def operator_bus(settings: Settings, *, operator: str = "admin",
                       target: Target | None = None, keyring: Keyring | None = None) -> Bus:
    target = target or locate(settings)
    keyring = keyring or load_keyring(settings)
    return await Bus.connect(target.nats_url, name=f"agentid-operator-{operator}",
                             signer=keyring.signer("operator", operator), registry=keyring.registry(),
                             root=target.nats_prefix, nkey_seed=settings.nkey_seed,
                             inbox_prefix=operator_inbox(target.nats_prefix, operator))


def dump(value: Any) -> str:
    import msgspec

    return json.dumps(msgspec.to_builtins(value), indent=2, sort_keys=False)
