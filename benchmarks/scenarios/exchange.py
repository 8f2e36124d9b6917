"""`exchange`: on-behalf-of token exchange (RFC 8693) rate, 64 in flight.

The orchestrator exchanges signed-in users' tokens (RS256, from a local OpenID provider served over
real HTTP, whose keys the token workers fetch once) for tokens naming the user as `sub` and one of
the tenant's agents as `act`, bound to that agent's key. The users' tokens are minted before the
runs (an identity provider's work, not ours) and each is used many times, as a signed-in user's
token is. Floor: raw NATS echo at 64 in flight, to responders placed like the token workers.
"""

from __future__ import annotations

from agentid.devidp import DevIdp
from benchmarks.floor import nats_echo
from benchmarks.load import closed_loop
from benchmarks.scenarios import Bench, Result
from benchmarks.world import AUDIENCE, DETAIL
from contracts import subjects as sub
from contracts import tokens as tok

CONCURRENCY = 64
USER_AUDIENCE = "https://agents.bench.example"
GROUP = "ledger-readers"


async def run(bench: Bench, names: list[str]) -> dict[str, Result]:
    world, plan = bench.world, bench.plan
    assert world is not None
    idp = DevIdp()
    await idp.start()
    try:
        await world.operator.request(sub.IDP_ADD, world.tenant, tok.AddIdp(idp=tok.IdentityProvider(
            issuer=idp.issuer, discovery_url=idp.discovery_url, audiences=[USER_AUDIENCE],
            group_grants={GROUP: [{**DETAIL, "locations": ["https://ledger.example/accounts/*"]}]})))
        users = [idp.mint(f"user-{i}@bench.example", audience=USER_AUDIENCE, groups=[GROUP], lifetime_s=3600)
                 for i in range(plan.exchange_users)]
        agents = world.agents

        async def call(i: int) -> None:
            await world.orchestrator.token_for(agents[i % len(agents)].agent_id, users[i % len(users)], [DETAIL],
                                               AUDIENCE)

        bench.say(f"exchange: warming up, then {plan.runs} runs of {plan.exchange}, {CONCURRENCY} in flight")
        await closed_loop(call, count=plan.warmup, concurrency=CONCURRENCY)
        await world.settle(plan.catch_up_timeout_s)
        runs, floors = [], []
        for i in range(plan.runs):
            floors.append((await nats_echo(world.nc, bench.echo_subject, count=plan.echo_c64,
                                           concurrency=CONCURRENCY)).figures())
            r = await closed_loop(call, count=plan.exchange, concurrency=CONCURRENCY)
            r.extra["catch_up_s"] = await world.settle(plan.catch_up_timeout_s)
            runs.append(r.figures())
            bench.say(f"  exchange run {i + 1}/{plan.runs}: {runs[-1]['rate_per_s']}/s, p99 {runs[-1]['p99_ms']} ms "
                      f"(echo floor {floors[-1]['rate_per_s']}/s)")
    finally:
        await idp.stop()
    return {"exchange": Result(runs, f"raw nats-py request-reply echo, {CONCURRENCY} in flight, "
                                     f"{bench.echo_placement}", floors,
                               {"concurrency": CONCURRENCY, "users": plan.exchange_users,
                                "user_token_alg": "RS256"})}
