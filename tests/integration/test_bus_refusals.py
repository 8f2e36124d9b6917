"""The signed bus refuses what it must, against real NATS and Postgres, and writes nothing."""

from __future__ import annotations

import time

import msgspec
import pytest

from agentid.keys import AgentKey
from contracts import headers as H
from contracts import registration as reg
from contracts import subjects as sub
from shared.b64 import b64u_decode, b64u_encode
from shared.bus import Signer
from shared.bus.signing import sign
from shared.keys import PrivateKey
from tests.helpers import SPAWN_FIELDS, Harness

pytestmark = pytest.mark.integration


async def _setup(harness: Harness, tenant: str):
    orch, record, key = await harness.new_orchestrator(tenant)
    await orch.close()
    signer = Signer(record.spiffe_id, key)
    request = orch.spawn_request(AgentKey.generate(), **SPAWN_FIELDS)
    subject = sub.SPAWN.subject(tenant, harness.root)
    return signer, request, subject


async def _nothing_written(harness: Harness, tenant: str) -> None:
    assert await harness.count("SELECT count(*) FROM registration.agents WHERE tenant = $1", tenant) == 0
    assert await harness.event_count(sub.AGENT_REGISTERED.subject(tenant, harness.root)) == 0


async def test_valid_signed_request_is_accepted(harness: Harness, tenant: str) -> None:
    signer, request, subject = await _setup(harness, tenant)
    payload = msgspec.json.encode(request)
    code, body = await harness.raw_request(subject, payload, sign(signer, subject, payload))
    assert code is None
    assert body["spiffe_id"].startswith("spiffe://")


async def test_bad_signature_is_refused(harness: Harness, tenant: str) -> None:
    signer, request, subject = await _setup(harness, tenant)
    payload = msgspec.json.encode(request)
    headers = sign(signer, subject, payload)
    sig = bytearray(b64u_decode(headers[H.SIGNATURE]))
    sig[0] ^= 0x01
    headers[H.SIGNATURE] = b64u_encode(bytes(sig))
    code, _ = await harness.raw_request(subject, payload, headers)
    assert code == "invalid_signature"
    await _nothing_written(harness, tenant)


async def test_body_changed_after_signing_is_refused(harness: Harness, tenant: str) -> None:
    signer, request, subject = await _setup(harness, tenant)
    payload = msgspec.json.encode(request)
    headers = sign(signer, subject, payload)
    tampered = payload.replace(b'"standard"', b'"high"')
    code, _ = await harness.raw_request(subject, tampered, headers)
    assert code == "invalid_signature"
    await _nothing_written(harness, tenant)


async def test_signature_for_another_subject_is_refused(harness: Harness, tenant: str) -> None:
    signer, request, subject = await _setup(harness, tenant)
    payload = msgspec.json.encode(request)
    headers = sign(signer, sub.GET_AGENT.subject(tenant, harness.root), payload)
    code, _ = await harness.raw_request(subject, payload, headers)
    assert code == "invalid_signature"
    await _nothing_written(harness, tenant)


async def test_missing_envelope_is_refused(harness: Harness, tenant: str) -> None:
    _, request, subject = await _setup(harness, tenant)
    code, _ = await harness.raw_request(subject, msgspec.json.encode(request), None)
    assert code == "invalid_signature"
    await _nothing_written(harness, tenant)


async def test_unknown_sender_is_refused(harness: Harness, tenant: str) -> None:
    _, request, subject = await _setup(harness, tenant)
    payload = msgspec.json.encode(request)
    stranger = Signer(f"spiffe://{tenant}.agentid.local/orchestrator/orc_nobody", PrivateKey.generate())
    code, _ = await harness.raw_request(subject, payload, sign(stranger, subject, payload))
    assert code == "unknown_sender"
    await _nothing_written(harness, tenant)


async def test_known_sender_with_another_key_is_refused(harness: Harness, tenant: str) -> None:
    signer, request, subject = await _setup(harness, tenant)
    payload = msgspec.json.encode(request)
    impostor = Signer(signer.sender, PrivateKey.generate())
    code, _ = await harness.raw_request(subject, payload, sign(impostor, subject, payload))
    assert code == "unknown_sender"
    await _nothing_written(harness, tenant)


