"""The `agentid` command line: run the stack, operate it, and tell the story (`agentid demo`).

Exit status: 0 success, 1 refused or failed (the typed error is printed), 2 usage.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import sys
from collections.abc import Awaitable, Callable, Sequence
from pathlib import Path
from typing import Any

from shared.config import Settings
from shared.errors import AgentidError

Command = Callable[[argparse.Namespace, Settings], Awaitable[int]]


# -- running ------------------------------------------------------------------------------
async def cmd_up(args: argparse.Namespace, settings: Settings) -> int:
    from services.runner import stop_on_signals
    from services.stack import Stack, read_stack

    if read_stack(settings) is not None:
        print(f"a stack is already running from {settings.data_dir}", file=sys.stderr)
        return 1
    stack = Stack(settings, workers=args.workers or None)
    async with stack:
        stop_on_signals(stack._stop)
        print(f"agentid is up ({', '.join(stack.names)})")
        print(f"  NATS      {stack.nats_url}{'  (embedded)' if stack.nats else ''}")
        print(f"  Postgres  {stack.database_url}{'  (embedded)' if stack.postgres else ''}")
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
    if not database_url:
        print("set AGENTID_DATABASE_URL", file=sys.stderr)
        return 2
    workers = runner.build(args.names, settings, load_keyring(settings), nats_url=target.nats_url,
                           database_url=database_url)
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


# -- operating ------------------------------------------------------------------------------
async def cmd_tenant_create(args: argparse.Namespace, settings: Settings) -> int:
    from agentid.operator import dump, operator_bus
    from contracts import registration as reg
    from contracts import subjects as sub

    bus = await operator_bus(settings)
    try:
        record = await bus.request(sub.CREATE_TENANT, args.name, reg.CreateTenant(trust_domain=args.trust_domain))
    finally:
        await bus.drain()
    print(dump(record))
    return 0


async def cmd_orchestrator_add(args: argparse.Namespace, settings: Settings) -> int:
    from agentid.operator import dump, operator_bus
    from contracts import registration as reg
    from contracts import subjects as sub
    from shared.keys import PrivateKey, PublicKey

    if args.public_key:
        text = Path(args.public_key).read_text()
        key = PublicKey.from_pem(text) if "BEGIN" in text else PublicKey.from_jwk(json.loads(text))
    else:
        private = PrivateKey.generate()
        key = private.public
        out = Path(args.key_out or f"{args.name}.key.pem")
        out.touch(mode=0o600)
        out.write_text(private.pem())
        print(f"orchestrator private key written to {out}", file=sys.stderr)
    authority = reg.Authority(
        tiers=_csv(args.tiers), purposes=_csv(args.purposes), data_classes=_csv(args.data_classes),
        max_lifetime_s=args.max_lifetime, max_live_agents=args.max_live)
    bus = await operator_bus(settings)
    try:
        record = await bus.request(sub.ADD_ORCHESTRATOR, args.tenant, reg.AddOrchestrator(
            name=args.name, public_jwk=key.jwk(), authority=authority))
    finally:
        await bus.drain()
    print(dump(record))
    return 0


def _tenant(args: argparse.Namespace) -> str:
    import os

    tenant = getattr(args, "tenant", None) or os.environ.get("AGENTID_TENANT")
    if not tenant:
        raise SystemExit("error: --tenant (or AGENTID_TENANT) is required")
    return tenant


async def _operator_request(settings: Settings, route: Any, tenant: str, body: Any) -> Any:
    from agentid.operator import operator_bus

    bus = await operator_bus(settings)
    try:
        return await bus.request(route, tenant, body)
    finally:
        await bus.drain()


async def cmd_bundle(args: argparse.Namespace, settings: Settings) -> int:
    from contracts import registration as reg
    from contracts import subjects as sub

    bundle = await _operator_request(settings, sub.GET_BUNDLE, _tenant(args), reg.GetBundle())
    print(json.dumps(bundle.jwks, indent=2))
    return 0


async def cmd_agent_list(args: argparse.Namespace, settings: Settings) -> int:
    from agentid.operator import dump
    from contracts import registration as reg
    from contracts import subjects as sub

    page = await _operator_request(settings, sub.LIST_AGENTS, _tenant(args), reg.ListAgents(
        status=args.status, limit=args.limit, after=args.after))
    if args.json:
        print(dump(page))
        return 0
    for a in page.agents:
        print(f"{a.agent_id}  {a.status:8}  {a.tier:10} {a.purpose:24} {a.spiffe_id}")
    if page.next_after:
        print(f"(more: --after {page.next_after})")
    return 0


async def cmd_agent_show(args: argparse.Namespace, settings: Settings) -> int:
    from agentid.operator import dump
    from contracts import registration as reg
    from contracts import subjects as sub

    print(dump(await _operator_request(settings, sub.GET_AGENT, _tenant(args), reg.GetAgent(agent_id=args.id))))
    return 0


async def cmd_agent_revoke(args: argparse.Namespace, settings: Settings) -> int:
    from contracts import registration as reg
    from contracts import subjects as sub

    result = await _operator_request(settings, sub.REVOKE_AGENT, _tenant(args),
                                     reg.RevokeAgent(agent_id=args.id, reason=args.reason))
    for agent_id in result.revoked:
        print(f"revoked {agent_id}")
    if not result.revoked:
        print("nothing to revoke: the agent was not active")
    return 0


async def cmd_ca_rotate(args: argparse.Namespace, settings: Settings) -> int:
    from contracts import registration as reg
    from contracts import subjects as sub

    bundle = await _operator_request(settings, sub.ROTATE_AUTHORITIES, _tenant(args),
                                     reg.RotateAuthorities(reason=args.reason))
    print(json.dumps(bundle.jwks, indent=2))
    return 0


def _csv(value: str | None) -> list[str]:
    return [v.strip() for v in (value or "").split(",") if v.strip()]


async def cmd_contracts_export(args: argparse.Namespace, settings: Settings) -> int:
    from contracts import export

    changed = export.write(Path(args.out) if args.out else export.DEFAULT_DIR, check=args.check)
    if args.check and changed:
        print("stale: " + ", ".join(changed), file=sys.stderr)
        return 1
    print("contracts are current" if not changed else "wrote " + ", ".join(changed))
    return 0


async def cmd_keyring_create(args: argparse.Namespace, settings: Settings) -> int:
    from shared.keyring import Keyring

    path = Path(args.out) if args.out else settings.keyring_path
    if path.exists():
        print(f"{path} exists; not overwriting", file=sys.stderr)
        return 1
    ring = Keyring.generate(operators=args.operators or ["admin"])
    ring.save(path)
    if args.public:
        Path(args.public).write_text(json.dumps(ring.public(), indent=2))
    print(f"keyring written to {path} (mode 0600)")
    return 0


# -- parser ------------------------------------------------------------------------------------
def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="agentid", description="The identity layer for AI agents.")
    p.add_argument("-v", "--verbose", action="store_true", help="log debug output")
    cmds = p.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def add(name: str, fn: Command, help: str, parent: Any = cmds) -> argparse.ArgumentParser:
        sp = parent.add_parser(name, help=help, description=help)
        sp.set_defaults(fn=fn)
        return sp

    up = add("up", cmd_up, "run every worker; embedded NATS and Postgres unless URLs are set")
    up.add_argument("--workers", nargs="*", help="only these workers")
    st = add("status", cmd_status, "show whether a stack runs and where")
    st.add_argument("--json", action="store_true", help="machine-readable output")
    dm = add("demo", cmd_demo, "run the whole story and print it")
    dm.add_argument("--json", metavar="FILE", help="also write every artifact to FILE")
    wk = add("worker", cmd_worker, "run one or more workers in this process")
    wk.add_argument("names", nargs="+", metavar="NAME")

    tenant = cmds.add_parser("tenant", help="manage tenants").add_subparsers(dest="sub", required=True, metavar="ACTION")
    tc = add("create", cmd_tenant_create, "create a tenant", tenant)
    tc.add_argument("name")
    tc.add_argument("--trust-domain", help="SPIFFE trust domain (default NAME.agentid.local)")

    orch = cmds.add_parser("orchestrator", help="manage orchestrators").add_subparsers(dest="sub", required=True, metavar="ACTION")
    oa = add("add", cmd_orchestrator_add, "register an orchestrator's public key and authority", orch)
    oa.add_argument("--tenant", required=True)
    oa.add_argument("--name", required=True)
    oa.add_argument("--public-key", help="PEM or JWK file; omitted: generate a key pair")
    oa.add_argument("--key-out", help="where to write a generated private key (PEM)")
    oa.add_argument("--tiers", default="standard", help="comma-separated tiers it may spawn")
    oa.add_argument("--purposes", default="", help="comma-separated purposes it may spawn")
    oa.add_argument("--data-classes", default="internal", help="comma-separated data classes")
    oa.add_argument("--max-lifetime", type=int, default=86_400, help="maximum agent lifetime (s)")
    oa.add_argument("--max-live", type=int, default=100, help="quota of live agents")

    bd = add("bundle", cmd_bundle, "print a tenant's SPIFFE trust bundle (JWKS)")
    bd.add_argument("--tenant", help="tenant (default: AGENTID_TENANT)")

    agent = cmds.add_parser("agent", help="inspect and revoke agents").add_subparsers(dest="sub", required=True, metavar="ACTION")
    al = add("list", cmd_agent_list, "list a tenant's agents", agent)
    al.add_argument("--tenant")
    al.add_argument("--status", choices=["active", "exited", "revoked", "expired"])
    al.add_argument("--limit", type=int, default=100)
    al.add_argument("--after", help="paging cursor from the previous page")
    al.add_argument("--json", action="store_true")
    ash = add("show", cmd_agent_show, "show one agent's identity and latest SVID", agent)
    ash.add_argument("id")
    ash.add_argument("--tenant")
    ar = add("revoke", cmd_agent_revoke, "kill switch: revoke an agent and all its sub-agents", agent)
    ar.add_argument("id")
    ar.add_argument("--tenant")
    ar.add_argument("--reason", default="revoked by operator")

    ca = cmds.add_parser("ca", help="tenant signing authorities").add_subparsers(dest="sub", required=True, metavar="ACTION")
    cr = add("rotate", cmd_ca_rotate, "rotate the tenant CA and JWT-SVID key (old ones overlap)", ca)
    cr.add_argument("--tenant")
    cr.add_argument("--reason", default="scheduled rotation")

    keyring = cmds.add_parser("keyring", help="deployment keys").add_subparsers(dest="sub", required=True, metavar="ACTION")
    kc = add("create", cmd_keyring_create, "create service and operator keys and a key-encryption key", keyring)
    kc.add_argument("--out", help="file (default: AGENTID_KEYRING or DATA_DIR/keyring.json)")
    kc.add_argument("--public", help="also write the public part (for clients) to this file")
    kc.add_argument("--operators", nargs="*", help="operator names (default: admin)")

    contracts = cmds.add_parser("contracts", help="wire contracts").add_subparsers(dest="sub", required=True, metavar="ACTION")
    ce = add("export", cmd_contracts_export, "regenerate JSON Schemas and the AsyncAPI document", contracts)
    ce.add_argument("--out", help="directory (default: the contracts package)")
    ce.add_argument("--check", action="store_true", help="only report whether the files are stale")
    return p


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.WARNING,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    from shared import telemetry

    telemetry.configure("agentid-cli")
    settings = Settings()
    try:
        return asyncio.run(args.fn(args, settings))
    except AgentidError as exc:
        print(f"error: {exc.code.value}: {exc.message}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
