"""The `agentid` command line: run the stack, operate it, and tell the story (`agentid demo`).

Each command group is a module with a `register(cmds, add)` function, listed in GROUPS.
Exit status: 0 success, 1 refused or failed (the typed error is printed), 2 usage.
"""

from __future__ import annotations

import argparse
import asyncio
import importlib
import logging
import sys
from collections.abc import Sequence
from typing import Any

from agentid.cli.base import Command
from shared.config import Settings
from shared.errors import AgentidError

GROUPS = ("stack", "identity", "credentials", "tokens", "resource_servers", "delegation", "attestation", "audit", "artifacts",
          "contracts", "bench")


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="agentid", description="The identity layer for AI agents.")
    p.add_argument("-v", "--verbose", action="store_true", help="log debug output")
    cmds = p.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def add(name: str, fn: Command, help: str, parent: Any = cmds) -> argparse.ArgumentParser:
        sp = parent.add_parser(name, help=help, description=help)
        sp.set_defaults(fn=fn)
        return sp

    for name in GROUPS:
        importlib.import_module(f"agentid.cli.{name}").register(cmds, add)
    return p


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    level = logging.DEBUG if args.verbose else logging.INFO if args.command in ("up", "worker") else logging.WARNING
    logging.basicConfig(level=level, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    from shared import telemetry

    telemetry.configure(f"agentid-{args.command}")
    try:
        return asyncio.run(args.fn(args, Settings()))
    except AgentidError as exc:
        print(f"error: {exc.code.value}: {exc.message}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130
