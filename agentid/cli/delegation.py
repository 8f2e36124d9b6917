"""Delegation: the tenant's graph of UCAN links, its rules and authority, operator revocation."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

import msgspec

from agentid.cli.base import Add, group
from agentid.cli.identity import _operator_request, _tenant
from shared.config import Settings


async def cmd_graph(args: argparse.Namespace, settings: Settings) -> int:
    from agentid.delegation import to_dot
    from contracts import delegation as dlg
    from contracts import subjects as sub

    graph = await _operator_request(settings, sub.DELEGATION_GRAPH, _tenant(args), dlg.GetGraph(
        agent_id=args.agent, include_revoked=not args.active_only, limit=args.limit))
    print(to_dot(graph) if args.format == "dot" else json.dumps(msgspec.to_builtins(graph), indent=2), end="")
    if args.format != "dot":
        print()
    return 0


async def cmd_show(args: argparse.Namespace, settings: Settings) -> int:
    from agentid.operator import dump
    from contracts import delegation as dlg
    from contracts import subjects as sub

    print(dump(await _operator_request(settings, sub.DELEGATION_CHAIN, _tenant(args), dlg.GetChain(cid=args.cid))))
    return 0


async def cmd_revoke(args: argparse.Namespace, settings: Settings) -> int:
    from contracts import delegation as dlg
    from contracts import subjects as sub

    result = await _operator_request(settings, sub.DELEGATION_REVOKE, _tenant(args),
                                     dlg.RevokeDelegation(cid=args.cid, reason=args.reason))
    if result.already_revoked:
        print(f"{args.cid} was already revoked")
    else:
        print(f"revoked {len(result.cids)} link(s):")
        for cid in result.cids:
            print(f"  {cid}")
    return 0


async def cmd_revocations(args: argparse.Namespace, settings: Settings) -> int:
    from agentid.operator import dump
    from contracts import delegation as dlg
    from contracts import subjects as sub

    print(dump(await _operator_request(settings, sub.DELEGATION_REVOCATIONS, _tenant(args),
                                       dlg.ListRevocations(after=args.after, limit=args.limit))))
    return 0


async def cmd_config_set(args: argparse.Namespace, settings: Settings) -> int:
    from contracts import delegation as dlg
    from contracts import subjects as sub

    config = msgspec.json.decode(Path(args.file).read_bytes(), type=dlg.DelegationConfig)
    record = await _operator_request(settings, sub.DELEGATION_CONFIG_SET, _tenant(args),
                                     dlg.SetDelegationConfig(config=config))
    print(f"delegation rules version {record.version} (max depth {record.config.max_depth}, "
          f"{len(record.config.base)} base capability rule(s))")
    return 0


async def cmd_config_get(args: argparse.Namespace, settings: Settings) -> int:
    from agentid.operator import dump
    from contracts import delegation as dlg
    from contracts import subjects as sub

    print(dump(await _operator_request(settings, sub.DELEGATION_CONFIG_GET, _tenant(args), dlg.GetDelegationConfig())))
    return 0


async def cmd_authority(args: argparse.Namespace, settings: Settings) -> int:
    from agentid.operator import dump
    from contracts import delegation as dlg
    from contracts import subjects as sub

    if args.rotate:
        record = await _operator_request(settings, sub.DELEGATION_ROTATE_AUTHORITY, _tenant(args),
                                         dlg.RotateAuthority(reason=args.reason))
    else:
        record = await _operator_request(settings, sub.DELEGATION_AUTHORITY, _tenant(args), dlg.GetAuthority())
    print(dump(record))
    return 0


def register(cmds: Any, add: Add) -> None:
    d = group(cmds, "delegation", "agent-to-agent delegation: UCAN chains, the graph, revocation")
    g = add("graph", cmd_graph, "print the delegation graph (or the part through one agent)", d)
    g.add_argument("--tenant")
    g.add_argument("--agent", help="only chains through this agent id")
    g.add_argument("--format", choices=("json", "dot"), default="json", help="json, or Graphviz dot")
    g.add_argument("--active-only", action="store_true", help="leave out revoked links")
    g.add_argument("--limit", type=int, default=500, help="at most this many links (1..2000)")
    s = add("show", cmd_show, "print a recorded link and its chain (root first)", d)
    s.add_argument("cid")
    s.add_argument("--tenant")
    r = add("revoke", cmd_revoke, "revoke a link and every link below it (signed by the tenant authority)", d)
    r.add_argument("cid")
    r.add_argument("--tenant")
    r.add_argument("--reason", default="revoked by an operator")
    rv = add("revocations", cmd_revocations, "list revoked CIDs and their signed UCAN revocation records", d)
    rv.add_argument("--tenant")
    rv.add_argument("--after", type=int, default=0, help="cursor: the last seq already seen")
    rv.add_argument("--limit", type=int, default=100)
    cs = add("config-set", cmd_config_set, "upload delegation rules: base capabilities per tier/purpose, max depth", d)
    cs.add_argument("file")
    cs.add_argument("--tenant")
    cg = add("config-get", cmd_config_get, "print the delegation rules", d)
    cg.add_argument("--tenant")
    a = add("authority", cmd_authority, "print (or --rotate) the tenant's delegation authority and trusted roots", d)
    a.add_argument("--tenant")
    a.add_argument("--rotate", action="store_true", help="retire the current key; its roots stay valid until expiry")
    a.add_argument("--reason", default="scheduled rotation")
