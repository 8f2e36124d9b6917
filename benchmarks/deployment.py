"""The deployment under test: servers and workers, in one of two layouts.

- `processes` (what the targets are about): the token worker runs as N separate OS processes in
  its queue group (default: one per core), the other workers in one more process, each started
  as `python -m agentid.cli worker NAME...`, exactly as an operator would run them;
- `inprocess`: every worker in the bench process (`services.stack.Stack`), as `agentid up` does.

Servers are the configured ones (`AGENTID_NATS_URL`, `AGENTID_DATABASE_URL`) or embedded ones
under the bench's data directory; embedded Postgres runs durable (fsync and synchronous commit
on), because "every record durable" is part of the figure. Each bench uses its own subject
prefix, so it never meets another deployment's workers on a shared NATS. Worker processes get the
URLs, the data directory and the prefix, plus the replay backend, concurrency and pool size of the
bench's settings (so `AGENTID_REPLAY_BACKEND=memory agentid bench` measures that choice); no
other `AGENTID_*` variable is passed on, so runs compare.
"""

from __future__ import annotations

import asyncio
import json
import os
import secrets
import sys
from pathlib import Path
from typing import Any

from services import runner
from services.stack import Stack
from shared.config import Settings
from shared.embedded import EmbeddedNats, EmbeddedPostgres, free_port
from shared.keyring import Keyring

# The bus workers besides token. The HTTP gateway serves no scenario here, so it does not run.
OTHER_WORKERS = [name for name in runner.WORKERS if name not in ("token", "gateway")]
LAYOUTS = ("processes", "inprocess")


