"""The system under fault: a nats-server, a Postgres and the six workers, each a real process.

The servers keep their port and data directory across restarts (JetStream on a file store,
Postgres with fsync on), so a restart is the same server coming back. Each worker runs as
`python -m agentid.cli worker NAME` and reaches NATS and Postgres only through TCP proxies of
its own, so the test can cut one worker off from either while everything else carries on.
The test's own parties (operator, orchestrator, agents) talk to NATS directly.
"""

from __future__ import annotations

import asyncio
import ctypes
import os
import signal
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from contracts import attestation as att
from contracts import audit as au
from contracts import delegation as dlg
from contracts import issuance as iss
from contracts import registration as reg
from contracts import subjects as sub
from contracts import tokens as tok
from shared.bus import Bus
from shared.embedded import EmbeddedNats, EmbeddedPostgres
from shared.errors import AgentidError, Unavailable
from shared.keyring import Keyring
from tests.faults.tcp_proxy import TcpProxy
from tests.helpers import eventually

WORKER_NAMES = ("registration", "issuance", "token", "delegation", "attestation", "audit")

# One cheap read per worker that touches its database: answered (with a result or a typed refusal
# other than `unavailable`) means the worker is up, subscribed and reaches Postgres.
PROBES: dict[str, tuple[sub.Route[Any, Any], Any]] = {
    "registration": (sub.GET_AGENT, reg.GetAgent(agent_id="agt_probe")),
    "issuance": (sub.GET_CREDENTIAL, iss.GetCredential(agent_id="agt_probe")),
    "token": (sub.TOKEN_CONFIG_GET, tok.GetTokenConfig()),
    "delegation": (sub.DELEGATION_CONFIG_GET, dlg.GetDelegationConfig()),
    "attestation": (sub.LIST_REFERENCE_VALUES, att.ListReferenceValues()),
    "audit": (sub.AUDIT_CHECKPOINT, au.GetCheckpoint()),
}


@dataclass
class WorkerProcess:
    name: str
    nats: TcpProxy
    postgres: TcpProxy
    proc: asyncio.subprocess.Process | None = None
    starts: int = 0
    exits: list[int] = field(default_factory=list)


class Cluster:
    def __init__(self, base: Path, *, prefix: str, tenant: str, env: dict[str, str]) -> None:
        self.base = base
        self.prefix = prefix
        self.tenant = tenant  # the tenant the readiness probes ask in
        self.extra_env = env
        self.nats = EmbeddedNats(base / "nats")
        self.postgres = EmbeddedPostgres(base / "pg", durable=True)
        self.keyring = Keyring.generate()
        self.data_dir = base / "agentid"
        self.workers: dict[str, WorkerProcess] = {}
        self.operator: Bus

    # -- servers -----------------------------------------------------------------------------
    async def start_servers(self) -> None:
        await asyncio.gather(self.nats.start(), self.postgres.start())
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self.keyring.save(self.data_dir / "keyring.json")
        for name in WORKER_NAMES:
            w = WorkerProcess(name, TcpProxy(self.nats.port), TcpProxy(self.postgres.port))
            await w.nats.start()
            await w.postgres.start()
            self.workers[name] = w
        self.operator = await Bus.connect(self.nats.url, name="fault-operator",
                                          signer=self.keyring.signer("operator", "admin"),
                                          registry=self.keyring.registry(), root=self.prefix)

    async def restart_nats(self, down_for_s: float) -> None:
        """Stop the server (every connection drops), leave it down a while, start it again."""
        await self.nats.stop()
        await asyncio.sleep(down_for_s)
        await self.nats.start()

    async def restart_postgres(self, down_for_s: float) -> None:
        await self.postgres.stop()  # a fast shutdown: sessions are ended, open transactions rolled back
        await asyncio.sleep(down_for_s)
        await self.postgres.start()

    @property
    def database_url(self) -> str:
        return self.postgres.url

    # -- workers -----------------------------------------------------------------------------
    def _env(self, w: WorkerProcess) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("AGENTID_")}
        env.update({
            "AGENTID_NATS_URL": f"nats://127.0.0.1:{w.nats.port}",
            "AGENTID_DATABASE_URL": f"postgresql://postgres@127.0.0.1:{w.postgres.port}/{self.postgres.database}",
            "AGENTID_NATS_PREFIX": self.prefix, "AGENTID_DATA_DIR": str(self.data_dir),
            "OTEL_SDK_DISABLED": "true", **self.extra_env})
        return env

    async def start_worker(self, name: str) -> None:
        w = self.workers[name]
        with (self.base / f"{name}-{w.starts}.log").open("wb") as log:  # the child keeps its own copy
            w.proc = await asyncio.create_subprocess_exec(
                sys.executable, "-m", "agentid.cli", "worker", name, env=self._env(w), stdout=log, stderr=log,
                preexec_fn=_die_with_parent)
        w.starts += 1
        await self.wait_answering(name)

    async def kill_worker(self, name: str) -> None:
        """kill -9: no drain, no outbox flush, deliveries in flight unacknowledged."""
        w = self.workers[name]
        assert w.proc is not None and w.proc.returncode is None, f"{name} is not running"
        w.proc.kill()
        w.exits.append(await w.proc.wait())

    async def answering(self, name: str) -> bool:
        route, body = PROBES[name]
        try:
            await self.operator.request(route, self.tenant, body, timeout=1.0)
        except Unavailable:
            return False
        except AgentidError:
            return True  # a typed refusal (no such agent, no checkpoint yet): it answered
        return True

    async def wait_answering(self, name: str, timeout: float = 60.0) -> None:
        w = self.workers[name]

        async def up() -> bool:
            if w.proc is not None and w.proc.returncode is not None:
                raise AssertionError(f"worker {name} exited with {w.proc.returncode}: see {self.base}/{name}-*.log")
            return await self.answering(name)

        try:
            await eventually(up, timeout=timeout, interval=0.1)
        except AssertionError:
            raise AssertionError(f"worker {name} did not answer within {timeout:.0f}s: "
                                 f"see {self.base}/{name}-*.log") from None

    async def wait_all_answering(self, timeout: float = 60.0) -> None:
        await asyncio.gather(*(self.wait_answering(n, timeout) for n in WORKER_NAMES))

    # -- the end -----------------------------------------------------------------------------
    async def close(self) -> None:
        for w in self.workers.values():
            if w.proc is not None and w.proc.returncode is None:
                w.proc.terminate()
                try:
                    await asyncio.wait_for(w.proc.wait(), 15)
                except TimeoutError:
                    w.proc.kill()
                    await w.proc.wait()
        if hasattr(self, "operator"):
            await self.operator.close()
        for w in self.workers.values():
            await w.nats.stop()
            await w.postgres.stop()
        await asyncio.gather(self.nats.stop(), self.postgres.stop())


def _die_with_parent() -> None:
    """In the child, before exec: if the test process dies abruptly, its workers die with it
    rather than linger, reconnecting for ever to servers that are gone (Linux PR_SET_PDEATHSIG)."""
    ctypes.CDLL(None).prctl(1, signal.SIGKILL)
