"""Resource servers: the clients of the gateway's introspection and revocation endpoints."""

from __future__ import annotations

import argparse
import json
from typing import Any

from agentid.cli.base import Add, group
from agentid.cli.identity import _operator_request, _tenant
from shared.config import Settings


async def cmd_rs_add(args: argparse.Namespace, settings: Settings) -> int:
    """Prints the credentials once: only a hash of the secret is kept."""
    from agentid.operator import dump
    from contracts import gateway as gw
    from contracts import subjects as sub

    creds = await _operator_request(settings, sub.RS_ADD, _tenant(args),
                                    gw.AddResourceServer(name=args.name, audiences=args.audience))
    print(dump(creds))
    print("keep the client_secret now: it is not stored and cannot be shown again", flush=True)
    return 0


async def cmd_rs_list(args: argparse.Namespace, settings: Settings) -> int:
    import msgspec

    from contracts import gateway as gw
    from contracts import subjects as sub

    listing = await _operator_request(settings, sub.RS_LIST, _tenant(args), gw.ListResourceServers())
    print(json.dumps(msgspec.to_builtins(listing.resource_servers), indent=2))
    return 0


async def cmd_rs_remove(args: argparse.Namespace, settings: Settings) -> int:
    from contracts import gateway as gw
    from contracts import subjects as sub

    await _operator_request(settings, sub.RS_REMOVE, _tenant(args), gw.RemoveResourceServer(client_id=args.client_id))
    print(f"removed {args.client_id}")
    return 0


def register(cmds: Any, add: Add) -> None:
    rs = group(cmds, "rs", "resource servers that introspect and revoke tokens at the HTTP gateway")
    ra = add("add", cmd_rs_add, "register one; prints its client_id and client_secret (once)", rs)
    ra.add_argument("--name", required=True)
    ra.add_argument("--audience", action="append", required=True,
                    help="a resource URI it serves (repeatable); it sees only tokens for these")
    ra.add_argument("--tenant")
    rl = add("list", cmd_rs_list, "list the tenant's resource servers", rs)
    rl.add_argument("--tenant")
    rr = add("remove", cmd_rs_remove, "remove one: its credentials stop working at once", rs)
    rr.add_argument("client_id")
    rr.add_argument("--tenant")
