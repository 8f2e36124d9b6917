"""A whole agentid stack in one process: embedded servers where no URL is given, every worker.

Used by `agentid up`, by `agentid demo` when nothing is running, and by the end-to-end tests.
It writes two files into the data directory:
- `deployment.json` (public): NATS URL, subject prefix, gateway URL and the services' public keys,
  everything an orchestrator, agent or resource server needs to talk to and trust this deployment;
- `stack.json` (0600): the running process and its database URL, for `agentid status` and
  `agentid worker`.
"""

from __future__ import annotations

import asyncio
import json
import os
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from services import runner
from shared.config import Settings
from shared.embedded import EmbeddedNats, EmbeddedPostgres, free_port
from shared.keyring import Keyring
from shared.worker import Worker


def write_private(path: Path, doc: dict[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        json.dump(doc, f, indent=2)
    os.replace(tmp, path)


def read_stack(settings: Settings) -> dict[str, Any] | None:
    """The running stack's record, if its process is still alive."""
    path = settings.data_dir / "stack.json"
    try:
        doc = json.loads(path.read_text())
        os.kill(int(doc["pid"]), 0)
    except (OSError, ValueError, KeyError):
        return None
    return doc


class Stack:
    def __init__(self, settings: Settings, *, workers: Sequence[str] | None = None,
                 durable: bool = True, write_files: bool = True) -> None:
        self.settings = settings
        self.names = list(workers or runner.WORKERS)
        self.durable = durable
        self.write_files = write_files
        self.nats: EmbeddedNats | None = None
        self.postgres: EmbeddedPostgres | None = None
        self.keyring: Keyring
        self.workers: list[Worker] = []
        self.nats_url = settings.nats_url or ""
        self.database_url = settings.database_url or ""
        self._stop = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        # The gateway's port and public URL are fixed before any worker starts: credentials and
        # tokens carry URLs under it.
        port = self.settings.http_port or free_port()
        update: dict[str, Any] = {"http_port": port, "public_url": self.settings.public_url or f"http://127.0.0.1:{port}"}
        if not (self.settings.nats_url or self.settings.database_url or self.settings.idp_insecure_hosts):
            # A fully embedded stack is a local development stack: let it trust a local test IdP.
            update["idp_insecure_hosts"] = ["127.0.0.1"]
        self.settings = self.settings.model_copy(update=update)
        s = self.settings
        s.data_dir.mkdir(parents=True, exist_ok=True)
        starting = []
        if not s.nats_url:
            self.nats = EmbeddedNats(s.data_dir / "nats")
            starting.append(self.nats.start())
        if not s.database_url:
            self.postgres = EmbeddedPostgres(s.data_dir / "postgres", durable=self.durable)
            starting.append(self.postgres.start())
        await asyncio.gather(*starting)
        if self.nats:
            self.nats_url = self.nats.url
        if self.postgres:
            self.database_url = self.postgres.url
        self.keyring = Keyring.load_or_create(s.keyring_path)
        self.workers = runner.build(self.names, s, self.keyring, nats_url=self.nats_url,
                                    database_url=self.database_url)
        self._task = asyncio.create_task(runner.run(self.workers, self._stop))
        await runner.wait_ready(self.workers)
        if self.write_files:
            self._write_files()

    @property
    def http_url(self) -> str | None:
        """The gateway's public base URL (tenant issuers are `<http_url>/tenants/<tenant>`), when
        this stack runs the gateway."""
        return self.settings.base_url() if "gateway" in self.names else None

    def deployment(self) -> dict[str, Any]:
        return {"nats_url": self.nats_url, "nats_prefix": self.settings.nats_prefix,
                "http_url": self.http_url, "keyring": self.keyring.public()}

    def _write_files(self) -> None:
        s = self.settings
        write_private(s.deployment_path, self.deployment())
        s.deployment_path.chmod(0o644)
        write_private(s.data_dir / "stack.json", {
            "pid": os.getpid(), "nats_url": self.nats_url, "database_url": self.database_url,
            "nats_prefix": s.nats_prefix, "http_url": self.http_url, "workers": self.names,
            "embedded": {"nats": self.nats is not None, "postgres": self.postgres is not None},
            "started_at": datetime.now(UTC).isoformat(),
        })

    async def stop(self) -> None:
        self._stop.set()
        if self._task is not None:
            await self._task
        if self.write_files:
            (self.settings.data_dir / "stack.json").unlink(missing_ok=True)
        await asyncio.gather(*(srv.stop() for srv in (self.nats, self.postgres) if srv is not None))

    async def wait(self) -> None:
        await self._stop.wait()

    @property
    def stop_event(self) -> asyncio.Event:
        """Set it (or send SIGTERM with `runner.stop_on_signals`) to stop the stack."""
        return self._stop

    async def __aenter__(self) -> Stack:
        try:
            await self.start()
        except BaseException:
            await self.stop()
            raise
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()
