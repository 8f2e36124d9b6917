"""Spawning agents: identities, idempotency, authority, proof of possession, exit, robustness."""

from __future__ import annotations

import re

import msgspec
import pytest
from opentelemetry import trace
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from agentid.keys import AgentKey
from contracts import registration as reg
from contracts import subjects as sub
from shared.bus import Signer
from shared.bus.signing import sign
from shared.errors import (
    AgentInactive, AuthorityExceeded, Conflict, Forbidden, InvalidProof, InvalidRequest, KeyInUse,
    QuotaExceeded,
)
from shared.keys import PrivateKey, PublicKey
from shared.possession import spawn_proof
from tests.helpers import SPAWN_FIELDS, Harness, eventually

pytestmark = pytest.mark.integration

AGENT_ID = re.compile(r"^agt_[0-9A-HJKMNP-TV-Z]{26}$")


async def test_spawn_returns_identity_and_emits_one_event(harness: Harness, tenant: str) -> None:
    orch, record, _ = await harness.new_orchestrator(tenant)
    key = AgentKey.generate()
    async with orch:
        agent = await orch.spawn(key, **SPAWN_FIELDS)
    assert AGENT_ID.match(agent.agent_id)
    assert agent.spiffe_id == f"spiffe://{agent.trust_domain}/agent/{agent.agent_id}"
    assert agent.did == key.did and agent.did.startswith("did:key:z6Mk")
    assert PublicKey.from_did(agent.did) == PublicKey.from_jwk(agent.public_jwk)
    assert agent.orchestrator_id == record.orchestrator_id and agent.status == "active"
    [msg] = await harness.next_events(sub.AGENT_REGISTERED.subject(tenant, harness.root))
    event = msgspec.json.decode(msg.data, type=reg.AgentRegistered)
    assert event.agent.agent_id == agent.agent_id and event.spawn_id == agent.spawn_id


async def test_es256_agent_keys_are_accepted(harness: Harness, tenant: str) -> None:
    orch, _, _ = await harness.new_orchestrator(tenant)
    key = AgentKey.generate("ES256")
    async with orch:
        agent = await orch.spawn(key, **SPAWN_FIELDS)
    assert agent.did.startswith("did:key:zDn")
    assert PublicKey.from_did(agent.did).thumbprint == key.thumbprint


async def test_same_spawn_id_twice_makes_one_agent(harness: Harness, tenant: str) -> None:
    orch, _, _ = await harness.new_orchestrator(tenant)
    async with orch:
        request = orch.spawn_request(AgentKey.generate(), **SPAWN_FIELDS)
        first = await orch.submit(request)
        second = await orch.submit(request)  # a retry: new message id, same spawn
    assert first.agent_id == second.agent_id
    assert await harness.count("SELECT count(*) FROM registration.agents WHERE tenant = $1", tenant) == 1
    assert await harness.event_count(sub.AGENT_REGISTERED.subject(tenant, harness.root)) == 1


async def test_spawn_id_reused_for_another_key_is_refused(harness: Harness, tenant: str) -> None:
    orch, _, _ = await harness.new_orchestrator(tenant)
    async with orch:
        first = orch.spawn_request(AgentKey.generate(), **SPAWN_FIELDS)
        await orch.submit(first)
        with pytest.raises(Conflict):
            await orch.submit(orch.spawn_request(AgentKey.generate(), spawn_id=first.spawn_id, **SPAWN_FIELDS))


async def test_spawn_through_the_jetstream_event(harness: Harness, tenant: str) -> None:
    orch, _, _ = await harness.new_orchestrator(tenant)
    async with orch:
        request = orch.spawn_request(AgentKey.generate(), **SPAWN_FIELDS)
        agent = await orch.spawn_via_event(request)
    assert agent.spawn_id == request.spawn_id and agent.status == "active"


async def test_spawn_event_published_twice_makes_one_agent(harness: Harness, tenant: str) -> None:
    """Two deliveries of one spawn: the same event under two message ids (JetStream cannot
    de-duplicate those); registration makes one agent and emits one registered event."""
    orch, _, _ = await harness.new_orchestrator(tenant)
    async with orch:
        request = orch.spawn_request(AgentKey.generate(), **SPAWN_FIELDS)
        await orch.bus.publish_event(sub.SPAWN_REQUESTED, tenant, request, msg_id=request.spawn_id)
        await orch.bus.publish_event(sub.SPAWN_REQUESTED, tenant, request, msg_id=request.spawn_id + "-again")
        marker = orch.spawn_request(AgentKey.generate(), **SPAWN_FIELDS)
        await orch.spawn_via_event(marker)  # processed in order: both copies were handled before it
    assert await harness.count("SELECT count(*) FROM registration.agents WHERE tenant = $1 AND spawn_id = $2",
                               tenant, request.spawn_id) == 1
    assert await harness.count("SELECT count(*) FROM registration.inbox WHERE msg_id LIKE $1",
                               request.spawn_id + "%") >= 1
    assert await harness.event_count(sub.AGENT_REGISTERED.subject(tenant, harness.root)) == 2  # request + marker


