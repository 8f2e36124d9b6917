"""Operating identities: tenants, orchestrators, agents, bundles, CAs, keyrings."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from agentid.cli.base import Add, group
from shared.config import Settings


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
        max_lifetime_s=args.max_lifetime, max_live_agents=args.max_live, spawns_per_minute=args.spawns_per_minute)
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


async def cmd_orchestrator_revoke(args: argparse.Namespace, settings: Settings) -> int:
    """After a compromise: the orchestrator's key is refused and everything it spawned is revoked;
    credentials, delegations and tokens follow from the agents' exit events."""
    from contracts import registration as reg
    from contracts import subjects as sub

    result = await _operator_request(settings, sub.REVOKE_ORCHESTRATOR, _tenant(args),
                                     reg.RevokeOrchestrator(orchestrator_id=args.id, reason=args.reason))
    print(f"orchestrator {result.orchestrator_id} revoked; {result.count} agents revoked with it")
    for agent_id in result.revoked_agents:
        print(f"  revoked {agent_id}")
    return 0


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


def _csv(value: str | None) -> list[str]:
    return [v.strip() for v in (value or "").split(",") if v.strip()]


def register(cmds: Any, add: Add) -> None:
    tenant = group(cmds, "tenant", "manage tenants")
    tc = add("create", cmd_tenant_create, "create a tenant", tenant)
    tc.add_argument("name")
    tc.add_argument("--trust-domain", help="SPIFFE trust domain (default NAME.agentid.local)")

    orch = group(cmds, "orchestrator", "manage orchestrators")
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
    oa.add_argument("--spawns-per-minute", type=int, default=600, help="spawn rate limit (burst: a tenth)")

    orv = add("revoke", cmd_orchestrator_revoke, "compromised: refuse its key, revoke every agent it spawned", orch)
    orv.add_argument("id")
    orv.add_argument("--tenant")
    orv.add_argument("--reason", default="orchestrator compromised")

    bd = add("bundle", cmd_bundle, "print a tenant's SPIFFE trust bundle (JWKS)")
    bd.add_argument("--tenant", help="tenant (default: AGENTID_TENANT)")

    agent = group(cmds, "agent", "inspect and revoke agents")
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

    ca = group(cmds, "ca", "tenant signing authorities")
    cr = add("rotate", cmd_ca_rotate, "rotate the tenant CA and JWT-SVID key (old ones overlap)", ca)
    cr.add_argument("--tenant")
    cr.add_argument("--reason", default="scheduled rotation")

    keyring = group(cmds, "keyring", "deployment keys")
    kc = add("create", cmd_keyring_create, "create service and operator keys and a key-encryption key", keyring)
    kc.add_argument("--out", help="file (default: AGENTID_KEYRING or DATA_DIR/keyring.json)")
    kc.add_argument("--public", help="also write the public part (for clients) to this file")
    kc.add_argument("--operators", nargs="*", help="operator names (default: admin)")
