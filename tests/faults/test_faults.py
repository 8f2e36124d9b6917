"""Under a steady load, every fault in turn; afterwards nothing is lost, duplicated or wrong.

The faults, one after another while spawns, token requests and delegations keep coming (and the
audit worker appends every event they cause): each worker killed with SIGKILL and restarted;
NATS restarted; Postgres restarted; workers cut off from NATS or from Postgres through their TCP
proxies for longer than the event redelivery budget, then reconnected. After each fault the suite
waits until every kind of request is accepted again, so a worker left stuck fails the run.

Afterwards: every accepted request's effects exist exactly once, every event on the stream is in
the audit log exactly once, the log verifies through its routes against the key pinned before the
faults, fresh requests to every worker succeed at the first attempt, and every refusal the load
met was a typed `unavailable`. The counts (sent, accepted, refused by code, lost, duplicated) are
written to `fault-report.json` under the pytest base temp directory and printed at the end of
the run.
"""

from __future__ import annotations

import asyncio
import json
import secrets
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import asyncpg
import pytest

from agentid.audit import AuditClient
from shared.bus.client import stream_name
from shared.errors import NotFound
from tests.faults import SUMMARY
from tests.faults.audit_proofs import verify_audit_log
from tests.faults.cluster import WORKER_NAMES, Cluster
from tests.faults.effects import effects, tenant_events
from tests.faults.load import Load, Parties, Tally, report
from tests.faults.parties import close, fresh_requests, set_up
from tests.helpers import eventually

pytestmark = pytest.mark.faults

TENANT = "faults"
DOWN_FOR_S = 1.5  # how long a killed worker or a stopped server stays down, the load running into it
# How long a link stays cut: longer than the 5 deliveries, 1 s apart, that an event failing for any
# other reason gets; an outage must not use them up.
CUT_FOR_S = 6.0
CUTS = (("token", "nats"), ("delegation", "nats"), ("registration", "postgres"), ("issuance", "postgres"),
        ("audit", "postgres"))
WORKER_ENV = {
    "AGENTID_ACK_WAIT_S": "2", "AGENTID_OUTBOX_POLL_S": "0.2", "AGENTID_SHUTDOWN_GRACE_S": "2",
    "AGENTID_DB_POOL_SIZE": "4", "AGENTID_PUBLIC_URL": "https://agentid.example",
    "AGENTID_AUDIT_CHECKPOINT_INTERVAL_S": "0.5",
}


@pytest.fixture
async def cluster(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Cluster]:
    c = Cluster(tmp_path_factory.mktemp("faults"), prefix=f"faults{secrets.token_hex(3)}", tenant=TENANT,
                env=WORKER_ENV)
    try:
        await c.start_servers()
        await asyncio.gather(*(c.start_worker(name) for name in WORKER_NAMES))
        yield c
    finally:
        await c.close()


@pytest.fixture
def tally() -> Tally:
    t = Tally()
    t.enter("setup")
    return t


@pytest.fixture
async def parties(cluster: Cluster, tally: Tally) -> AsyncIterator[Parties]:
    p = await set_up(cluster, tally)
    try:
        yield p
    finally:
        await close(p)


async def inject_faults(c: Cluster, load: Load, tally: Tally) -> None:
    for name in WORKER_NAMES:
        tally.enter(f"kill -9 {name}")
        await c.kill_worker(name)
        await asyncio.sleep(DOWN_FOR_S)
        await c.start_worker(name)
        await load.accepted_more()

    tally.enter("restart NATS")
    await c.restart_nats(down_for_s=DOWN_FOR_S)
    await c.wait_all_answering()
    await load.accepted_more()

    tally.enter("restart Postgres")
    await c.restart_postgres(down_for_s=DOWN_FOR_S)
    await c.wait_all_answering()
    await load.accepted_more()

    for name, link in CUTS:
        tally.enter(f"{name} cut off from {link}")
        proxy = getattr(c.workers[name], link)
        proxy.cut()
        await asyncio.sleep(CUT_FOR_S)
        proxy.restore()
        await c.wait_answering(name)
        await load.accepted_more()


