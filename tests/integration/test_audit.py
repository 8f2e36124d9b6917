"""The audit log against real NATS and Postgres: every event once, rejected ones too, proofs, queries
and who may read what."""

from __future__ import annotations

import json
import secrets
from datetime import UTC, datetime
from typing import Any

import msgspec
import pytest
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from agentid.audit import AuditClient, verify_consistency, verify_inclusion
from agentid.keys import AgentKey
from contracts import audit as au
from contracts import headers as H
from contracts import registration as reg
from contracts import subjects as sub
from services.audit.intake import trace_id_of
from shared.bus import Signer
from shared.bus.signing import sign
from shared.errors import (
    AuthorityExceeded,
    Forbidden,
    InvalidRequest,
    NotFound,
    UnknownSender,
)
from shared.keys import PrivateKey
from tests.helpers import SPAWN_FIELDS, Harness, eventually

pytestmark = pytest.mark.integration


async def _log(harness: Harness, tenant: str) -> tuple[AuditClient, au.CheckpointRecord, list[dict[str, Any]]]:
    client = AuditClient(harness.operator, tenant)
    head = await client.caught_up(timeout=20)
    leaves = [json.loads(e.leaf) async for e in client.entries()]
    return client, head, leaves


async def _story(harness: Harness, tenant: str) -> dict[str, Any]:
    """An orchestrator, an agent by request, one by event, a refused spawn, an exit."""
    orch, record, _ = await harness.new_orchestrator(tenant)
    first, _ = await harness.new_agent(orch)
    request = orch.spawn_request(AgentKey.generate(), **{**SPAWN_FIELDS, "controller": {"type": "user", "id": "bob"}})
    second = await orch.spawn_via_event(request)
    with pytest.raises(AuthorityExceeded):
        await orch.spawn_via_event(orch.spawn_request(AgentKey.generate(), **{**SPAWN_FIELDS, "tier": "root"}))
    await orch.exit(second.agent_id)
    await first.close()
    await orch.close()
    return {"orchestrator": record.orchestrator_id, "first": first.agent_id, "second": second.agent_id}


async def test_every_event_is_logged_once_with_its_trace_and_sequence(
        harness: Harness, tenant: str, spans: InMemorySpanExporter) -> None:
    ids = await _story(harness, tenant)
    _, head, leaves = await _log(harness, tenant)
    published = await harness.next_events(f"{harness.root}.v1.{tenant}.evt.>",
                                          n=await harness.event_count(f"{harness.root}.v1.{tenant}.evt.>"))
    assert [leaf["seq"] for leaf in leaves] == list(range(len(published))) and head.entries == len(published)
    by_id = {leaf["msg_id"]: leaf for leaf in leaves}
    assert set(by_id) == {m.headers[H.MSG_ID] for m in published}  # each exactly once
    for msg in published:
        leaf = by_id[msg.headers[H.MSG_ID]]
        assert leaf["status"] == "verified" and leaf["event"] == sub.topic_for(msg.subject).name  # type: ignore[union-attr]
        assert leaf["trace_id"] == trace_id_of(msg.headers) and leaf["trace_id"] is not None
    events = {leaf["event"] for leaf in leaves}
    assert {"tenant.created", "orchestrator.added", "agent.spawn_requested", "agent.registered",
            "agent.spawn_rejected", "credential.issued", "agent.exited", "credential.revoked"} <= events
    rejected = next(leaf for leaf in leaves if leaf["event"] == "agent.spawn_rejected")
    assert rejected["decision"] == "deny" and rejected["reasons"][0] == "authority_exceeded"
    exited = next(leaf for leaf in leaves if leaf["event"] == "agent.exited")
    assert exited["subject"]["orchestrator"] == ids["orchestrator"] and exited["on_behalf_of"] == "bob"

    # The span that logged each entry continues the event's trace and carries the sequence.
    logged = {(s.context.trace_id, s.attributes.get("agentid.audit.sequence"))
              for s in spans.get_finished_spans() if s.attributes and s.attributes.get("agentid.audit.log") == tenant}
    for leaf in leaves:
        assert (int(leaf["trace_id"], 16), leaf["seq"]) in logged


async def test_inclusion_and_consistency_proofs_verify(harness: Harness, tenant: str) -> None:
    await _story(harness, tenant)
    client, head, leaves = await _log(harness, tenant)
    listing = await client.checkpoints()
    assert listing.checkpoints[0].size == 1  # a new log signs its first tree head at once
    assert listing.checkpoints[-1] == head.checkpoint and listing.log_public_key == head.log_public_key
    for seq in range(head.checkpoint.size):
        proof = await client.proof(seq)
        assert json.loads(proof.leaf) == leaves[seq]
        verify_inclusion(proof.leaf, proof.leaf_index, proof.hashes, proof.checkpoint, head.log_public_key)
    old = listing.checkpoints[0]
    proof = await client.proof(0, old.size)
    verify_inclusion(proof.leaf, 0, proof.hashes, old.note, head.log_public_key)
    for cp in listing.checkpoints[:-1]:
        c = await client.consistency(cp.size)
        verify_consistency(c.old_checkpoint, c.checkpoint, c.hashes, head.log_public_key)
    assert (await client.checkpoint(old.size)).checkpoint == old


