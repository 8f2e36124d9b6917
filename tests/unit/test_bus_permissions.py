"""deploy/nats.conf is current, and the generator's tables match the code that uses NATS.

The catalogue gives routes, their callers' kinds and the events' owners; what is not in it (which
routes a worker calls, what it watches outside JetStream, what the SDK waits for) is a table in
services/bus_permissions.py, and these tests read the code to make sure the tables miss nothing.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from agentid import revocation
from contracts import subjects as sub
from services import bus_permissions as bp
from services import runner
from services.audit import consumer as audit_consumer
from shared.keyring import SERVICES

REPO = Path(__file__).parents[2]
ROUTE_NAMES = {getattr(sub, n): n for n in dir(sub) if isinstance(getattr(sub, n), sub.Route)}


def test_deploy_nats_conf_is_current() -> None:
    assert bp.main(["--check"]) == 0, "run `python -m services.bus_permissions`"


def test_every_worker_has_a_user_and_every_nkey_is_a_variable() -> None:
    text = bp.render()
    assert set(SERVICES) == set(runner.WORKERS)
    for name in SERVICES:
        assert f"nkey: ${name.upper()}_NKEY" in text
    assert "password" not in text


def _called_routes(paths: list[Path]) -> set[str]:
    found = set()
    for path in paths:
        found |= set(re.findall(r"\.request\(\s*sub\.([A-Z_]+)", path.read_text()))
    return found


@pytest.mark.parametrize("worker", SERVICES)
def test_a_worker_may_publish_every_route_its_code_calls(worker: str) -> None:
    paths = list((REPO / "services" / worker).rglob("*.py"))
    if runner.worker_class(worker).uses_directory:
        paths.append(REPO / "shared" / "directory.py")
    allowed = {ROUTE_NAMES[r] for r in bp.calls(worker)}
    assert _called_routes(paths) <= allowed
    for route in bp.calls(worker):
        assert "service" in route.senders, route.name  # the catalogue lets services call it at all


def test_no_worker_may_call_what_the_catalogue_keeps_from_services() -> None:
    for worker in SERVICES:
        publish = bp.worker_permissions(worker).publish
        for route in sub.ROUTES:
            if "service" not in route.senders:
                assert route.pattern() not in publish, (worker, route.name)


@pytest.mark.parametrize("worker", SERVICES)
def test_a_worker_subscribes_in_its_queue_group_to_exactly_its_routes(worker: str) -> None:
    subscribe = bp.worker_permissions(worker).subscribe
    queued = {s for s in subscribe if " " in s}
    assert queued == {f"{r.pattern()} {worker}" for r in sub.ROUTES if r.service == worker}
    routes = runner.worker_class(worker).routes(object.__new__(runner.worker_class(worker)))
    assert {f"{r.pattern()} {worker}" for r in routes} <= queued


def test_a_worker_publishes_exactly_the_events_it_owns() -> None:
    for worker in SERVICES:
        publish = bp.worker_permissions(worker).publish
        events = {s for s in publish if ".evt." in s}
        assert events == {t.pattern() for t in sub.TOPICS if t.owner == worker}, worker


def test_core_watches_are_the_ones_the_token_worker_subscribes_to() -> None:
    source = (REPO / "services" / "token" / "worker.py").read_text()
    start = source.index("async def on_start")
    watched = set(re.findall(r"sub\.([A-Z_]+)(?:\.pattern\(root\)|, self\._)", source[start:source.index("def _forgetter")]))
    assert watched == {n for n in dir(sub) if getattr(sub, n) in bp.WATCHES["token"]}


def test_durables_come_from_the_workers_own_declarations() -> None:
    assert bp.durables("registration") == ("registration-spawn",)
    assert "audit-log" in bp.durables("audit") and audit_consumer.DURABLE == "audit-log"
    assert "token-senders" in bp.durables("token")  # the sender directory's consumer
    names = [d for w in SERVICES for d in bp.durables(w)]
    assert len(names) == len(set(names))  # no two workers share a durable


def test_the_verifier_may_replay_exactly_what_the_revocation_feed_listens_to() -> None:
    assert [t for t, _ in revocation._EVENTS] == list(bp.REVOCATION_TOPICS)
    perms = bp.party_permissions("verifier", "acme")
    assert all(p.startswith("$JS.API.CONSUMER.CREATE.AGENTID_EVENTS.*.agentid.v1.acme.evt.") for p in perms.publish)


def test_parties_are_pinned_to_their_tenant() -> None:
    for kind in bp.PARTY_KINDS:
        perms = bp.party_permissions(kind, "acme")
        for subject in (*perms.publish, *perms.subscribe):
            assert "*" not in subject.replace("AGENTID_EVENTS.*.", "") and ">" not in subject[:-1], subject
            assert ".acme." in subject, subject
    orchestrator = bp.party_permissions("orchestrator", "acme").publish
    assert sub.SPAWN.subject("acme") in orchestrator and sub.SPAWN_REQUESTED.subject("acme") in orchestrator
    assert sub.CREATE_TENANT.subject("acme") not in orchestrator


def test_tenant_names_that_would_share_a_variable_are_refused() -> None:
    with pytest.raises(ValueError):
        bp.users(tenants=["a-b", "a_b"])
