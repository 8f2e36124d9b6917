"""Where a `token.issue` request's wall time goes, step by step (a diagnostic, not a scenario).

    python -m benchmarks.steps [--count 500] [--concurrency 1] [--layout processes|inprocess]

It starts the deployment the bench uses, with the functions of the issue path wrapped in timers
(inside the token worker processes too: they run through this module, which installs the timers
and then runs `agentid worker token`), sends `count` grants at `concurrency` in flight and prints
the mean and median wall time of each step beside the end-to-end latency. The wrapping exists
for this measurement only; worker code is untouched.

Steps nest (the envelope check holds the directory query), and a step's wall time includes any
wait for its process's event loop, so the shares are a map of the path, not a sum. Per-batch
steps (the group commit transaction, the relay flush) are counted per call, shared by the grants
of their batch.
"""

from __future__ import annotations

import argparse
import asyncio
import functools
import importlib
import json
import os
import signal
import statistics
import sys
import tempfile
import time
from collections import defaultdict
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

CLIENT = "client"
# (label, module, attribute path): a step's function, where the issue path looks it up.
STEPS: tuple[tuple[str, str, str], ...] = (
    ("client: Bus.request (end to end)", "shared.bus.client", "Bus.request"),
    ("client: reply check (signature, decode)", "shared.bus.client", "Bus._open_reply"),
    ("worker: request, admitted to replied", "shared.worker", "Worker._request"),
    ("  envelope check (authenticate)", "shared.worker", "authenticate"),
    ("    directory lookup query", "shared.directory", "SenderDirectory.lookup"),
    ("  replay guard (NATS KV create)", "shared.bus.replay", "KvReplayGuard.first_seen"),
    ("  body decode", "shared.worker", "decode"),
    ("  handler: TokenWorker.issue", "services.token.worker", "TokenWorker.issue"),
    ("    agent facts query", "services.token.worker", "TokenWorker.facts"),
    ("    details (JSON Schema, capabilities)", "services.token.rules", "Rules.details"),
    ("    policy (cedarpy)", "services.token.worker", "decide"),
    ("    mint", "services.token.worker", "TokenWorker._mint"),
    ("      JWT signing", "shared.jose", "sign"),
    ("      event signing (outbox row)", "services.token.worker", "outbox_row"),
    ("      group commit wait (Recorder.record)", "services.token.recorder", "Recorder.record"),
    ("  reply (sign + publish)", "shared.bus.client", "Bus.reply"),
    ("pool: waiting for a connection (any query)", "asyncpg.pool", "Pool._acquire"),
    ("pool: release, with its reset query", "asyncpg.pool", "PoolConnectionHolder.release"),
    ("group commit transaction (per batch)", "services.token.recorder", "Recorder._commit"),
    ("outbox relay flush (per call)", "shared.outbox", "OutboxRelay.flush_once"),
)


class Timings:
    def __init__(self) -> None:
        self.samples: dict[str, list[float]] = defaultdict(list)

    def _wrap(self, label: str, fn: Any) -> Any:
        samples = self.samples

        if asyncio.iscoroutinefunction(fn):
            @functools.wraps(fn)
            async def timed(*args: Any, **kwargs: Any) -> Any:
                began = time.perf_counter()
                try:
                    return await fn(*args, **kwargs)
                finally:
                    samples[label].append(time.perf_counter() - began)
            return timed

        @functools.wraps(fn)
        def timed_sync(*args: Any, **kwargs: Any) -> Any:
            began = time.perf_counter()
            try:
                return fn(*args, **kwargs)
            finally:
                samples[label].append(time.perf_counter() - began)
        return timed_sync

    @contextmanager
    def installed(self, side: str) -> Iterator[None]:
        """Wrap the steps of one side (client steps, or worker steps) that exist in this code."""
        undo = []
        for label, module_name, path in STEPS:
            if (label.startswith("client:")) != (side == CLIENT):
                continue
            owner: Any = importlib.import_module(module_name)
            *parents, attr = path.split(".")
            for parent in parents:
                owner = getattr(owner, parent, None)
            original = getattr(owner, attr, None) if owner is not None else None
            if original is not None:
                setattr(owner, attr, self._wrap(label, original))
                undo.append((owner, attr, original))
        try:
            yield
        finally:
            for owner, attr, original in reversed(undo):
                setattr(owner, attr, original)


