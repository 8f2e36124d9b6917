"""The published wire contracts."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from agentid.cli.base import Add, group
from shared.config import Settings


async def cmd_contracts_export(args: argparse.Namespace, settings: Settings) -> int:
    from contracts import export

    changed = export.write(Path(args.out) if args.out else export.DEFAULT_DIR, check=args.check)
    if args.check and changed:
        print("stale: " + ", ".join(changed), file=sys.stderr)
        return 1
    print("contracts are current" if not changed else "wrote " + ", ".join(changed))
    return 0


def register(cmds: Any, add: Add) -> None:
    contracts = group(cmds, "contracts", "wire contracts")
    ce = add("export", cmd_contracts_export, "regenerate JSON Schemas and the AsyncAPI document", contracts)
    ce.add_argument("--out", help="directory (default: the contracts package)")
    ce.add_argument("--check", action="store_true", help="only report whether the files are stale")