async def test_proof_requests_that_cannot_be_answered_are_refused(harness: Harness, tenant: str) -> None:
    client, head, _ = await _log(harness, tenant)
    size = head.checkpoint.size
    with pytest.raises(NotFound):
        await client.checkpoint(size + 1000)
    with pytest.raises(NotFound):
        await client.proof(0, size + 1000)
    with pytest.raises(InvalidRequest):
        await client.proof(size, size)
    with pytest.raises(NotFound):
        await client.proof(size + 5)
    with pytest.raises(InvalidRequest):
        await client.consistency(size + 1, size)
    with pytest.raises(NotFound):
        await client.consistency(0, size)  # the empty tree was never signed
    with pytest.raises(NotFound):
        await AuditClient(harness.operator, "tnolog").checkpoint()
    with pytest.raises(InvalidRequest):
        await client.proof(-1)
    assert (await AuditClient(harness.operator, "tnolog").query()).entries == []


async def test_forged_misrouted_and_malformed_events_are_logged_as_rejected(harness: Harness, tenant: str) -> None:
    await harness.new_orchestrator(tenant)
    await _log(harness, tenant)
    js = harness.operator.js
    registration = harness.keyring.signer("service", "registration")
    subject = sub.TENANT_CREATED.subject(tenant, harness.root)
    payload = msgspec.json.encode(reg.TenantCreated(tenant=tenant, trust_domain="x.y", at=datetime.now(UTC)))
    forged = sign(registration, subject, payload)
    await js.publish(subject, payload.replace(b"x.y", b"z.w"), headers=forged)
    stranger = Signer("spiffe://agentid.system/service/registration", PrivateKey.generate())
    await js.publish(subject, payload, headers=sign(stranger, subject, payload))
    bogus = f"{harness.root}.v1.{tenant}.evt.bogus.thing"
    await js.publish(bogus, b"{}", headers=sign(registration, bogus, b"{}"))
    await js.publish(subject, b"not json", headers=sign(registration, subject, b"not json"))
    issuance = harness.keyring.signer("service", "issuance")
    await js.publish(subject, payload, headers=sign(issuance, subject, payload))

    _, _, leaves = await _log(harness, tenant)
    verdicts = sorted((leaf["event"], leaf["reasons"][0]) for leaf in leaves if leaf["status"] == "rejected")
    assert verdicts == sorted([("tenant.created", "invalid_signature"), ("tenant.created", "unknown_sender"),
                        ("bogus.thing", "invalid_request"), ("tenant.created", "invalid_request"),
                        ("tenant.created", "forbidden")])  # the unknown sender's comes last: it was retried


async def test_unverifiable_events_for_a_tenant_without_a_log_go_to_the_deployment_log(harness: Harness) -> None:
    nobody = f"tghost{secrets.token_hex(4)}"
    subject = sub.TENANT_CREATED.subject(nobody, harness.root)
    payload = b'{"tenant": "nope"}'
    stranger = Signer("spiffe://agentid.system/service/registration", PrivateKey.generate())
    ack = await harness.operator.js.publish(subject, payload, headers=sign(stranger, subject, payload))
    deployment = AuditClient(harness.operator, "_deployment")

    async def logged() -> bool:
        try:
            page = await deployment.query(event="tenant.created", limit=500)
        except NotFound:
            return False
        return any(json.loads(e.leaf)["tenant"] == nobody for e in page.entries)

    await eventually(logged, timeout=20)
    assert ack.seq > 0
    with pytest.raises(NotFound):
        await AuditClient(harness.operator, nobody).checkpoint()  # no log (no key) for a name a stranger chose