class Deployment:
    def __init__(self, settings: Settings, data_dir: Path, *, layout: str = "processes",
                 token_workers: int | None = None, token_command: list[str] | None = None) -> None:
        """`token_command` runs the token worker processes instead of `agentid worker token` (a
        diagnostic wrapper that times steps, `benchmarks.steps`)."""
        if layout not in LAYOUTS:
            raise ValueError(f"layout is one of {', '.join(LAYOUTS)}")
        self.layout = layout
        self.token_workers = token_workers or os.cpu_count() or 1
        self.data_dir = data_dir
        port = free_port()
        self.settings = settings.model_copy(update={
            "data_dir": data_dir, "nats_prefix": f"bench{secrets.token_hex(3)}", "keyring": None,
            "http_port": port, "public_url": settings.public_url or f"http://127.0.0.1:{port}"})
        self.nats: EmbeddedNats | None = None
        self.postgres: EmbeddedPostgres | None = None
        self.nats_url = settings.nats_url or ""
        self.database_url = settings.database_url or ""
        self.keyring: Keyring
        self.stack: Stack | None = None
        self.procs: dict[str, list[asyncio.subprocess.Process]] = {"token": [], "others": []}
        self.token_command = token_command

    @property
    def root(self) -> str:
        return self.settings.nats_prefix

    @property
    def own_postgres(self) -> bool:
        """Whether Postgres is the bench's own (embedded, thrown away after the run)."""
        return self.postgres is not None

    # -- lifecycle -------------------------------------------------------------------------------
    async def start(self) -> None:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        starting = []
        if not self.nats_url:
            self.nats = EmbeddedNats(self.data_dir / "nats")
            starting.append(self.nats.start())
        if not self.database_url:
            self.postgres = EmbeddedPostgres(self.data_dir / "postgres", durable=True)
            starting.append(self.postgres.start())
        await asyncio.gather(*starting)
        self.nats_url = self.nats.url if self.nats else self.nats_url
        self.database_url = self.postgres.url if self.postgres else self.database_url
        update: dict[str, Any] = {"nats_url": self.nats_url, "database_url": self.database_url}
        if self.postgres is not None and not self.settings.idp_insecure_hosts:
            update["idp_insecure_hosts"] = ["127.0.0.1"]  # the local test IdP of the exchange scenario
        self.settings = self.settings.model_copy(update=update)
        self.keyring = Keyring.load_or_create(self.settings.keyring_path)
        if self.layout == "inprocess":
            self.stack = Stack(self.settings, workers=["token", *OTHER_WORKERS], durable=True, write_files=False)
            await self.stack.start()
            return
        # Registration first, so the token replicas' directories have someone to ask.
        others = await self._spawn("others", OTHER_WORKERS)
        self.procs["others"] = [others]
        await self._ready("others", OTHER_WORKERS, others)
        self.procs["token"] = [await self._spawn(f"token-{i}", ["token"], self.token_command)
                               for i in range(self.token_workers)]
        for i, proc in enumerate(self.procs["token"]):
            await self._ready(f"token-{i}", ["token"], proc)

    def _env(self) -> dict[str, str]:
        s = self.settings
        env = {k: v for k, v in os.environ.items() if not k.startswith("AGENTID_")}
        env.update({"AGENTID_NATS_URL": self.nats_url, "AGENTID_DATABASE_URL": self.database_url,
                    "AGENTID_DATA_DIR": str(self.data_dir), "AGENTID_NATS_PREFIX": s.nats_prefix,
                    "AGENTID_PUBLIC_URL": s.base_url(), "AGENTID_HTTP_PORT": str(s.http_port),
                    "AGENTID_IDP_INSECURE_HOSTS": json.dumps(s.idp_insecure_hosts),
                    "AGENTID_REPLAY_BACKEND": s.replay_backend, "AGENTID_CONCURRENCY": str(s.concurrency),
                    "AGENTID_DB_POOL_SIZE": str(s.db_pool_size)})
        return env

    def log_path(self, label: str) -> Path:
        return self.data_dir / f"worker-{label}.log"

    async def _spawn(self, label: str, names: list[str], command: list[str] | None = None,
                     ) -> asyncio.subprocess.Process:
        command = command or [sys.executable, "-m", "agentid.cli", "worker"]
        with open(self.log_path(label), "ab") as log:  # noqa: ASYNC230 - a local log file, opened once
            return await asyncio.create_subprocess_exec(
                *command, *names, env={**self._env(), "AGENTID_BENCH_LABEL": label},
                stdin=asyncio.subprocess.DEVNULL, stdout=log, stderr=log)

    async def _ready(self, label: str, names: list[str], proc: asyncio.subprocess.Process,
                     timeout: float = 90.0) -> None:
        """Wait for each worker's "ready" log line (set once it has subscribed to its subjects)."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while True:
            text = self.log_path(label).read_text(errors="replace")
            if all(f"{name} worker ready" in text for name in names):
                return
            if proc.returncode is not None or loop.time() > deadline:
                raise RuntimeError(f"workers {names} did not start; see {self.log_path(label)}")
            await asyncio.sleep(0.1)

    async def stop(self) -> None:
        for proc in [p for group in self.procs.values() for p in group]:
            if proc.returncode is None:
                proc.terminate()  # SIGTERM: drain in-flight work, flush the outbox, exit
        for proc in [p for group in self.procs.values() for p in group]:
            try:
                await asyncio.wait_for(proc.wait(), 30)
            except TimeoutError:
                proc.kill()
                await proc.wait()
        if self.stack is not None:
            await self.stack.stop()
        await self._forget_streams()
        await asyncio.gather(*(s.stop() for s in (self.nats, self.postgres) if s is not None))

    async def _forget_streams(self) -> None:
        """On a shared NATS, remove this bench's stream and replay bucket (embedded ones go anyway)."""
        if self.nats is not None or not self.nats_url:
            return
        import nats

        from shared.bus.client import stream_name

        nc = await nats.connect(self.nats_url)
        try:
            js = nc.jetstream()
            for name in (stream_name(self.root), f"KV_{self.root}_replay"):
                try:
                    await js.delete_stream(name)
                except Exception:  # noqa: BLE001, S110 - already gone, or never made
                    pass
        finally:
            await nc.close()

    async def __aenter__(self) -> Deployment:
        try:
            await self.start()
        except BaseException:
            await self.stop()
            raise
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    # -- what the report and the CPU split need ----------------------------------------------------
    def pids(self) -> dict[str, list[int]]:
        groups = {"bench": [os.getpid()]}
        if self.layout == "processes":
            groups["token_workers"] = [p.pid for p in self.procs["token"]]
            groups["other_workers"] = [p.pid for p in self.procs["others"]]
        if self.nats is not None and self.nats.proc is not None:
            groups["nats_server"] = [self.nats.proc.pid]
        if self.postgres is not None and self.postgres.proc is not None:
            groups["postgres"] = [self.postgres.proc.pid]
        return groups
