"""Agent-signed artifacts: sign for scripts, verify offline, and the trust file verifiers need."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from agentid.cli.base import Add, group
from agentid.cli.identity import _tenant
from shared.config import Settings


async def cmd_artifact_sign(args: argparse.Namespace, settings: Settings) -> int:
    import mimetypes

    from agentid.agent import Agent
    from agentid.artifacts import sign
    from agentid.deployment import Deployment
    from agentid.keys import AgentKey
    from agentid.operator import load_keyring, locate, operator_bus
    from contracts import registration as reg
    from contracts import subjects as sub

    text = Path(args.key).read_text()
    key = AgentKey.from_pem(text) if "BEGIN" in text else AgentKey.from_jwk(json.loads(text))
    tenant = _tenant(args)
    target = locate(settings)
    keyring = load_keyring(settings)
    operator = await operator_bus(settings, target=target, keyring=keyring)
    try:
        identity = await operator.request(sub.GET_AGENT, tenant, reg.GetAgent(agent_id=args.agent_id))
    finally:
        await operator.drain()
    deployment = Deployment.from_json({"nats_url": target.nats_url, "nats_prefix": target.nats_prefix,
                                       "keyring": keyring.public()})
    agent = await Agent.connect(identity, key, deployment=deployment, renew=False)
    try:
        path = Path(args.file)
        media_type = args.media_type or mimetypes.guess_type(path.name)[0] or "application/octet-stream"
        bundle = await sign(agent, path.read_bytes(), media_type, name=path.name, purpose=args.purpose)
    finally:
        await agent.close()
    out = Path(args.out or f"{args.file}.bundle.json")
    out.write_text(json.dumps(bundle.to_json(), indent=2))
    print(f"signed by {identity.spiffe_id}; logged at index {bundle.inclusion_proof['leaf_index']}: {out}")  # type: ignore[index]
    return 0


async def cmd_artifact_verify(args: argparse.Namespace, settings: Settings) -> int:
    """Offline: exit 0 only when the bundle verifies; otherwise print the exact reason, exit 1."""
    from dataclasses import asdict

    from agentid.artifacts import ArtifactBundle, ArtifactError, Trust, verify

    bundle = ArtifactBundle.from_json(json.loads(Path(args.bundle).read_text()))
    trust = Trust.load(args.trust)
    try:
        result = await verify(bundle, Path(args.artifact).read_bytes(), trust)
    except ArtifactError as exc:
        print(json.dumps({"verified": False, "reason": exc.reason, "message": str(exc)}) if args.json
              else f"NOT VERIFIED ({exc.reason}): {exc}", file=sys.stdout)
        return 1
    if args.json:
        print(json.dumps({"verified": True, **asdict(result)}, indent=2))
    else:
        print(f"verified: {result.artifact_name} (sha256 {result.artifact_sha256})\n"
              f"  signed by {result.agent_spiffe_id} ({result.agent_did})\n"
              f"  with credential {result.credential_id} from {result.issuer}\n"
              f"  on behalf of {result.on_behalf_of or '-'}, purpose: {result.purpose}\n"
              f"  signed {result.signed_at}, logged {result.logged_at} at index {result.log_index}")
    return 0


async def cmd_artifact_trust(args: argparse.Namespace, settings: Settings) -> int:
    from agentid.artifacts import trust_for
    from agentid.operator import operator_bus

    bus = await operator_bus(settings)
    try:
        trust = await trust_for(bus, _tenant(args))
    finally:
        await bus.drain()
    text = json.dumps(trust.to_json(), indent=2)
    if args.out:
        Path(args.out).write_text(text)
        print(f"trust file written to {args.out}")
    else:
        print(text)
    return 0


def register(cmds: Any, add: Add) -> None:
    artifact = group(cmds, "artifact", "agent-signed artifacts (DSSE + in-toto, logged)")
    sg = add("sign", cmd_artifact_sign, "sign FILE as an agent; the signature is logged; writes a bundle", artifact)
    sg.add_argument("file")
    sg.add_argument("--agent-id", required=True)
    sg.add_argument("--key", required=True, help="the agent's private key (PEM or JWK)")
    sg.add_argument("--purpose", default="signed artifact")
    sg.add_argument("--media-type")
    sg.add_argument("--out", help="bundle file (default FILE.bundle.json)")
    sg.add_argument("--tenant")
    vf = add("verify", cmd_artifact_verify, "verify a bundle offline: who signed what, for whom, when", artifact)
    vf.add_argument("bundle")
    vf.add_argument("--artifact", required=True)
    vf.add_argument("--trust", required=True, help="trusted issuers and log keys (see `artifact trust`)")
    vf.add_argument("--json", action="store_true")
    tr = add("trust", cmd_artifact_trust, "write the trust file relying parties verify against", artifact)
    tr.add_argument("--tenant")
    tr.add_argument("--out")
