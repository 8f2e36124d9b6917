"""Rate limits: tokens per agent and per orchestrator (tenant token config), spawns per
orchestrator (its authority). Beyond them a request is refused with `rate_limited` and a retry
hint, nothing is issued or recorded, and other parties are unaffected.

Requests are sent concurrently, so the assertions hold however slow the machine: the buckets
refill by at most rate x elapsed while the batch is in flight."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import pytest
from msgspec.structs import replace

from contracts import subjects as sub
from shared.errors import QuotaExceeded, RateLimited
from tests.helpers import DEFAULT_AUTHORITY, TOKEN_CONFIG, Harness, ledger

pytestmark = pytest.mark.integration

AUDIENCE = "https://ledger.example"


def _outcomes(results: list[Any]) -> tuple[list[Any], list[RateLimited]]:
    limited = [r for r in results if isinstance(r, RateLimited)]
    others = [r for r in results if isinstance(r, BaseException) and not isinstance(r, RateLimited)]
    assert others == []  # anything but a success or rate_limited is a bug
    return [r for r in results if not isinstance(r, BaseException)], limited


def _allowed(burst: int, rate: float, started: float) -> float:
    return burst + rate * (time.monotonic() - started)


async def test_token_requests_beyond_the_agents_rate_are_refused(harness: Harness, tenant: str) -> None:
    await harness.token_rules(tenant, config=replace(TOKEN_CONFIG, agent_tokens_per_s=1))
    orch, _, _ = await harness.new_orchestrator(tenant)
    agent, _ = await harness.new_agent(orch)
    bystander, _ = await harness.new_agent(orch)
    denied_before = await harness.event_count(sub.TOKEN_DENIED.subject(tenant, harness.root))
    started = time.monotonic()
    results = await asyncio.gather(*(agent.token([ledger(path=f"/accounts/{n}")], AUDIENCE) for n in range(12)),
                                   return_exceptions=True)
    issued, limited = _outcomes(results)
    assert 1 <= len(issued) <= _allowed(2, 1, started)  # burst of twice the rate
    assert limited and all(0 < e.detail["retry_after_s"] <= 1 for e in limited)
    assert limited[0].message.startswith("too many tokens")
    # Another agent has its own bucket; floods are not written to the audit trail as denials.
    assert (await bystander.token([ledger()], AUDIENCE)).access_token
    assert await harness.event_count(sub.TOKEN_DENIED.subject(tenant, harness.root)) == denied_before
    # The hint is honest: after waiting it out, the agent is served again.
    await asyncio.sleep(max(e.detail["retry_after_s"] for e in limited))
    assert (await agent.token([ledger(path="/accounts/later")], AUDIENCE)).access_token
    for a in (agent, bystander, orch):
        await a.close()


async def test_an_orchestrators_agents_share_its_token_rate(harness: Harness, tenant: str) -> None:
    await harness.token_rules(tenant, config=replace(TOKEN_CONFIG, orchestrator_tokens_per_s=2))
    orch, _, _ = await harness.new_orchestrator(tenant)
    other, _, _ = await harness.new_orchestrator(tenant)
    agents = [(await harness.new_agent(orch))[0] for _ in range(4)]
    outsider, _ = await harness.new_agent(other)
    started = time.monotonic()
    results = await asyncio.gather(*(a.token([ledger(path=f"/accounts/{n}")], AUDIENCE)
                                     for a in agents for n in range(3)), return_exceptions=True)
    issued, limited = _outcomes(results)
    assert len(issued) <= _allowed(4, 2, started) and limited  # each agent alone is well under its own 100/s
    assert "orchestrator" in limited[0].message
    assert (await outsider.token([ledger()], AUDIENCE)).access_token
    for a in (*agents, outsider, orch, other):
        await a.close()


async def test_spawns_beyond_the_orchestrators_rate_are_refused_and_nothing_is_registered(
        harness: Harness, tenant: str) -> None:
    orch, record, _ = await harness.new_orchestrator(tenant, replace(DEFAULT_AUTHORITY, spawns_per_minute=30))
    before = await harness.count("SELECT count(*) FROM registration.agents WHERE orchestrator_id = $1",
                                 record.orchestrator_id)
    assert before == 0
    started = time.monotonic()
    results = await asyncio.gather(*(harness.new_agent(orch) for _ in range(8)), return_exceptions=True)
    spawned, limited = _outcomes(results)
    assert len(spawned) <= _allowed(3, 0.5, started) and limited  # 30 a minute, a burst of a tenth
    assert limited[0].message.startswith("too many spawns")
    registered = await harness.count("SELECT count(*) FROM registration.agents WHERE orchestrator_id = $1",
                                     record.orchestrator_id)
    assert registered == len(spawned)
    for agent, _ in spawned:
        await agent.close()
    await orch.close()


async def test_the_live_agent_quota_is_exact(harness: Harness, tenant: str) -> None:
    orch, _, _ = await harness.new_orchestrator(tenant, replace(DEFAULT_AUTHORITY, max_live_agents=2))
    first, _ = await harness.new_agent(orch)
    second, _ = await harness.new_agent(orch)
    with pytest.raises(QuotaExceeded):
        await harness.new_agent(orch)
    await first.exit()
    third, _ = await harness.new_agent(orch)  # an exit frees a place
    for a in (first, second, third, orch):
        await a.close()
