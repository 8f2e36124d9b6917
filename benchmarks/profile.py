"""Where a worker's CPU time goes: py-spy samples of the token workers, grouped by step of the
issue path. Optional (`agentid bench --profile DIR`, with `py-spy` on PATH); never part of a
measured run, because sampling slows the process it samples.

    python -m benchmarks.profile FILE...    # attribute raw (collapsed) py-spy output

Attribution: a sample goes to the rule whose frames appear, in order, deepest in its stack (so
"reply signing" wins over "reply" for a sample inside the reply's signature). Samples matching no
rule are "other"; samples waiting in epoll are idle and left out of the shares.
"""

from __future__ import annotations

import asyncio
import shutil
import signal
import sys
from collections import Counter
from collections.abc import AsyncIterator, Iterable, Sequence
from contextlib import asynccontextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from benchmarks.deployment import Deployment

# (step, frames that must appear in this order); frame text is py-spy's "function (file:line)".
IDLE = "idle: waiting in epoll"
RULES: tuple[tuple[str, tuple[str, ...]], ...] = (
    (IDLE, ("EpollSelector.select",)),
    ("request: envelope check (signature verify, sender, window)", ("Worker._admit",)),
    ("request: directory lookup query", ("Worker._admit", "SenderDirectory.lookup")),
    ("request: directory lookup query", ("Worker._admit", "SenderDirectory._fetch")),
    ("request: signature verify", ("authenticate (shared/bus/signing", "PublicKey.verify")),
    ("request: replay guard (NATS KV create)", ("KvReplayGuard.first_seen",)),
    ("request: replay guard (NATS KV create)", ("MemoryReplayGuard.first_seen",)),
    ("request: body decode", ("Worker._request", "decode (shared/bus/client")),
    ("issue: agent facts query", ("TokenWorker.facts",)),
    ("issue: details, audience, lifetime (JSON Schema)", ("TokenWorker.rules",)),
    ("issue: details, audience, lifetime (JSON Schema)", ("Rules.",)),
    ("issue: policy (cedarpy)", ("decide (services/token/policy",)),
    ("issue: signing key lookup", ("SigningKeys.active",)),
    ("issue: JWT signing", ("TokenWorker._mint", "sign (shared/jose")),
    ("issue: event signing (outbox row)", ("outbox_row",)),
    ("issue: other handler code", ("TokenWorker.issue",)),
    ("group commit (token rows + outbox)", ("Recorder.",)),
    ("reply: signing", ("Bus.reply", "Bus.envelope")),
    ("reply: publish", ("Bus.reply",)),
    ("telemetry (spans, context propagation)", ("messaging_span",)),
    ("telemetry (spans, context propagation)", ("inject (shared/telemetry",)),
    ("telemetry (spans, context propagation)", ("extract (shared/telemetry",)),
    ("telemetry (spans, context propagation)", ("Span.set_attribute",)),
    ("telemetry (spans, context propagation)", ("identity_attributes",)),
    ("outbox relay (publish to JetStream, delete)", ("OutboxRelay.",)),
    ("asyncpg pool release (connection reset query)", ("PoolConnectionHolder.release",)),
    ("nats-py: socket writes (flusher)", ("Client._flusher",)),
    ("nats-py: reading and parsing", ("Client._read_loop",)),
    ("event consumers (directory, credentials, ...)", ("Worker._consume",)),
    ("request: runtime (task, slots, error mapping)", ("Worker._request",)),
    ("socket reads (asyncio)", ("_read_ready",)),
    # The audit worker (in the "others" process), consuming the events the grants caused.
    ("audit: judge event (other)", ("Intake.observe",)),
    ("audit: judge event (sender lookup)", ("Intake.observe", "lookup")),
    ("audit: judge event (signature verify)", ("Intake.observe", "PublicKey.verify")),
    ("audit: append (leaves, Merkle nodes, SQL)", ("AuditLog.append",)),
    ("audit: route, acks", ("Consumer._append",)),
    ("audit: fetch, spans", ("Consumer.",)),
)


def _match_depth(frames: Sequence[str], pattern: tuple[str, ...]) -> int:
    """Index of the frame matching the pattern's last element, if all elements match in order; else -1."""
    at = -1
    for part in pattern:
        at = next((i for i in range(at + 1, len(frames)) if part in frames[i]), -1)
        if at < 0:
            return -1
    return at


def attribute(lines: Iterable[str]) -> tuple[Counter[str], int]:
    """Samples per step from collapsed stacks ("f1;f2;f3 count" per line), and the total."""
    steps: Counter[str] = Counter()
    total = 0
    for line in lines:
        line = line.strip()
        if not line or " " not in line:
            continue
        stack, _, count = line.rpartition(" ")
        n = int(count)
        frames = stack.split(";")
        best, best_depth = "other (event loop, scheduling)", -1
        for step, pattern in RULES:
            depth = _match_depth(frames, pattern)
            if depth > best_depth or (depth == best_depth and depth >= 0 and len(pattern) > 1):
                best, best_depth = step, depth
        steps[best] += n
        total += n
    return steps, total


def shares(paths: Iterable[Path]) -> dict[str, float]:
    """Fraction of busy samples per step over several profiles, largest first. Samples of a process
    waiting in epoll (py-spy cannot always tell them from work) are left out."""
    steps: Counter[str] = Counter()
    for path in paths:
        steps += attribute(path.read_text().splitlines())[0]
    steps.pop(IDLE, None)
    total = sum(steps.values())
    return {k: round(v / total, 4) for k, v in steps.most_common()} if total else {}


class Profiler:
    """py-spy on the token worker processes and on the process of the other workers (the audit
    worker among them) while one extra, unmeasured run goes on."""

    def __init__(self, out: Path, pids: dict[str, list[int]], label: str) -> None:
        self.out = out
        self.pids = pids
        self.label = label
        self.files: dict[str, list[Path]] = {group: [] for group in pids}

    @classmethod
    def maybe(cls, out: Path | None, deployment: Deployment, label: str) -> Profiler | None:
        if out is None or shutil.which("py-spy") is None:
            return None
        pids = {group: [p.pid for p in procs] for group, procs in deployment.procs.items() if procs}
        return cls(out, pids, label) if pids else None

    @asynccontextmanager
    async def recording(self) -> AsyncIterator[None]:
        self.out.mkdir(parents=True, exist_ok=True)
        procs = []
        for group, pids in self.pids.items():
            for pid in pids:
                path = self.out / f"{self.label}-{group}-{pid}.txt"
                self.files[group].append(path)
                procs.append(await asyncio.create_subprocess_exec(
                    "py-spy", "record", "--pid", str(pid), "--rate", "250", "--format", "raw", "--nonblocking",
                    "--output", str(path), stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.DEVNULL))
        await asyncio.sleep(0.5)  # py-spy attaches before the load starts
        try:
            yield
        finally:
            for proc in procs:
                if proc.returncode is None:
                    proc.send_signal(signal.SIGINT)  # py-spy writes its output on SIGINT
            for proc in procs:
                await proc.wait()

    def summary(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for group, files in self.files.items():
            found = [p for p in files if p.exists()]
            out[group] = {"files": [str(p) for p in found], "share_of_cpu_samples": shares(found)}
        return out


def main(argv: Sequence[str]) -> None:
    for step, share in shares(Path(a) for a in argv).items():
        print(f"{share * 100:5.1f}%  {step}")


if __name__ == "__main__":
    main(sys.argv[1:])