async def test_refused_spawn_event_becomes_a_rejection_event(harness: Harness, tenant: str) -> None:
    orch, _, _ = await harness.new_orchestrator(tenant)
    async with orch:
        request = orch.spawn_request(AgentKey.generate(), **{**SPAWN_FIELDS, "tier": "root"})
        with pytest.raises(AuthorityExceeded):
            await orch.spawn_via_event(request)
    [msg] = await harness.next_events(sub.AGENT_SPAWN_REJECTED.subject(tenant, harness.root))
    assert msgspec.json.decode(msg.data, type=reg.AgentSpawnRejected).code == "authority_exceeded"


# -- authority ---------------------------------------------------------------------------------
@pytest.mark.parametrize("field,value", [("tier", "critical"), ("purpose", "trading"),
                                         ("data_class", "restricted"), ("lifetime_s", 7200)])
async def test_spawn_beyond_authority_is_refused(harness: Harness, tenant: str, field: str, value: object) -> None:
    orch, _, _ = await harness.new_orchestrator(tenant)
    async with orch:
        with pytest.raises(AuthorityExceeded):
            await orch.spawn(AgentKey.generate(), **{**SPAWN_FIELDS, field: value})
    assert await harness.count("SELECT count(*) FROM registration.agents WHERE tenant = $1", tenant) == 0


async def test_spawn_beyond_quota_is_refused(harness: Harness, tenant: str) -> None:
    orch, _, _ = await harness.new_orchestrator(tenant, reg.Authority(
        tiers=["standard"], purposes=["testing"], data_classes=["internal"], max_live_agents=2))
    async with orch:
        first = await orch.spawn(AgentKey.generate(), **SPAWN_FIELDS)
        await orch.spawn(AgentKey.generate(), **SPAWN_FIELDS)
        with pytest.raises(QuotaExceeded):
            await orch.spawn(AgentKey.generate(), **SPAWN_FIELDS)
        await orch.exit(first.agent_id)  # an exited agent frees its place
        await orch.spawn(AgentKey.generate(), **SPAWN_FIELDS)


# -- proof of possession -----------------------------------------------------------------------
async def test_spawn_with_proof_by_another_key_is_refused(harness: Harness, tenant: str) -> None:
    orch, record, _ = await harness.new_orchestrator(tenant)
    async with orch:
        request = orch.spawn_request(AgentKey.generate(), **SPAWN_FIELDS)
        forged = spawn_proof(PrivateKey.generate(), spawn_id=request.spawn_id,
                             orchestrator=record.spiffe_id, tenant=tenant)
        with pytest.raises(InvalidProof):
            await orch.submit(msgspec.structs.replace(request, proof=forged))


@pytest.mark.parametrize("claim", ["spawn_id", "orchestrator", "tenant"])
async def test_spawn_proof_for_something_else_is_refused(harness: Harness, tenant: str, claim: str) -> None:
    orch, record, _ = await harness.new_orchestrator(tenant)
    key = AgentKey.generate()
    async with orch:
        request = orch.spawn_request(key, **SPAWN_FIELDS)
        bound = {"spawn_id": request.spawn_id, "orchestrator": record.spiffe_id, "tenant": tenant}
        bound[claim] = bound[claim] + "-other"
        proof = spawn_proof(key.private, **bound)
        with pytest.raises(InvalidProof):
            await orch.submit(msgspec.structs.replace(request, proof=proof))


async def test_spawn_with_expired_or_garbage_proof_is_refused(harness: Harness, tenant: str) -> None:
    orch, record, _ = await harness.new_orchestrator(tenant)
    key = AgentKey.generate()
    async with orch:
        request = orch.spawn_request(key, **SPAWN_FIELDS)
        old = spawn_proof(key.private, spawn_id=request.spawn_id, orchestrator=record.spiffe_id,
                          tenant=tenant, now=1_700_000_000)
        for proof in (old, "not.a.jws", "e30.e30.e30"):
            with pytest.raises(InvalidProof):
                await orch.submit(msgspec.structs.replace(request, proof=proof))


async def test_key_of_a_live_agent_cannot_be_registered_again(harness: Harness, tenant: str) -> None:
    orch, _, _ = await harness.new_orchestrator(tenant)
    key = AgentKey.generate()
    async with orch:
        first = await orch.spawn(key, **SPAWN_FIELDS)
        with pytest.raises(KeyInUse):
            await orch.spawn(key, **SPAWN_FIELDS)
        await orch.exit(first.agent_id)
        assert (await orch.spawn(key, **SPAWN_FIELDS)).agent_id != first.agent_id


async def test_bad_public_key_is_refused(harness: Harness, tenant: str) -> None:
    orch, _, _ = await harness.new_orchestrator(tenant)
    async with orch:
        request = orch.spawn_request(AgentKey.generate(), **SPAWN_FIELDS)
        with pytest.raises(InvalidRequest):
            await orch.submit(msgspec.structs.replace(request, public_jwk={"kty": "OKP", "crv": "Ed25519", "x": "AAAA"}))


