"""The steady load: spawns, token requests and delegations, each outcome tallied.

Every operation is retried until it is accepted, and only after a typed `unavailable` (or
`rate_limited`): that is what a well-behaved client does during an outage. A spawn is retried
as the very same request (same spawn id, same proof of possession), and a delegation as the same
signed link (same CID): both are idempotent by those ids, so an accepted operation must have left
exactly one of each effect however many attempts it took. A token request is not idempotent, so
each retry asks anew; only the token that was handed back is an accepted one.

Any other refusal, an untyped error, or an accepted answer that does not match the request is a
wrong answer: it is recorded with the phase it happened in, and the suite fails on it.
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, TypeVar

from agentid.agent import Agent
from agentid.delegation import Delegation
from agentid.keys import AgentKey
from agentid.orchestrator import Orchestrator
from contracts import delegation as dlg
from contracts import registration as reg
from contracts import subjects as sub
from contracts import tokens as tok
from contracts.errors import RETRYABLE
from shared import jose, ucan
from shared.capabilities import from_rar
from shared.errors import AgentidError
from shared.ids import new_id
from tests.helpers import SPAWN_FIELDS, ledger

T = TypeVar("T")

REQUEST_TIMEOUT_S = 3.0
RETRY_PAUSE_S = 0.2
# How long one operation may keep being refused before the suite calls the system stuck.
GIVE_UP_AFTER_S = 90.0

AUDIENCE = "https://ledger.example"
RECORDS_API = "https://api.example.com/records"
ROOT_RECORDS = {"type": "records", "locations": [f"{RECORDS_API}/*"], "actions": ["read", "write"]}
DELEGATED = {"type": "records", "locations": [f"{RECORDS_API}/team/*"], "actions": ["read"]}


class Stuck(Exception):
    """An operation was refused as unavailable for longer than any fault window lasts."""


class WrongAnswer(Exception):
    """A refusal other than `unavailable`, or an untyped error: recorded, and the load goes on."""


@dataclass
class Tally:
    """What the load sent and what came back, by kind of request and by phase."""

    phase: str = "warm-up"
    sent: Counter[str] = field(default_factory=Counter)
    accepted: Counter[str] = field(default_factory=Counter)
    refused: Counter[tuple[str, str]] = field(default_factory=Counter)  # (kind, error code)
    phases: dict[str, Counter[str]] = field(default_factory=dict)
    wrong: list[str] = field(default_factory=list)
    # Accepted operations and what their answers said.
    spawns: dict[str, str] = field(default_factory=dict)                   # spawn id -> agent id
    tokens: dict[str, str] = field(default_factory=dict)                   # jti -> agent id
    delegations: dict[str, tuple[str, str]] = field(default_factory=dict)  # cid -> (issuer, audience agent)

    started: dict[str, float] = field(default_factory=dict)  # phase -> when it began (monotonic)

    def enter(self, phase: str) -> None:
        self.phase = phase
        self.started[phase] = time.monotonic()

    def _count(self, key: str) -> None:
        self.phases.setdefault(self.phase, Counter())[key] += 1

    def record_wrong(self, kind: str, what: str) -> None:
        self.wrong.append(f"{kind} during {self.phase}: {what}")

    async def attempt(self, kind: str, call: Callable[[], Awaitable[T]]) -> T:
        """Run `call` until it is accepted; retry only what may be retried."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + GIVE_UP_AFTER_S
        while True:
            self.sent[kind] += 1
            self._count(f"{kind} sent")
            try:
                result = await call()
            except AgentidError as exc:
                code = exc.code.value
                self.refused[(kind, code)] += 1
                self._count(f"{kind} refused {code}")
                if exc.code not in RETRYABLE:
                    self.record_wrong(kind, f"refused with {code}: {exc.message}")
                    raise WrongAnswer(code) from exc
                if loop.time() > deadline:
                    raise Stuck(f"{kind} refused with {code} for {GIVE_UP_AFTER_S:.0f}s") from exc
                await asyncio.sleep(RETRY_PAUSE_S)
                continue
            except Exception as exc:
                self.record_wrong(kind, f"untyped {type(exc).__name__}: {exc}")
                raise WrongAnswer(type(exc).__name__) from exc
            self.accepted[kind] += 1
            self._count(f"{kind} accepted")
            return result


@dataclass
class Parties:
    orchestrator: Orchestrator
    agents: list[Agent]
    roots: dict[str, Delegation]  # agent id -> its root from the tenant authority


