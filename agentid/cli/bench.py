"""`agentid bench`: throughput and latency of every hot path, each beside its floor measured in the
same run (docs/performance.md explains the method and what limits each figure)."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from agentid.cli.base import Add
from shared.config import Settings


def _fmt(value: Any, unit: str = "") -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:,.0f}{unit}" if value >= 100 else f"{value:.3g}{unit}"
    return f"{value}{unit}"


def print_table(report: dict[str, Any]) -> None:
    print(f"{'scenario':<24}{'rate/s':>10}{'p50 ms':>9}{'p99 ms':>9}{'floor/s':>10}{'ratio':>8}  target")
    for name, s in report["scenarios"].items():
        if s is None:
            continue
        met = {True: "met", False: "MISSED", None: ""}[s["meets_target"]]
        print(f"{name:<24}{_fmt(s['rate_per_s']):>10}{_fmt(s['p50_ms']):>9}{_fmt(s['p99_ms']):>9}"
              f"{_fmt(s['floor_rate_per_s']):>10}{_fmt(s['ratio_to_floor']):>8}  {met}")


async def cmd_bench(args: argparse.Namespace, settings: Settings) -> int:
    from benchmarks.runner import run

    def say(line: str) -> None:
        print(line, file=sys.stderr, flush=True)

    try:
        report = await run(settings, quick=args.quick, only=args.only, layout=args.layout,
                           token_workers=args.token_workers, profile_dir=args.profile, say=say)
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print_table(report)
    if args.json:
        Path(args.json).write_text(json.dumps(report, indent=2) + "\n")
        print(f"report written to {args.json}")
    for where, error in (report.get("errors") or {}).items():
        print(f"error: {where}: {error}", file=sys.stderr)
    return 1 if report.get("errors") else 0


def register(cmds: Any, add: Add) -> None:
    bench = add("bench", cmd_bench, "measure every hot path beside its floor (embedded stack unless URLs are set)")
    bench.add_argument("--json", metavar="FILE", help="write the full report to FILE")
    bench.add_argument("--quick", action="store_true", help="smaller counts: under two minutes")
    bench.add_argument("--only", nargs="+", metavar="SCENARIO",
                       help="only these scenarios (names, or groups: issue, verify, spawn, exchange, delegation, audit)")
    bench.add_argument("--layout", choices=["processes", "inprocess"], default="processes",
                       help="token worker as N processes in its queue group (default), or every worker in this process")
    bench.add_argument("--token-workers", type=int, metavar="N",
                       help="token worker processes in the processes layout (default: one per core)")
    bench.add_argument("--profile", type=Path, metavar="DIR",
                       help="also sample the token workers with py-spy (if installed) in one unmeasured run")
