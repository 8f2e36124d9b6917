"""The audit log: read it, prove entries, export it and verify it (offline too)."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from agentid.cli.base import Add, group
from agentid.cli.identity import _tenant
from shared.config import Settings

if TYPE_CHECKING:
    from agentid.audit import AuditClient
    from agentid.audit_log import Report


@asynccontextmanager
async def _client(args: argparse.Namespace, settings: Settings) -> AsyncIterator[AuditClient]:
    from agentid.audit import AuditClient
    from agentid.operator import operator_bus

    bus = await operator_bus(settings)
    try:
        yield AuditClient(bus, _tenant(args))
    finally:
        await bus.drain()


def _line(seq: int, leaf_text: str) -> str:
    """One entry on one line: sequence, time, event, verdict, actor -> subject, trace."""
    try:
        leaf: dict[str, Any] = json.loads(leaf_text)
    except ValueError:
        return f"{seq:>7}  (leaf is not JSON)"
    actor = leaf.get("actor") or {}
    subject = leaf.get("subject") or {}
    verdict = leaf.get("decision") or ("" if leaf.get("status") == "verified" else "REJECTED")
    who = actor.get("name") or actor.get("id") or "?"
    about = f"{subject.get('type')}:{subject.get('id')}" if subject else "-"
    trace = leaf.get("trace_id") or "-"
    return f"{seq:>7}  {leaf.get('time', '?'):24}  {leaf.get('event', '?'):26} {verdict:8} {who} -> {about}  trace {trace}"


async def cmd_checkpoint(args: argparse.Namespace, settings: Settings) -> int:
    from agentid.operator import dump

    async with _client(args, settings) as client:
        record = await client.checkpoint(args.size)
    if args.json:
        print(dump(record))
        return 0
    print(f"log       {record.origin} ({record.entries} entries)")
    print(f"log key   {record.log_public_key}")
    for retired in record.retired_log_keys:
        print(f"retired   {retired.key} (signed up to size {retired.until_size})")
    for key in record.witness_keys:
        print(f"witness   {key}")
    print()
    print(record.checkpoint.note, end="")
    return 0


async def cmd_rotate_key(args: argparse.Namespace, settings: Settings) -> int:
    from contracts import audit as au
    from contracts import subjects as sub

    async with _client(args, settings) as client:
        record = await client.bus.request(sub.AUDIT_ROTATE_KEY, client.tenant, au.RotateLogKey(reason=args.reason))
    print(f"log key   {record.log_public_key}  (new)")
    print(f"handover  checkpoint at size {record.checkpoint.size}, signed by the old and the new key:")
    print(record.checkpoint.note, end="")
    return 0


async def cmd_tail(args: argparse.Namespace, settings: Settings) -> int:
    import asyncio

    from shared.errors import NotFound

    async with _client(args, settings) as client:
        try:
            size = (await client.checkpoint()).entries
        except NotFound:
            size = 0
        after = size - args.n - 1 if size > args.n else None
        while True:
            async for entry in client.entries(after=after):
                print(entry.leaf if args.json else _line(entry.seq, entry.leaf), flush=True)
                after = entry.seq
            if not args.follow:
                return 0
            await asyncio.sleep(1.0)  # following a log is polling it: there is no change feed to wait on


async def cmd_query(args: argparse.Namespace, settings: Settings) -> int:
    filters = {k: v for k, v in {
        "agent_id": args.agent, "user": args.user, "trace_id": args.trace, "event": args.event,
        "since": args.since, "until": args.until, "after": args.after, "limit": args.limit}.items() if v is not None}
    async with _client(args, settings) as client:
        page = await client.query(**filters)
    for entry in page.entries:
        print(entry.leaf if args.json else _line(entry.seq, entry.leaf))
    if page.next_after is not None:
        print(f"(more: --after {page.next_after})", file=sys.stderr)
    return 0


async def cmd_proof(args: argparse.Namespace, settings: Settings) -> int:
    from agentid.audit import AuditProofError, verify_inclusion
    from agentid.operator import dump

    async with _client(args, settings) as client:
        proof = await client.proof(args.seq, args.tree_size)
        head = await client.checkpoint()
    print(dump(proof))
    try:
        verify_inclusion(proof.leaf, proof.leaf_index, proof.hashes, proof.checkpoint, head.log_public_key)
    except AuditProofError as exc:
        print(f"FAIL: the proof does not verify: {exc}", file=sys.stderr)
        return 1
    print(f"verified against the checkpoint at size {proof.tree_size} signed by {head.log_public_key}",
          file=sys.stderr)
    return 0


async def cmd_export(args: argparse.Namespace, settings: Settings) -> int:
    from agentid.audit_log import fetch

    async with _client(args, settings) as client:
        export = await fetch(client)
    path = Path(args.file)
    with path.open("w", encoding="utf-8") as out:
        for line in export.lines():
            out.write(line + "\n")
    print(f"{len(export.entries)} entries and {len(export.checkpoints)} checkpoints of {export.header.origin} "
          f"written to {path}", file=sys.stderr)
    return 0


async def cmd_verify(args: argparse.Namespace, settings: Settings) -> int:
    """Exit 0 when the whole log verifies, 1 naming the first entry that does not match."""
    from agentid.audit_log import ExportError, LogExport, fetch, verify_log

    if args.from_export:
        try:
            export = LogExport.parse(Path(args.from_export).read_text(encoding="utf-8").splitlines())
        except (OSError, ExportError) as exc:
            print(f"error: cannot read {args.from_export}: {exc}", file=sys.stderr)
            return 1
    else:
        async with _client(args, settings) as client:
            export = await fetch(client)
    report = verify_log(export, log_key=args.log_key, witness_keys=args.witness_key)
    _print_report(report, export.header.origin)
    return 0 if report.ok else 1


def _print_report(report: Report, origin: str) -> None:
    for warning in report.warnings:
        print(f"warning: {warning}", file=sys.stderr)
    if report.ok:
        print(f"OK: {origin}: {report.entries} entries, {report.checkpoints_verified} checkpoints "
              f"(signatures and roots), {report.consistency_verified} consistency proofs")
        return
    first = report.first_bad_entry
    print(f"FAIL: {origin}: " + (f"entry {first} is the first that does not match" if first is not None
                                  else "the log does not verify"))
    for problem in report.problems:
        print(f"  - {problem.message}")


def _instant(value: str) -> datetime:
    at = datetime.fromisoformat(value)
    if at.tzinfo is None:
        raise argparse.ArgumentTypeError("give a time zone, e.g. 2026-01-31T12:00:00Z")
    return at


def register(cmds: Any, add: Add) -> None:
    audit = group(cmds, "audit", "the transparency log: read, prove, export, verify")

    cp = add("checkpoint", cmd_checkpoint, "the latest signed checkpoint and the log's key", audit)
    cp.add_argument("--tenant")
    cp.add_argument("--size", type=int, help="the checkpoint signed at this tree size")
    cp.add_argument("--json", action="store_true")

    rk = add("rotate-key", cmd_rotate_key, "give the log a new key (the handover is signed by both)", audit)
    rk.add_argument("--tenant")
    rk.add_argument("--reason", default="scheduled rotation")

    tail = add("tail", cmd_tail, "the newest entries (and, with --follow, those to come)", audit)
    tail.add_argument("--tenant")
    tail.add_argument("-n", type=int, default=20, help="how many (default 20)")
    tail.add_argument("--follow", "-f", action="store_true")
    tail.add_argument("--json", action="store_true", help="print each leaf as logged")

    q = add("query", cmd_query, "entries by agent, user, trace id, event type, time range", audit)
    q.add_argument("--tenant")
    q.add_argument("--agent", help="agent id: entries about it, by it, or with it on the delegation path")
    q.add_argument("--user", help="entries done on this user's behalf")
    q.add_argument("--trace", help="W3C trace id (32 hex digits)")
    q.add_argument("--event", help="event type, e.g. agent.registered")
    q.add_argument("--since", type=_instant, help="RFC 3339 time, inclusive")
    q.add_argument("--until", type=_instant, help="RFC 3339 time, exclusive")
    q.add_argument("--after", type=int, help="paging cursor from the previous page")
    q.add_argument("--limit", type=int)
    q.add_argument("--json", action="store_true", help="print each leaf as logged")

    pr = add("proof", cmd_proof, "an entry's inclusion proof, checked against its signed checkpoint", audit)
    pr.add_argument("seq", type=int)
    pr.add_argument("--tenant")
    pr.add_argument("--tree-size", type=int, help="a signed checkpoint's size (default: the latest)")

    ex = add("export", cmd_export, "write every entry, checkpoint and consistency proof as JSON lines", audit)
    ex.add_argument("file")
    ex.add_argument("--tenant")

    ve = add("verify", cmd_verify, "recompute the log, check every checkpoint; name the first bad entry", audit)
    ve.add_argument("--tenant")
    ve.add_argument("--from-export", metavar="FILE", help="verify an export file, offline")
    ve.add_argument("--log-key", help="pin the log's verifier key (name+hex8+base64); default: the log's own")
    ve.add_argument("--witness-key", action="append", help="require this witness's cosignature (repeatable)")