async def settled(c: Cluster, db: asyncpg.Pool, audit: AuditClient) -> bool:
    """Every outbox relayed, every consumer caught up, and a signed checkpoint covering every event."""
    for name in WORKER_NAMES:
        if await db.fetchval(f'SELECT count(*) FROM "{name}".outbox'):
            return False
    for info in await c.operator.js.consumers_info(stream_name(c.prefix)):
        if info.num_pending or info.num_ack_pending:
            return False
    try:
        head = await audit.checkpoint()
    except NotFound:
        return False
    return head.checkpoint.size == head.entries == await audit.events_published()


async def has_checkpoint(audit: AuditClient) -> bool:
    try:
        await audit.checkpoint()
    except NotFound:
        return False
    return True


def publish(numbers: dict[str, Any], path: Path) -> None:
    path.write_text(json.dumps(numbers, indent=2, sort_keys=True))
    SUMMARY[:] = [
        f"sent {numbers['sent_total']} {numbers['sent']}",
        f"accepted {numbers['accepted_total']} {numbers['accepted']}",
        f"refused {numbers['refused_total']} {numbers['refused']}",
        f"lost {numbers['lost']}, duplicated {numbers['duplicated']}, wrong answers {len(numbers['wrong_answers'])}",
        f"events {numbers['effects']['events_on_stream']}, audit entries {numbers['effects']['audit_entries']}",
        f"audit log: {numbers['audit_log']}",
        f"report: {path}",
    ]
    print("\n".join(["fault suite:", *SUMMARY]))


async def test_under_load_every_fault_loses_nothing_and_duplicates_nothing(
        cluster: Cluster, parties: Parties, tally: Tally, tmp_path_factory: pytest.TempPathFactory) -> None:
    c = cluster
    audit = AuditClient(c.operator, TENANT)
    load = Load(tally, parties)
    tally.enter("steady load")
    load.start()
    try:
        await load.accepted_more()
        await eventually(lambda: has_checkpoint(audit), timeout=30)
        pinned_key = (await audit.checkpoint()).log_public_key  # trusted from before the faults
        await inject_faults(c, load, tally)
        tally.enter("after the faults")
        await load.accepted_more()
    except BaseException:
        await load.abort()
        raise
    await load.stop()

    tally.enter("fresh requests")
    async with asyncpg.create_pool(c.database_url, min_size=1, max_size=2) as db:
        await eventually(lambda: settled(c, db, audit), timeout=90, interval=0.25)
        await fresh_requests(c, parties, tally)
        tally.enter("settle and verify")
        await eventually(lambda: settled(c, db, audit), timeout=60, interval=0.25)
        events = await tenant_events(c.operator.nc, c.prefix, TENANT)
        numbers = report(tally, await effects(db, events, tally, TENANT))
    numbers["audit_log"] = await verify_audit_log(audit, pinned_key)
    numbers["worker_exits"] = {n: w.exits for n, w in c.workers.items()}
    publish(numbers, tmp_path_factory.getbasetemp() / "fault-report.json")

    # Each accepted request is checked by an effect of its own (a spawn id, a jti, a link's CID).
    assert [len(tally.spawns), len(tally.tokens), len(tally.delegations)] == [
        tally.accepted["spawn"], tally.accepted["token"], tally.accepted["delegation"]]
    assert numbers["lost"] == 0, numbers["effects"]["checks"]
    assert numbers["duplicated"] == 0, numbers["effects"]["checks"]
    assert not numbers["wrong_answers"] and not numbers["effects"]["mismatched_answers"], numbers
    assert set(numbers["refused"]) <= {"unavailable"}, numbers["refused"]
    # The load did meet the outages: each kind of request was refused as unavailable at some point.
    assert all(numbers["refused"].get("unavailable", {}).get(k) for k in ("spawn", "token", "delegation"))
    assert not any("refused" in key for key in numbers["phases"]["fresh requests"]), numbers["phases"]
    effects_ = numbers["effects"]
    assert effects_["audit_entries"] == effects_["events_on_stream"] == numbers["audit_log"]["entries"]
    assert effects_["audit_entries_not_on_stream"] == 0 and effects_["audit_entries_unverified"] == 0
    # No worker died but by our hand, and every one is still running.
    assert all(w.exits == [-9] for w in c.workers.values()), numbers["worker_exits"]
    assert all(w.proc is not None and w.proc.returncode is None for w in c.workers.values())
