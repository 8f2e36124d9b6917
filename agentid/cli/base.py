"""What every command group of the CLI shares."""

from __future__ import annotations

import argparse
from collections.abc import Awaitable, Callable
from typing import Any, Protocol

from shared.config import Settings

Command = Callable[[argparse.Namespace, Settings], Awaitable[int]]


class Add(Protocol):
    def __call__(self, name: str, fn: Command, help: str, parent: Any = ...) -> argparse.ArgumentParser: ...


def group(cmds: Any, name: str, help: str) -> Any:
    """A command with subcommands (`agentid agent list`)."""
    return cmds.add_parser(name, help=help).add_subparsers(dest="sub", required=True, metavar="ACTION")
