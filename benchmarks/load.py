"""Load generators with fixed request counts: closed loop at a fixed concurrency, and open loop at a
fixed offered rate. Neither runs "for N seconds": a run is a number of operations, so two runs do
the same work and their figures compare.

An operation is `call(i)`, an awaitable for the i-th request. It fails by raising; failures are
counted, never timed, and never retried.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable

from benchmarks.stats import Run

Call = Callable[[int], Awaitable[object]]


async def closed_loop(call: Call, *, count: int, concurrency: int) -> Run:
    """`count` operations, exactly `concurrency` in flight until the last ones drain."""
    latencies: list[float] = []
    errors = 0
    next_i = 0

    async def lane() -> None:
        nonlocal next_i, errors
        while next_i < count:
            i, next_i = next_i, next_i + 1
            began = time.perf_counter()
            try:
                await call(i)
            except Exception:  # noqa: BLE001 - a failed operation counts as an error, whatever its type
                errors += 1
                continue
            latencies.append(time.perf_counter() - began)

    began = time.perf_counter()
    await asyncio.gather(*(lane() for _ in range(min(concurrency, count))))
    return Run(count=count, seconds=time.perf_counter() - began, latencies_s=latencies, errors=errors)


async def open_loop(call: Call, *, count: int, rate_per_s: float) -> Run:
    """`count` operations started on a fixed schedule (one every 1/rate seconds), whatever the
    system's answers do. Latency is measured from each operation's *scheduled* start, so a stall
    that delays later sends counts against them (no coordinated omission). `extra["late_ms_max"]`
    says how far behind schedule the generator itself ever was."""
    latencies: list[float] = []
    errors = 0
    late_max = 0.0
    tasks: set[asyncio.Task[None]] = set()

    async def one(i: int, scheduled: float) -> None:
        nonlocal errors
        try:
            await call(i)
        except Exception:  # noqa: BLE001 - counted, as in the closed loop
            errors += 1
            return
        latencies.append(time.perf_counter() - scheduled)

    interval = 1.0 / rate_per_s
    start = time.perf_counter() + 0.01
    i = 0
    while i < count:
        now = time.perf_counter()
        # Start everything that is due (several, if the loop woke late), then sleep to the next.
        while i < count and start + i * interval <= now:
            scheduled = start + i * interval
            late_max = max(late_max, now - scheduled)
            task = asyncio.create_task(one(i, scheduled))
            tasks.add(task)
            task.add_done_callback(tasks.discard)
            i += 1
        if i < count:
            await asyncio.sleep(max(0.0, start + i * interval - time.perf_counter()))
    while tasks:
        await asyncio.gather(*list(tasks))
    run = Run(count=count, seconds=time.perf_counter() - start, latencies_s=latencies, errors=errors)
    run.extra.update({"offered_rate_per_s": rate_per_s, "late_ms_max": late_max * 1000})
    return run


def cpu_run(fn: Callable[[int], object], *, count: int) -> Run:
    """`count` synchronous calls on this thread. The rate is per second of this process's CPU
    time (one core, whatever else the machine runs); latencies are wall time per call."""
    latencies: list[float] = []
    cpu0 = time.process_time()
    wall0 = time.perf_counter()
    errors = 0
    for i in range(count):
        began = time.perf_counter()
        try:
            fn(i)
        except Exception:  # noqa: BLE001 - counted, as in the closed loop
            errors += 1
            continue
        latencies.append(time.perf_counter() - began)
    cpu = time.process_time() - cpu0
    run = Run(count=count, seconds=cpu, latencies_s=latencies, errors=errors)
    run.extra["wall_seconds"] = time.perf_counter() - wall0
    return run


async def cpu_run_async(fn: Callable[[int], Awaitable[object]], *, count: int) -> Run:
    """`cpu_run` for coroutines that never really wait (an in-process verifier)."""
    latencies: list[float] = []
    cpu0 = time.process_time()
    wall0 = time.perf_counter()
    errors = 0
    for i in range(count):
        began = time.perf_counter()
        try:
            await fn(i)
        except Exception:  # noqa: BLE001 - counted, as in the closed loop
            errors += 1
            continue
        latencies.append(time.perf_counter() - began)
    run = Run(count=count, seconds=time.process_time() - cpu0, latencies_s=latencies, errors=errors)
    run.extra["wall_seconds"] = time.perf_counter() - wall0
    return run