@pytest.mark.parametrize("offset_s", [-120, +120])
async def test_stale_or_future_timestamp_is_refused(harness: Harness, tenant: str, offset_s: int) -> None:
    signer, request, subject = await _setup(harness, tenant)
    payload = msgspec.json.encode(request)
    ts = int((time.time() + offset_s) * 1000)
    code, _ = await harness.raw_request(subject, payload, sign(signer, subject, payload, ts_ms=ts))
    assert code == "stale"
    await _nothing_written(harness, tenant)


async def test_reused_message_id_is_refused(harness: Harness, tenant: str) -> None:
    signer, request, subject = await _setup(harness, tenant)
    payload = msgspec.json.encode(request)
    headers = sign(signer, subject, payload)
    code, _ = await harness.raw_request(subject, payload, headers)
    assert code is None
    # The very same message again, and a new body under the same id: both replays.
    code, _ = await harness.raw_request(subject, payload, headers)
    assert code == "replay"
    other = msgspec.json.encode(msgspec.structs.replace(request, spawn_id=request.spawn_id + "x"))
    code, _ = await harness.raw_request(subject, other, sign(signer, subject, other, msg_id=headers[H.MSG_ID]))
    assert code == "replay"
    assert await harness.count("SELECT count(*) FROM registration.agents WHERE tenant = $1", tenant) == 1


async def test_unknown_field_is_refused(harness: Harness, tenant: str) -> None:
    signer, request, subject = await _setup(harness, tenant)
    body = msgspec.to_builtins(request)
    body["is_admin"] = True
    payload = msgspec.json.encode(body)
    code, reply = await harness.raw_request(subject, payload, sign(signer, subject, payload))
    assert code == "invalid_request"
    assert "is_admin" in reply["message"]
    await _nothing_written(harness, tenant)


@pytest.mark.parametrize("payload", [b"", b"not json", b"[]", b'{"spawn_id": 7}', b"{" * 10_000,
                                     b"x" * (70 * 1024)])
async def test_malformed_payload_is_refused(harness: Harness, tenant: str, payload: bytes) -> None:
    signer, _, subject = await _setup(harness, tenant)
    code, _ = await harness.raw_request(subject, payload, sign(signer, subject, payload))
    assert code == "invalid_request"
    await _nothing_written(harness, tenant)


async def test_orchestrator_of_another_tenant_is_refused(harness: Harness, tenant: str) -> None:
    signer, request, _ = await _setup(harness, tenant)
    other = await harness.new_tenant()
    subject = sub.SPAWN.subject(other, harness.root)
    payload = msgspec.json.encode(request)
    code, _ = await harness.raw_request(subject, payload, sign(signer, subject, payload))
    assert code == "forbidden"
    await _nothing_written(harness, other)
    await _nothing_written(harness, tenant)


async def test_orchestrator_may_not_act_as_operator(harness: Harness, tenant: str) -> None:
    signer, _, _ = await _setup(harness, tenant)
    subject = sub.ADD_ORCHESTRATOR.subject(tenant, harness.root)
    payload = msgspec.json.encode(reg.AddOrchestrator(name="rogue", public_jwk=PrivateKey.generate().public.jwk()))
    code, _ = await harness.raw_request(subject, payload, sign(signer, subject, payload))
    assert code == "forbidden"
    assert await harness.count("SELECT count(*) FROM registration.orchestrators WHERE tenant = $1 AND name = 'rogue'",
                               tenant) == 0


async def test_reply_is_signed_by_the_service(harness: Harness, tenant: str) -> None:
    signer, request, subject = await _setup(harness, tenant)
    payload = msgspec.json.encode(request)
    msg = await harness.nc.request(subject, payload, headers=sign(signer, subject, payload), timeout=5)
    assert msg.headers[H.SENDER] == harness.keyring.sender("service", "registration")
    from shared.bus.signing import authenticate

    verified = await authenticate(msg.subject, msg.headers, msg.data, harness.keyring.registry())
    assert verified.sender.subject_id == "registration"
