"""Replay guards: each (sender, message id) is accepted once within the timestamp window.

A message older than the window is already refused as stale, so a guard only has to remember ids
for that long. `MemoryReplayGuard` serves one process; `KvReplayGuard` is shared by every replica
through a NATS KV bucket whose entries expire with the window (`create` fails when the key exists).
If the shared guard cannot be reached, messages are refused (fail closed).

The mechanism underneath, a set of keys each accepted once while it lives (`OnceSet`), is also
the DPoP proof replay cache (`shared.dpop`): both remember hashed ids for a window and fail closed.
"""

from __future__ import annotations

import hashlib
import time
from collections import OrderedDict
from collections.abc import Callable
from typing import Protocol

from nats.js.errors import KeyWrongLastSequenceError
from nats.js.kv import KeyValue

from shared.b64 import b64u_encode
from shared.errors import Unavailable


def replay_key(sender: str, msg_id: str) -> str:
    # Message ids are chosen by senders: namespacing by sender stops one sender burning another's.
    return b64u_encode(hashlib.sha256(f"{sender}\n{msg_id}".encode()).digest())


class OnceSet(Protocol):
    async def add(self, key: str) -> bool:
        """Record `key` (a KV-safe string); True the first time it is seen while it lives.

        Raises `Unavailable` when the set cannot answer: callers refuse (fail closed).
        """
        ...


class MemoryOnceSet:
    """One process's set. Entries live `ttl_s`; a full set refuses instead of evicting."""

    def __init__(self, ttl_s: float, max_entries: int = 1_000_000,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self._ttl = ttl_s
        self._max = max_entries
        self._clock = clock
        self._seen: OrderedDict[str, float] = OrderedDict()

    def __len__(self) -> int:
        return len(self._seen)

    async def add(self, key: str) -> bool:
        now = self._clock()
        # Every entry has the same lifetime, so insertion order is expiry order.
        while self._seen and next(iter(self._seen.values())) <= now:
            self._seen.popitem(last=False)
        if key in self._seen:
            return False
        if len(self._seen) >= self._max:
            # Evicting a live entry would reopen a replay: refuse instead (fail closed).
            raise Unavailable("replay cache is full")
        self._seen[key] = now + self._ttl
        return True


class KvOnceSet:
    """A set shared by replicas: a NATS KV bucket whose `max_age` is the entries' lifetime."""

    def __init__(self, kv: KeyValue) -> None:
        self._kv = kv

    async def add(self, key: str) -> bool:
        try:
            await self._kv.create(key, b"")
        except KeyWrongLastSequenceError:
            return False
        except Exception as exc:  # fail closed: no answer from the set means no acceptance
            raise Unavailable("replay cache unavailable") from exc
        return True


class ReplayGuard(Protocol):
    async def first_seen(self, sender: str, msg_id: str) -> bool:
        """Record the id; True the first time it is seen within the window."""
        ...


class MemoryReplayGuard:
    def __init__(self, window_s: float, max_entries: int = 1_000_000) -> None:
        self._set = MemoryOnceSet(window_s, max_entries)

    async def first_seen(self, sender: str, msg_id: str) -> bool:
        return await self._set.add(replay_key(sender, msg_id))


class KvReplayGuard:
    def __init__(self, kv: KeyValue) -> None:
        self._set = KvOnceSet(kv)

    async def first_seen(self, sender: str, msg_id: str) -> bool:
        return await self._set.add(replay_key(sender, msg_id))
