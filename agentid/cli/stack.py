"""Running the stack: up, worker, status, demo."""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from pathlib import Path
from typing import Any

from agentid.cli.base import Add
from shared.config import Settings


async def cmd_up(args: argparse.Namespace, settings: Settings) -> int:
    from services.runner import stop_on_signals
    from services.stack import Stack, read_stack

    if read_stack(settings) is not None:
        print(f"a stack is already running from {settings.data_dir}", file=sys.stderr)
        return 1
    stack = Stack(settings, workers=args.workers or None)
    async with stack:
        stop_on_signals(stack.stop_event)
        print(f"agentid is up ({', '.join(stack.names)})")
        print(f"  NATS      {stack.nats_url}{'  (embedded)' if stack.nats else ''}")
        print(f"  Postgres  {stack.database_url}{'  (embedded)' if stack.postgres else ''}")
        if stack.http_url:
            print(f"  HTTP      {stack.http_url}  (OAuth metadata: {stack.http_url}/.well-known/"
                  "oauth-authorization-server/tenants/<tenant>)")
        print(f"  data      {settings.data_dir}")
        print("Ctrl-C to stop.", flush=True)
        await stack.wait()
        print("stopping: draining in-flight work...", flush=True)
    return 0


async def cmd_worker(args: argparse.Namespace, settings: Settings) -> int:
    from agentid.operator import load_keyring, locate
    from services import runner

    target = locate(settings)
    database_url = settings.database_url or target.database_url
    if not database_url and set(args.names) != {"gateway"}:  # the gateway alone needs no database
        print("set AGENTID_DATABASE_URL", file=sys.stderr)
        return 2
    workers = runner.build(args.names, settings, load_keyring(settings), nats_url=target.nats_url,
                           database_url=database_url or "")
    stop = asyncio.Event()
    runner.stop_on_signals(stop)
    await runner.run(workers, stop)
    return 0


async def cmd_status(args: argparse.Namespace, settings: Settings) -> int:
    from services.stack import read_stack

    stack = read_stack(settings)
    status: dict[str, Any] = {"running": stack is not None, "data_dir": str(settings.data_dir)}
    if stack is not None:
        status.update({k: stack.get(k) for k in ("pid", "nats_url", "database_url", "nats_prefix",
                                                 "http_url", "workers", "started_at", "embedded")})
        status["nats_reachable"] = await _reachable(stack["nats_url"])
        status["postgres_reachable"] = await _pg_reachable(stack["database_url"])
    if args.json:
        print(json.dumps(status, indent=2))
    elif stack is None:
        print(f"not running (data dir {settings.data_dir})")
    else:
        print(f"running (pid {status['pid']}) since {status['started_at']}")
        print(f"  NATS      {status['nats_url']}  {'ok' if status['nats_reachable'] else 'UNREACHABLE'}")
        print(f"  Postgres  {status['database_url']}  {'ok' if status['postgres_reachable'] else 'UNREACHABLE'}")
        if status.get("http_url"):
            print(f"  HTTP      {status['http_url']}")
        print(f"  workers   {', '.join(status['workers'])}")
    return 0 if stack is not None else 1


async def _reachable(url: str) -> bool:
    import nats

    try:
        nc = await nats.connect(url, connect_timeout=1, max_reconnect_attempts=0, allow_reconnect=False)
    except Exception:
        return False
    await nc.close()
    return True


async def _pg_reachable(url: str | None) -> bool:
    import asyncpg

    if not url:
        return False
    try:
        conn = await asyncpg.connect(url, timeout=2)
    except Exception:
        return False
    await conn.close()
    return True


async def cmd_demo(args: argparse.Namespace, settings: Settings) -> int:
    from agentid import demo

    report = await demo.run(settings)
    if args.json:
        Path(args.json).write_bytes(demo.to_json(report))
        print(f"report written to {args.json}")
    return 0


def register(cmds: Any, add: Add) -> None:
    up = add("up", cmd_up, "run every worker; embedded NATS and Postgres unless URLs are set")
    up.add_argument("--workers", nargs="*", help="only these workers")
    st = add("status", cmd_status, "show whether a stack runs and where")
    st.add_argument("--json", action="store_true", help="machine-readable output")
    dm = add("demo", cmd_demo, "run the whole story and print it")
    dm.add_argument("--json", metavar="FILE", help="also write every artifact to FILE")
    wk = add("worker", cmd_worker, "run one or more workers in this process")
    wk.add_argument("names", nargs="+", metavar="NAME")
