"""Replay guards: each (sender, message id) is accepted once within the timestamp window.

A message older than the window is already refused as stale, so a guard only has to remember ids
for that long. `MemoryReplayGuard` serves one process; `KvReplayGuard` is shared by every replica
through a NATS KV bucket whose entries expire with the window (`create` fails when the key exists).
If the shared guard cannot be reached, messages are refused (fail closed).
"""

from __future__ import annotations

import hashlib
import time
from collections import OrderedDict
from typing import Protocol

from nats.js.errors import KeyWrongLastSequenceError
from nats.js.kv import KeyValue

from shared.b64 import b64u_encode
from shared.errors import Unavailable


def replay_key(sender: str, msg_id: str) -> str:
    # Message ids are chosen by senders: namespacing by sender stops one sender burning another's.
    return b64u_encode(hashlib.sha256(f"{sender}\n{msg_id}".encode()).digest())


class ReplayGuard(Protocol):
    async def first_seen(self, sender: str, msg_id: str) -> bool:
        """Record the id; True the first time it is seen within the window."""
        ...


class MemoryReplayGuard:
    def __init__(self, window_s: float, max_entries: int = 1_000_000) -> None:
        self._window = window_s
        self._max = max_entries
        self._seen: OrderedDict[str, float] = OrderedDict()

    async def first_seen(self, sender: str, msg_id: str) -> bool:
        now = time.monotonic()
        while self._seen and next(iter(self._seen.values())) <= now:
            self._seen.popitem(last=False)
        key = replay_key(sender, msg_id)
        if key in self._seen:
            return False
        if len(self._seen) >= self._max:
            # Evicting a live entry would reopen a replay: refuse instead (fail closed).
            raise Unavailable("replay cache is full")
        self._seen[key] = now + self._window
        return True


class KvReplayGuard:
    def __init__(self, kv: KeyValue) -> None:
        self._kv = kv

    async def first_seen(self, sender: str, msg_id: str) -> bool:
        try:
            await self._kv.create(replay_key(sender, msg_id), b"")
        except KeyWrongLastSequenceError:
            return False
        except Exception as exc:  # fail closed: no answer from the guard means no acceptance
            raise Unavailable("replay cache unavailable") from exc
        return True
