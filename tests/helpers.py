"""Test harness: a running stack, an operator connection, tenants, orchestrators and raw access."""

from __future__ import annotations

import asyncio
import json
import secrets
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Any

import asyncpg
import msgspec
from nats.aio.client import Client as NATS
from nats.js.api import DeliverPolicy

from agentid.agent import Agent
from agentid.deployment import Deployment
from agentid.keys import AgentKey
from agentid.orchestrator import Orchestrator
from contracts import headers as H
from contracts import registration as reg
from contracts import subjects as sub
from contracts import tokens as tok
from contracts.errors import Error
from services.stack import Stack
from shared.bus import Bus
from shared.bus.client import stream_name
from shared.config import Settings
from shared.keyring import Keyring
from shared.keys import PrivateKey

@asynccontextmanager
async def scratch_database(admin_url: str, prefix: str) -> AsyncIterator[str]:
    """A new database on the test server, named `prefix` + random hex; its URL while the block
    runs, dropped (with any connection left to it) afterwards."""
    name = f"{prefix}{secrets.token_hex(4)}"
    conn = await asyncpg.connect(admin_url)
    try:
        await conn.execute(f'CREATE DATABASE "{name}"')
    finally:
        await conn.close()
    try:
        yield f"{admin_url.rpartition('/')[0]}/{name}"
    finally:
        conn = await asyncpg.connect(admin_url)
        try:
            await conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        finally:
            await conn.close()


DEFAULT_AUTHORITY = reg.Authority(
    tiers=["standard", "high"], purposes=["testing", "loan-decisions"],
    data_classes=["public", "internal", "confidential"], max_lifetime_s=3600, max_live_agents=50)

SPAWN_FIELDS: dict[str, Any] = dict(
    purpose="testing", tier="standard", data_class="internal",
    model={"name": "test-llm", "version": "1.0", "digest": "sha256:" + "00" * 32},
    tools=[{"name": "calculator", "version": "1.0"}],
    controller={"type": "user", "id": "alice@example.com"},
)


LEDGER_TYPE = {
    "type": "object",
    "required": ["type", "locations", "actions"],
    "properties": {
        "type": {"const": "ledger"},
        "locations": {"type": "array", "items": {"type": "string", "pattern": "^https://ledger\\.example/"}},
        "actions": {"type": "array", "items": {"enum": ["read", "write", "pay"]}},
    },
}
TOKEN_CONFIG = tok.TokenConfig(detail_types={"ledger": LEDGER_TYPE},
                               audiences=["https://ledger.example", "https://tools.example/*"])
PERMIT_STANDARD = """
@id("standard-agents-read-the-ledger")
permit(principal is Agent, action == Action::"read", resource)
when { resource.type == "ledger" && principal.tier == "standard" };
"""


def ledger(actions: list[str] | None = None, path: str = "/accounts/42", **extra: Any) -> dict[str, Any]:
    return {"type": "ledger", "locations": [f"https://ledger.example{path}"], "actions": actions or ["read"], **extra}


def subject_matches(pattern: str, subject: str) -> bool:
    """NATS subject matching: `*` one token, `>` one or more at the end."""
    p, s = pattern.split("."), subject.split(".")
    for i, token in enumerate(p):
        if token == ">":
            return len(s) > i
        if i >= len(s) or (token != "*" and token != s[i]):
            return False
    return len(p) == len(s)