class Load:
    """Spawners, token requesters and a delegator, each a loop of one operation at a time."""

    def __init__(self, tally: Tally, parties: Parties, *, spawners: int = 2, requesters: int = 2,
                 delegators: int = 1, pause_s: float = 0.15) -> None:
        self.tally = tally
        self.parties = parties
        self.shape = {"spawn": spawners, "token": requesters, "delegation": delegators}
        self.pause_s = pause_s  # between one operation's acceptance and the next: a steady, modest load
        self.stopping = asyncio.Event()
        self.tasks: list[asyncio.Task[None]] = []
        self.failure: BaseException | None = None

    def start(self) -> None:
        loops = {"spawn": self._spawn, "token": self._token, "delegation": self._delegate}
        for kind, n in self.shape.items():
            for i in range(n):
                self.tasks.append(asyncio.create_task(self._loop(loops[kind], i), name=f"load-{kind}-{i}"))

    async def stop(self) -> None:
        """No new operations; those under way are retried until accepted."""
        self.stopping.set()
        await asyncio.gather(*self.tasks, return_exceptions=True)
        self.check()

    async def abort(self) -> None:
        """The run failed: end the load at once, operations under way included."""
        self.stopping.set()
        for task in self.tasks:
            task.cancel()
        await asyncio.gather(*self.tasks, return_exceptions=True)

    def check(self) -> None:
        if self.failure is not None:
            raise AssertionError(f"the load failed: {type(self.failure).__name__}: {self.failure}; "
                                 f"wrong answers: {self.tally.wrong}") from self.failure

    async def accepted_more(self, n: int = 3, timeout: float = 60.0) -> None:
        """Wait until every kind of request has been accepted `n` more times: the system works."""
        mark = Counter(self.tally.accepted)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while any(self.tally.accepted[k] - mark[k] < n for k, c in self.shape.items() if c):
            self.check()
            if loop.time() > deadline:
                behind = {k: self.tally.accepted[k] - mark[k] for k in self.shape}
                raise AssertionError(f"the load made no progress after the fault: {behind}")
            await asyncio.sleep(0.05)

    async def _loop(self, op: Callable[[int], Awaitable[None]], i: int) -> None:
        try:
            while not self.stopping.is_set():
                try:
                    await op(i)
                except WrongAnswer:
                    pass  # recorded; the suite fails on it after the run, with the whole report
                await asyncio.sleep(self.pause_s)
        except Exception as exc:
            if self.failure is None:
                self.failure = exc
            raise

    # -- operations ------------------------------------------------------------------------------
    async def _spawn(self, i: int) -> None:
        orch = self.parties.orchestrator
        key = AgentKey.generate()
        request = orch.spawn_request(key, **SPAWN_FIELDS)
        agent: reg.AgentIdentity = await self.tally.attempt("spawn", lambda: orch.bus.request(
            sub.SPAWN, orch.tenant, request, timeout=REQUEST_TIMEOUT_S))
        if agent.spawn_id != request.spawn_id or agent.key_id != key.thumbprint or agent.status != "active":
            self.tally.record_wrong("spawn", f"answer for another spawn or key: {agent.agent_id}")
        self.tally.spawns[request.spawn_id] = agent.agent_id

    async def _token(self, i: int) -> None:
        agents = self.parties.agents
        agent = agents[(i + self.tally.accepted["token"]) % len(agents)]
        details = [ledger(["read"], path=f"/accounts/{i}")]
        body = tok.IssueToken(authorization_details=details, audience=AUDIENCE)
        issued: tok.IssuedToken = await self.tally.attempt("token", lambda: agent.bus.request(
            sub.TOKEN_ISSUE, agent.tenant, body, timeout=REQUEST_TIMEOUT_S))
        claims = jose.split(issued.access_token)[1]
        if (claims.get("jti") != issued.jti or claims.get("client_id") != agent.spiffe_id
                or claims.get("aud") != AUDIENCE or claims.get("cnf") != {"jkt": agent.key.thumbprint}):
            self.tally.record_wrong("token", f"token {issued.jti} is not the one asked for")
        self.tally.tokens[issued.jti] = agent.agent_id

    async def _delegate(self, i: int) -> None:
        agents = self.parties.agents
        n = self.tally.accepted["delegation"]
        giver, taker = agents[n % len(agents)], agents[(n + 1 + i) % len(agents)]
        root = self.parties.roots[giver.agent_id].jwt
        now = int(time.time())
        # A nonce of its own: two grants in the same second are two links, not one granted twice.
        link = ucan.issue(giver.key.private, taker.did, [from_rar(DELEGATED)], expires=now + 600,
                          not_before=max(now, ucan.parse(root).nbf or 0), proofs=[root], nonce=new_id())
        body = dlg.GrantDelegation(chain=[root, link])
        record: dlg.DelegationRecord = await self.tally.attempt("delegation", lambda: giver.bus.request(
            sub.DELEGATION_GRANT, giver.tenant, body, timeout=REQUEST_TIMEOUT_S))
        if (record.cid != ucan.cid(link) or record.audience_agent_id != taker.agent_id
                or record.issuer_agent_id != giver.agent_id):
            self.tally.record_wrong("delegation", f"record {record.cid} is not the link granted")
        self.tally.delegations[record.cid] = (giver.agent_id, taker.agent_id)


def report(tally: Tally, effects: dict[str, Any]) -> dict[str, Any]:
    """The numbers the suite reports: the load's and what the system kept of it."""
    refused: dict[str, dict[str, int]] = {}
    for (kind, code), n in sorted(tally.refused.items()):
        refused.setdefault(code, {})[kind] = n
    return {
        "sent": dict(tally.sent), "accepted": dict(tally.accepted), "refused": refused,
        "sent_total": sum(tally.sent.values()), "accepted_total": sum(tally.accepted.values()),
        "refused_total": sum(tally.refused.values()),
        "lost": effects["lost"], "duplicated": effects["duplicated"],
        "wrong_answers": list(tally.wrong), "effects": effects,
        "phases": {phase: dict(counts) for phase, counts in tally.phases.items()},
        "phase_seconds": _durations(tally.started),
    }


def _durations(started: dict[str, float]) -> dict[str, float]:
    marks = sorted(started.items(), key=lambda kv: kv[1])
    ends = [t for _, t in marks[1:]] + [time.monotonic()]
    return {phase: round(end - t, 1) for (phase, t), end in zip(marks, ends, strict=True)}