def table(samples: dict[str, list[float]], grants: int) -> str:
    e2e = samples.get("client: Bus.request (end to end)") or [0.0]
    end_to_end = statistics.mean(e2e)
    lines = [f"{'step':<46}{'calls':>7}{'mean ms':>9}{'p50 ms':>9}{'per grant':>10}"]
    for label in [step[0] for step in STEPS] + [LAG]:
        values = samples.get(label)
        if not values:
            continue
        per_grant = sum(values) / grants
        share = f"{per_grant / end_to_end * 100:.0f}%" if end_to_end else "-"
        lines.append(f"{label:<46}{len(values):>7}{statistics.mean(values) * 1000:>9.3f}"
                     f"{statistics.median(values) * 1000:>9.3f}{share:>10}")
    return "\n".join(lines)


LAG = "event loop lag (a 10 ms sleep's overshoot)"


async def _watch_lag(samples: dict[str, list[float]]) -> None:
    """How late the event loop wakes a sleeper: every await in this process waits at least this."""
    loop = asyncio.get_running_loop()
    while True:
        began = loop.time()
        await asyncio.sleep(0.01)
        samples[LAG].append(max(0.0, loop.time() - began - 0.01))


# -- inside a token worker process ----------------------------------------------------------------
def serve(out_dir: Path, names: list[str]) -> int:
    """Run `agentid worker NAMES` with the worker steps timed. SIGUSR1 forgets what was timed so
    far (the warm-up); the samples are written to OUT_DIR when the worker exits (SIGTERM)."""
    timings = Timings()
    signal.signal(signal.SIGUSR1, lambda *_: timings.samples.clear())
    from agentid.cli import main
    from shared.worker import Worker

    original_run = Worker.run

    async def run_watched(self: Worker, stop: asyncio.Event) -> None:
        watcher = asyncio.create_task(_watch_lag(timings.samples))
        try:
            await original_run(self, stop)
        finally:
            watcher.cancel()

    Worker.run = run_watched  # type: ignore[method-assign]
    with timings.installed("worker"):
        status = main(["worker", *names])
    label = os.environ.get("AGENTID_BENCH_LABEL", str(os.getpid()))
    (out_dir / f"steps-{label}.json").write_text(json.dumps(timings.samples))
    return status


# -- the measurement ------------------------------------------------------------------------------
async def measure(count: int, concurrency: int, layout: str) -> str:
    from benchmarks.deployment import Deployment
    from benchmarks.load import closed_loop
    from benchmarks.scenarios.issue import Issuer
    from benchmarks.world import World
    from shared.config import Settings

    timings = Timings()
    with tempfile.TemporaryDirectory(prefix="agentid-steps-") as tmp:
        out = Path(tmp) / "steps"
        out.mkdir()
        command = [sys.executable, "-m", "benchmarks.steps", "serve", str(out)]
        with timings.installed(CLIENT), timings.installed("worker") if layout == "inprocess" else _none():
            async with Deployment(Settings(), Path(tmp) / "stack", layout=layout, token_command=command) as dep:
                world = await World.create(dep)
                try:
                    await world.spawn(64)
                    call = Issuer(world)
                    await closed_loop(call, count=256, concurrency=64)  # every agent known, caches warm
                    await world.settle(60)
                    for proc in dep.procs["token"]:
                        proc.send_signal(signal.SIGUSR1)
                    timings.samples.clear()
                    await asyncio.sleep(0.2)
                    run = await closed_loop(call, count=count, concurrency=concurrency)
                    await world.settle(60)
                finally:
                    await world.close()
        merged: dict[str, list[float]] = defaultdict(list, timings.samples)
        for path in out.glob("steps-*.json"):
            for label, values in json.loads(path.read_text()).items():
                merged[label] += values
    f = run.figures()
    head = (f"{count} grants, {concurrency} in flight, {layout} layout: p50 {f['p50_ms']} ms, "
            f"p99 {f['p99_ms']} ms, {f['rate_per_s']}/s ('per grant': a step's total time / grants, "
            f"as a share of the mean end-to-end latency)")
    return f"{head}\n{table(merged, count - run.errors)}"


@contextmanager
def _none() -> Iterator[None]:
    yield


def main() -> None:
    if len(sys.argv) > 2 and sys.argv[1] == "serve":
        sys.exit(serve(Path(sys.argv[2]), sys.argv[3:]))
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--count", type=int, default=500)
    parser.add_argument("--concurrency", type=int, default=1)
    parser.add_argument("--layout", choices=["processes", "inprocess"], default="processes")
    args = parser.parse_args()
    from shared import telemetry

    telemetry.configure("agentid-bench-steps")  # spans are made, as in `agentid worker`
    print(asyncio.run(measure(args.count, args.concurrency, args.layout)))


if __name__ == "__main__":
    main()
