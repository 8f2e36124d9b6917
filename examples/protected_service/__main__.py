"""Run the example ledger: `python -m examples.protected_service --issuer ... --jwks-url ...`.

With `--deployment` (the `deployment.json` that `agentid up` writes), the ledger also follows the
tenant's revocations over NATS and shares its DPoP replay cache with other replicas (NATS KV).
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import json
import logging
from pathlib import Path
from typing import Any

import nats
import uvicorn

from agentid.deployment import Deployment
from agentid.jwks import HttpJwks, StaticJwks
from agentid.revocation import RevocationFeed
from agentid.verifier import Verifier
from examples.protected_service.app import RESOURCE, create_app
from shared.dpop import KvReplayCache, MemoryReplayCache


def _args() -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m examples.protected_service", description=__doc__)
    p.add_argument("--issuer", required=True, help="token issuer, e.g. http://127.0.0.1:8080/tenants/acme")
    keys = p.add_mutually_exclusive_group(required=True)
    keys.add_argument("--jwks-url", help="the issuer's JWKS URL (refetched on rotation)")
    keys.add_argument("--jwks-file", help="a JWKS saved with `agentid jwks --tenant T` (fixed keys)")
    p.add_argument("--audience", default=RESOURCE, help=f"this resource server's identifier ({RESOURCE})")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=8081)
    p.add_argument("--base-url", help="the URL clients use for this service (default http://HOST:PORT)")
    p.add_argument("--deployment", help="deployment.json: follow revocations and share the replay cache")
    p.add_argument("--max-disconnected", type=float, default=30.0,
                   help="seconds without NATS after which every token is refused")
    return p.parse_args()


async def main() -> None:
    args = _args()
    base_url = args.base_url or f"http://{args.host}:{args.port}"
    nc: Any = None

    async def make_verifier() -> Verifier:
        nonlocal nc
        replay: Any = MemoryReplayCache()
        feed = None
        tenant = args.issuer.rstrip("/").rsplit("/", 1)[-1]
        if args.deployment:
            deployment = Deployment.load(args.deployment)
            nc = await nats.connect(deployment.nats_url, name="example-ledger", max_reconnect_attempts=-1)
            feed = RevocationFeed.from_deployment(nc, deployment, tenant,
                                                  max_disconnected_s=args.max_disconnected)
            bucket = f"{deployment.nats_prefix}_dpop_{hashlib.sha256(args.audience.encode()).hexdigest()[:16]}"
            replay = await KvReplayCache.open(nc, bucket)
        jwks: Any = HttpJwks(args.jwks_url) if args.jwks_url else StaticJwks(json.loads(Path(args.jwks_file).read_text()))
        verifier = Verifier(issuer=args.issuer, audience=args.audience, jwks=jwks,
                            replay=replay, revocations=feed)
        await verifier.start()
        return verifier

    app = create_app(make_verifier, base_url=base_url, authorization_servers=[args.issuer])
    server = uvicorn.Server(uvicorn.Config(app, host=args.host, port=args.port, lifespan="on"))
    try:
        await server.serve()
    finally:
        if nc is not None:
            await nc.drain()


if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO)
    asyncio.run(main())
