"""Run one, several or all workers in one process, each supervised in its own TaskGroup.

SIGTERM and Ctrl-C set one stop event: every worker stops taking work, finishes what is in
flight (within its grace period), flushes its outbox and drains its connection, then the process
exits. A worker that fails (its database or NATS unreachable at start) is restarted with backoff.
"""

from __future__ import annotations

import asyncio
import importlib
import logging
import signal
from collections.abc import Sequence

from shared.config import Settings
from shared.keyring import Keyring
from shared.worker import Worker

log = logging.getLogger(__name__)

# name -> "module:Class"; imported lazily so `agentid worker token` loads only the token worker.
WORKERS: dict[str, str] = {
    "registration": "services.registration.worker:RegistrationWorker",
    "issuance": "services.issuance.worker:IssuanceWorker",
    "token": "services.token.worker:TokenWorker",
    "delegation": "services.delegation.worker:DelegationWorker",
    "attestation": "services.attestation.worker:AttestationWorker",
    "audit": "services.audit.worker:AuditWorker",
    "gateway": "services.gateway.worker:GatewayWorker",  # stateless HTTP edge; no database
}


def worker_class(name: str) -> type[Worker]:
    try:
        module, cls = WORKERS[name].split(":")
    except KeyError:
        raise ValueError(f"unknown worker {name!r}; known: {', '.join(WORKERS)}") from None
    return getattr(importlib.import_module(module), cls)


def build(names: Sequence[str], settings: Settings, keyring: Keyring, *, nats_url: str,
          database_url: str) -> list[Worker]:
    return [worker_class(n)(settings, keyring, nats_url=nats_url, database_url=database_url)
            for n in names]


async def supervise(worker: Worker, stop: asyncio.Event) -> None:
    delay = 0.5
    while not stop.is_set():
        try:
            async with asyncio.TaskGroup() as tg:
                tg.create_task(worker.run(stop))
            return
        except* Exception as group:  # noqa: B902 - log every failure of this worker's group
            for exc in group.exceptions:
                log.error("worker %s failed: %s: %s", worker.name, type(exc).__name__, exc)
        worker.ready.clear()
        try:
            await asyncio.wait_for(stop.wait(), timeout=delay)
        except asyncio.TimeoutError:
            delay = min(delay * 2, 10.0)


async def run(workers: Sequence[Worker], stop: asyncio.Event) -> None:
    async with asyncio.TaskGroup() as tg:
        for worker in workers:
            tg.create_task(supervise(worker, stop))


async def wait_ready(workers: Sequence[Worker], timeout: float = 60.0) -> None:
    await asyncio.wait_for(asyncio.gather(*(w.ready.wait() for w in workers)), timeout)


def stop_on_signals(stop: asyncio.Event) -> None:
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
