"""Named crash points for fault-injection tests: `AGENTID_FAILPOINTS=after_commit,...`.

When a listed point is reached the process dies at once (`os._exit`), exactly like `kill -9`:
no cleanup, no flush. With the variable unset (every real deployment) each check is one set lookup.
"""

from __future__ import annotations

import os

_ACTIVE = frozenset(p for p in os.environ.get("AGENTID_FAILPOINTS", "").split(",") if p)


def hit(name: str) -> None:
    if name in _ACTIVE:
        os._exit(137)