async def test_queries_filter_and_page(harness: Harness, tenant: str) -> None:
    ids = await _story(harness, tenant)
    client, _, leaves = await _log(harness, tenant)

    async def seqs(**filters: Any) -> list[int]:
        return [e.seq async for e in client.entries(**filters)]

    about_second = [leaf["seq"] for leaf in leaves if ids["second"] in json.dumps(leaf)]
    assert await seqs(agent_id=ids["second"]) == about_second
    assert await seqs(user="bob") == [leaf["seq"] for leaf in leaves if leaf.get("on_behalf_of") == "bob"]
    assert await seqs(event="agent.registered") == [leaf["seq"] for leaf in leaves if leaf["event"] == "agent.registered"]
    trace = leaves[2]["trace_id"]
    assert await seqs(trace_id=trace) == [leaf["seq"] for leaf in leaves if leaf["trace_id"] == trace]
    middle = datetime.fromisoformat(leaves[len(leaves) // 2]["time"])
    assert await seqs(since=middle) == [leaf["seq"] for leaf in leaves if datetime.fromisoformat(leaf["time"]) >= middle]
    assert await seqs(until=middle) == [leaf["seq"] for leaf in leaves if datetime.fromisoformat(leaf["time"]) < middle]
    page = await client.query(limit=2)
    assert [e.seq for e in page.entries] == [0, 1] and page.next_after == 1
    rest = await client.query(after=page.next_after, limit=500)
    assert rest.entries[0].seq == 2 and rest.next_after is None
    assert await seqs(agent_id="agt_nobody") == []


@pytest.mark.parametrize("body", [
    {"limit": 0}, {"limit": 501}, {"trace_id": "XYZ"}, {"trace_id": "ab" * 16 + "\n"}, {"event": "Agent.Registered"},
    {"since": "2026-01-01T00:00:00"}, {"agent_id": "a" * 65}, {"after": -1}, {"unknown": 1},
    {"since": "2026-01-02T00:00:00Z", "until": "2026-01-01T00:00:00Z"},
])
async def test_malformed_queries_are_refused(harness: Harness, tenant: str, body: dict[str, Any]) -> None:
    code, reply = await harness.raw_request(
        sub.AUDIT_QUERY.subject(tenant, harness.root), json.dumps(body).encode(),
        harness.operator.envelope(sub.AUDIT_QUERY.subject(tenant, harness.root), json.dumps(body).encode()))
    assert code == "invalid_request", reply


async def test_orchestrators_and_agents_read_only_their_own_entries(harness: Harness, tenant: str) -> None:
    orch_a, record_a, _ = await harness.new_orchestrator(tenant)
    agent_a, _ = await harness.new_agent(orch_a)
    orch_b, record_b, _ = await harness.new_orchestrator(tenant)
    agent_b, _ = await harness.new_agent(orch_b)
    _, head, leaves = await _log(harness, tenant)

    def about(leaf: dict[str, Any], *ids: str) -> bool:
        text = json.dumps(leaf)
        return any(i in text for i in ids)

    view_a = AuditClient(orch_a.bus, tenant)
    seen = [json.loads(e.leaf) async for e in view_a.entries()]
    expected = [leaf for leaf in leaves if leaf["status"] == "verified" and about(leaf, record_a.orchestrator_id)]
    assert seen == expected and len(seen) >= 3  # its addition, its agent's registration and credential
    assert not any(about(leaf, record_b.orchestrator_id, agent_b.agent_id) for leaf in seen)
    foreign = next(leaf["seq"] for leaf in leaves if about(leaf, agent_b.agent_id))
    with pytest.raises(Forbidden):
        await view_a.proof(foreign)
    assert [e async for e in view_a.entries(agent_id=agent_b.agent_id)] == []

    view_b = AuditClient(agent_b.bus, tenant)
    own = [json.loads(e.leaf) async for e in view_b.entries()]
    assert own and all(about(leaf, agent_b.agent_id) for leaf in own)
    proof = await view_b.proof(own[0]["seq"])
    verify_inclusion(proof.leaf, proof.leaf_index, proof.hashes, proof.checkpoint,
                     (await view_b.checkpoint()).log_public_key)  # checkpoints are open to every party
    with pytest.raises(Forbidden):
        await view_b.proof(0)  # tenant.created is nobody's but the operators'

    # A party of another tenant is refused (forbidden, or unknown here if its registration is not in yet).
    outsider, _, _ = await harness.new_orchestrator(await harness.new_tenant())
    with pytest.raises((Forbidden, UnknownSender)):
        await AuditClient(outsider.bus, tenant).checkpoint()
    with pytest.raises((Forbidden, UnknownSender)):
        await AuditClient(outsider.bus, tenant).query()
    for party in (orch_a, agent_a, orch_b, agent_b, outsider):
        await party.close()
    assert head.entries == len(leaves)


async def test_services_may_read_checkpoints_but_not_entries(harness: Harness, tenant: str) -> None:
    await _log(harness, tenant)
    from shared.bus import Bus

    bus = await Bus.connect(harness.settings.nats_url or "", name="as-token-service",
                            signer=harness.keyring.signer("service", "token"), registry=harness.keyring.registry(),
                            root=harness.root)
    try:
        as_service = AuditClient(bus, tenant)
        assert (await as_service.checkpoint()).checkpoint.size >= 1
        with pytest.raises(Forbidden):
            await as_service.query()
        with pytest.raises(Forbidden):
            await as_service.proof(0)
    finally:
        await bus.drain()