# -- exit ----------------------------------------------------------------------------------------
async def test_exit_retires_the_agent_and_its_messages(harness: Harness, tenant: str) -> None:
    orch, _, _ = await harness.new_orchestrator(tenant)
    key = AgentKey.generate()
    async with orch:
        agent = await orch.spawn(key, **SPAWN_FIELDS)
        ended = await orch.exit(agent.agent_id, reason="task done")
        assert ended.status == "exited" and ended.end_reason == "task done"
        again = await orch.exit(agent.agent_id)  # idempotent: no second event
        assert again.ended_at == ended.ended_at
    [msg] = await harness.next_events(sub.AGENT_EXITED.subject(tenant, harness.root))
    assert msgspec.json.decode(msg.data, type=reg.AgentExited).agent_id == agent.agent_id
    assert await harness.event_count(sub.AGENT_EXITED.subject(tenant, harness.root)) == 1
    # The exited agent's own key no longer gets it anywhere.
    subject = sub.GET_AGENT.subject(tenant, harness.root)
    payload = msgspec.json.encode(reg.GetAgent(agent_id=agent.agent_id))
    code, _ = await harness.raw_request(subject, payload, sign(Signer(agent.spiffe_id, key.private), subject, payload))
    assert code == AgentInactive.code


async def test_other_orchestrator_may_not_exit_an_agent(harness: Harness, tenant: str) -> None:
    orch, _, _ = await harness.new_orchestrator(tenant)
    other, _, _ = await harness.new_orchestrator(tenant)
    async with orch, other:
        agent = await orch.spawn(AgentKey.generate(), **SPAWN_FIELDS)
        with pytest.raises(Forbidden):
            await other.exit(agent.agent_id)
        assert (await orch.get(agent.agent_id)).status == "active"


async def test_agent_may_exit_itself(harness: Harness, tenant: str) -> None:
    orch, _, _ = await harness.new_orchestrator(tenant)
    key = AgentKey.generate()
    async with orch:
        agent = await orch.spawn(key, **SPAWN_FIELDS)
    subject = sub.EXIT_AGENT.subject(tenant, harness.root)
    payload = msgspec.json.encode(reg.ExitAgent(agent_id=agent.agent_id))
    code, body = await harness.raw_request(subject, payload, sign(Signer(agent.spiffe_id, key.private), subject, payload))
    assert code is None and body["status"] == "exited"


# -- robustness and tracing ----------------------------------------------------------------------
async def test_malformed_messages_do_not_stop_the_worker(harness: Harness, tenant: str) -> None:
    orch, record, key = await harness.new_orchestrator(tenant)
    js = harness.nc.jetstream()
    event_subject = sub.SPAWN_REQUESTED.subject(tenant, harness.root)
    signer = Signer(record.spiffe_id, key)
    garbage = [b"", b"\xff\xfe", b"{" * 5000, b'{"spawn_id": []}']
    for payload in garbage:
        await harness.nc.publish(sub.SPAWN.subject(tenant, harness.root), payload)  # no reply wanted
        await js.publish(event_subject, payload)                                      # unsigned
        await js.publish(event_subject, payload, headers=sign(signer, event_subject, payload))  # signed junk
    await harness.nc.publish(f"{harness.root}.v1.{tenant}.registration.spawn", b"\x00" * 100_000)
    async with orch:
        agent = await orch.spawn(AgentKey.generate(), **SPAWN_FIELDS)
        assert agent.status == "active"
        via_event = await orch.spawn_via_event(orch.spawn_request(AgentKey.generate(), **SPAWN_FIELDS))
        assert via_event.status == "active"
    assert await harness.count("SELECT count(*) FROM registration.agents WHERE tenant = $1", tenant) == 2


async def test_spawn_trace_contains_the_registration_span(harness: Harness, tenant: str,
                                                          spans: InMemorySpanExporter) -> None:
    orch, _, _ = await harness.new_orchestrator(tenant)
    tracer = trace.get_tracer("test-orchestrator")
    async with orch:
        with tracer.start_as_current_span("create_agent", attributes={"gen_ai.operation.name": "create_agent"}) as root:
            agent = await orch.spawn(AgentKey.generate(), **SPAWN_FIELDS)
    trace_id = root.get_span_context().trace_id

    async def registered_span_exported() -> bool:
        return any(s.context.trace_id == trace_id and s.name.endswith("registration.spawn")
                   and s.kind == trace.SpanKind.SERVER for s in spans.get_finished_spans())

    await eventually(registered_span_exported)
    [server] = [s for s in spans.get_finished_spans() if s.context.trace_id == trace_id
                and s.kind == trace.SpanKind.SERVER]
    assert server.attributes["gen_ai.agent.id"] == agent.spiffe_id
    assert server.attributes["agentid.tenant"] == tenant
    assert server.attributes["messaging.system"] == "nats"
    # The registered event carries the same trace onwards.
    [msg] = await harness.next_events(sub.AGENT_REGISTERED.subject(tenant, harness.root))
    assert f"{trace_id:032x}" in msg.headers["traceparent"]