async def eventually(check: Callable[[], Awaitable[bool]], timeout: float = 10.0,
                     interval: float = 0.05) -> None:
    """Wait until `check()` holds; fail after `timeout`. For outcomes with no event to wait on."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not await check():
        if loop.time() > deadline:
            raise AssertionError("condition not met in time")
        await asyncio.sleep(interval)


class Harness:
    def __init__(self, settings: Settings, keyring: Keyring, *, workers: list[str] | None = None) -> None:
        self.settings = settings
        self.keyring = keyring
        self.stack = Stack(settings, workers=workers)
        self.operator: Bus
        self.db: asyncpg.Pool
        self.nc: NATS

    @property
    def root(self) -> str:
        return self.settings.nats_prefix

    @property
    def deployment(self) -> Deployment:
        return Deployment.from_json({"nats_url": self.settings.nats_url, "nats_prefix": self.root,
                                     "keyring": self.keyring.public()})

    async def __aenter__(self) -> Harness:
        await self.stack.start()
        self.operator = await Bus.connect(self.settings.nats_url or "", name="test-operator",
                                          signer=self.keyring.signer("operator", "admin"),
                                          registry=self.keyring.registry(), root=self.root)
        self.nc = self.operator.nc
        self.db = await asyncpg.create_pool(self.settings.database_url, min_size=1, max_size=4)
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.db.close()
        await self.stack.stop()
        # The session's stream and buckets live on a server other runs may share: remove them.
        js = self.nc.jetstream()
        for name in (stream_name(self.root), f"KV_{self.root}_replay", f"KV_{self.root}_gateway_dpop"):
            try:
                await js.delete_stream(name)
            except Exception:
                pass
        await self.operator.drain()

    # -- parties -------------------------------------------------------------------------------
    async def new_tenant(self) -> str:
        tenant = f"t{secrets.token_hex(5)}"
        await self.operator.request(sub.CREATE_TENANT, tenant, reg.CreateTenant())
        return tenant

    async def new_agent(self, orch: Orchestrator, *, alg: str = "EdDSA", **fields: Any) -> tuple[Agent, AgentKey]:
        """Spawn an agent and connect as it (no background renewal unless asked)."""
        key = AgentKey.generate(alg)  # type: ignore[arg-type]
        identity = await orch.spawn(key, **{**SPAWN_FIELDS, **fields})
        return await Agent.connect(identity, key, deployment=self.deployment, renew=False), key

    async def token_rules(self, tenant: str, policy: str | None = PERMIT_STANDARD,
                          config: tok.TokenConfig = TOKEN_CONFIG) -> None:
        """The tenant's token configuration and (unless None: default deny) its policy."""
        await self.operator.request(sub.TOKEN_CONFIG_SET, tenant, tok.SetTokenConfig(config=config))
        if policy is not None:
            await self.operator.request(sub.POLICY_SET, tenant, tok.SetPolicy(policies=policy))

    async def new_orchestrator(self, tenant: str, authority: reg.Authority = DEFAULT_AUTHORITY,
                               ) -> tuple[Orchestrator, reg.OrchestratorRecord, PrivateKey]:
        key = PrivateKey.generate()
        record = await self.operator.request(sub.ADD_ORCHESTRATOR, tenant, reg.AddOrchestrator(
            name=f"orch-{secrets.token_hex(3)}", public_jwk=key.public.jwk(), authority=authority))
        orch = await Orchestrator.connect(tenant=tenant, orchestrator_id=record.orchestrator_id,
                                          spiffe_id=record.spiffe_id, key=key, deployment=self.deployment)
        return orch, record, key

    # -- raw access ----------------------------------------------------------------------------
    async def raw_request(self, subject: str, payload: bytes, headers: dict[str, str] | None,
                          timeout: float = 5.0) -> tuple[str | None, Any]:
        """Send bytes as they are; returns (error code or None, decoded JSON body)."""
        msg = await self.nc.request(subject, payload, headers=headers, timeout=timeout)
        body = json.loads(msg.data)
        code = (msg.headers or {}).get(H.ERROR)
        if code:
            msgspec.convert(body, Error)  # error replies are well-formed errors
        return code, body

    async def count(self, sql: str, *args: Any) -> int:
        return int(await self.db.fetchval(sql, *args))

    async def event_count(self, subject: str) -> int:
        """How many events the stream holds on `subject` (wildcards allowed)."""
        info = await self.nc.jetstream().stream_info(stream_name(self.root), subjects_filter=subject)
        return sum((info.state.subjects or {}).values())

    async def next_events(self, subject: str, n: int = 1, timeout: float = 10.0) -> list[Any]:
        """The first `n` events on `subject`, reading the stream from its start."""
        js = self.nc.jetstream()
        sub_ = await js.subscribe(subject, ordered_consumer=True, deliver_policy=DeliverPolicy.ALL)
        try:
            return [await sub_.next_msg(timeout=timeout) for _ in range(n)]
        finally:
            await sub_.unsubscribe()
