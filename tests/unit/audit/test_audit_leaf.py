"""What an audit leaf holds, what it never holds, and the verdict on each kind of message."""

from __future__ import annotations

import hashlib
import json
from datetime import UTC, datetime, timedelta

import msgspec
import msgspec.inspect as mi
import pytest

from contracts import headers as H
from contracts import registration as reg
from contracts import subjects as sub
from contracts.subjects import TOPICS, events_subject
from services.audit.describe import DESCRIBERS, act_path, delegation_path, describe
from services.audit.intake import Intake, Raw, dedup_key, trace_id_of
from services.audit.leaf import build_leaf, terms_of
from shared.b64 import b64u_decode
from shared.bus.registry import SenderKey, StaticRegistry
from shared.bus.signing import Signer, sign, signing_input
from shared.canonical import canonical_json
from shared.keys import PrivateKey
from tests.helpers import subject_matches

ROOT = "agentid"
TENANT = "acme"
NOW = datetime(2026, 3, 1, 12, 0, 0, 123456, tzinfo=UTC)
REGISTRATION = PrivateKey.generate()
ORCH_KEY = PrivateKey.generate()
REG_SENDER = "spiffe://agentid.system/service/registration"
ORCH_SENDER = f"spiffe://{TENANT}.agentid.local/orchestrator/orc_1"
TRACEPARENT = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"


def _registry() -> StaticRegistry:
    return StaticRegistry([
        SenderKey(sender=REG_SENDER, kind="service", key=REGISTRATION.public, subject_id="registration"),
        SenderKey(sender=ORCH_SENDER, kind="orchestrator", key=ORCH_KEY.public, subject_id="orc_1", tenant=TENANT),
    ])


def _intake(max_attempts: int = 3) -> Intake:
    return Intake(_registry(), max_skew_ms=30_000, max_age_ms=3_600_000, max_attempts=max_attempts)


def _agent(**over: object) -> reg.AgentIdentity:
    fields = dict(
        agent_id="agt_1", tenant=TENANT, trust_domain=f"{TENANT}.agentid.local",
        spiffe_id=f"spiffe://{TENANT}.agentid.local/agent/agt_1", did="did:key:z6Mk", public_jwk={"kty": "OKP"},
        key_id="kid", orchestrator_id="orc_1", spawn_id="s1", purpose="testing",
        model=reg.Model(name="m", version="1"), tier="standard", data_class="internal",
        controller=reg.Controller(type="user", id="alice@example.com"), status="active", created_at=NOW,
        expires_at=NOW + timedelta(hours=1),
        svid=reg.X509Svid(spiffe_id="spiffe://x/agent/agt_1", cert_pem="-----BEGIN CERTIFICATE-----SECRETPEM",
                          chain_pem=["-----BEGIN CERTIFICATE-----CHAINPEM"], serial="ab", not_before=NOW,
                          not_after=NOW + timedelta(hours=1)))
    fields.update(over)
    return reg.AgentIdentity(**fields)  # type: ignore[arg-type]


def _raw(topic: sub.Topic, body: object, *, signer: Signer | None = None, tenant: str = TENANT,
         attempt: int = 1, **header_changes: str | None) -> Raw:
    subject = topic.subject(tenant, ROOT)
    payload = msgspec.json.encode(body)
    headers = sign(signer or Signer(REG_SENDER, REGISTRATION), subject, payload)
    headers[H.TRACEPARENT] = TRACEPARENT
    for name, value in header_changes.items():
        name = {"sig": H.SIGNATURE, "sender": H.SENDER}.get(name, name)
        if value is None:
            headers.pop(name, None)
        else:
            headers[name] = value
    return Raw(subject, headers, payload, stored_ms=1_700_000_000_000, attempt=attempt)


def _registered() -> reg.AgentRegistered:
    return reg.AgentRegistered(spawn_id="s1", agent=_agent())


# ---- coverage ---------------------------------------------------------------------------------


def test_every_catalogue_topic_is_consumed_and_described() -> None:
    for topic in TOPICS:
        assert subject_matches(events_subject(ROOT), topic.subject(TENANT, ROOT)), topic.name
        assert topic.name in DESCRIBERS, f"{topic.name}: add its fields to services/audit/describe.py"
    assert set(DESCRIBERS) == {t.name for t in TOPICS}, "a describer for a topic that is gone"


# ---- the leaf ---------------------------------------------------------------------------------


async def test_a_verified_leaf_names_actor_subject_decision_trace_and_digest() -> None:
    raw = _raw(sub.AGENT_REGISTERED, _registered())
    ob = await _intake().observe(raw)
    assert ob is not None and ob.verified
    leaf_bytes = build_leaf(7, ob, {})
    leaf = json.loads(leaf_bytes)
    assert leaf_bytes == json.dumps(leaf, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()
    assert leaf["v"] == 1 and leaf["seq"] == 7 and leaf["tenant"] == TENANT and leaf["event"] == "agent.registered"
    assert leaf["status"] == "verified" and leaf["decision"] == "allow"
    assert leaf["actor"] == {"id": REG_SENDER, "kind": "service", "name": "registration",
                             "key_id": REGISTRATION.public.thumbprint}
    assert leaf["subject"]["type"] == "agent" and leaf["subject"]["id"] == "agt_1"
    assert leaf["act"] == [{"kind": "orchestrator", "id": "orc_1"}]
    assert leaf["on_behalf_of"] == "alice@example.com"
    assert leaf["trace_id"] == "4bf92f3577b34da6a3ce929d0e0e4736"
    assert leaf["msg_id"] == raw.headers[H.MSG_ID]
    ts = int(raw.headers[H.TIMESTAMP])
    assert leaf["time"] == datetime.fromtimestamp(ts / 1000, UTC).strftime("%Y-%m-%dT%H:%M:%S.") + f"{ts % 1000:03d}Z"
    # Whoever holds the signed event recomputes the digest from its subject, headers and payload.
    expected = signing_input(raw.subject, REG_SENDER, REGISTRATION.public.thumbprint, raw.headers[H.MSG_ID], ts,
                             raw.payload)
    assert leaf["event_digest"] == "sha256:" + hashlib.sha256(expected).hexdigest()
    assert REGISTRATION.public.verify(b64u_decode(raw.headers[H.SIGNATURE]), expected)


async def test_secrets_and_bulky_artifacts_never_reach_a_leaf() -> None:
    spawn = reg.SpawnAgent(spawn_id="s1", public_jwk={"kty": "OKP", "x": "PUBLICKEYX"}, proof="eyJ.SECRETPROOF.sig",
                           purpose="testing", model=reg.Model(name="m", version="1"), tier="standard",
                           data_class="internal", controller=reg.Controller(type="user", id="bob"))
    orch = Signer(ORCH_SENDER, ORCH_KEY)
    for raw in (_raw(sub.SPAWN_REQUESTED, spawn, signer=orch), _raw(sub.AGENT_REGISTERED, _registered())):
        ob = await _intake().observe(raw)
        assert ob is not None and ob.verified
        text = build_leaf(0, ob, {}).decode()
        for secret in ("SECRETPROOF", "PUBLICKEYX", "SECRETPEM", "CHAINPEM"):
            assert secret not in text


def test_delegation_summaries_keep_identifiers_only() -> None:
    cid = "bafyreigh2akiscaildcqabsyg3dfr6chu3fgpregiymsck7e7aqa4s52zy"
    chain = {"depth": 2, "root": "did:key:z6MkRoot",
             "path": ["did:key:z6MkA", "eyJhbGciOi.payload.sig", "spiffe://t/agent/agt_2"],
             "chain": [cid, "eyJhbGciOi.payload.sig"], "links": ["eyJhbGciOi.payload.sig"], "proof": "SECRET"}
    summary = delegation_path(chain)
    assert summary == {"depth": 2, "root": "did:key:z6MkRoot", "path": ["did:key:z6MkA", "spiffe://t/agent/agt_2"],
                       "chain": [cid]}
    assert delegation_path("eyJ.not.a.mapping") is None


def test_act_paths_flatten_nearest_actor_first_and_are_bounded() -> None:
    claim = {"sub": "spiffe://t/agent/agt_2", "act": {"sub": "spiffe://t/agent/agt_1", "act": {"sub": "alice"}}}
    assert act_path(claim) == ({"kind": "agent", "id": "spiffe://t/agent/agt_2"},
                               {"kind": "agent", "id": "spiffe://t/agent/agt_1"}, {"kind": "user", "id": "alice"})
    deep: dict = {"sub": "u0"}
    node = deep
    for i in range(1, 40):
        node["act"] = {"sub": f"u{i}"}
        node = node["act"]
    assert len(act_path(deep)) == 16
    assert act_path(None) == () and act_path({"sub": 5}) == ()


def test_index_terms_come_from_the_leaf_alone() -> None:
    leaf = {"status": "verified", "event": "token.issued", "trace_id": "ab" * 16,
            "actor": {"kind": "service", "name": "token"},
            "subject": {"type": "agent", "id": "agt_2", "orchestrator": "orc_1"},
            "act": [{"kind": "agent", "id": "spiffe://t/agent/agt_2"}, {"kind": "agent", "id": "agt_1"},
                    {"kind": "user", "id": "carol"}],
            "on_behalf_of": "alice"}
    terms = terms_of(leaf, NOW)
    assert terms.agents == ["agt_1", "agt_2"] and terms.users == ["alice", "carol"]
    assert terms.orchestrators == ["orc_1"] and terms.trace_id == "ab" * 16 and terms.event == "token.issued"
    rejected = terms_of({**leaf, "status": "rejected"}, NOW)
    assert rejected.agents == rejected.users == rejected.orchestrators == []


@pytest.mark.parametrize("value, expected", [
    (TRACEPARENT, "4bf92f3577b34da6a3ce929d0e0e4736"),
    ("00-00000000000000000000000000000000-00f067aa0ba902b7-01", None),
    ("00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01", None),
    ("01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01", None),
    ("00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01", None),
    ("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01\n", None),
    ("garbage", None),
])
def test_trace_ids_come_only_from_valid_traceparents(value: str, expected: str | None) -> None:
    assert trace_id_of({"traceparent": value}) == expected
    assert trace_id_of({"Traceparent": value}) == expected


def test_the_dedup_key_is_the_message_as_received() -> None:
    raw = _raw(sub.TENANT_CREATED, reg.TenantCreated(tenant=TENANT, trust_domain="a.b", at=NOW))
    assert dedup_key(raw) == dedup_key(Raw(raw.subject, dict(raw.headers), raw.payload, stored_ms=1, attempt=4))
    other_sig = dict(raw.headers, **{H.SIGNATURE: "AAAA"})
    assert dedup_key(Raw(raw.subject, other_sig, raw.payload, 1)) != dedup_key(raw)
    assert dedup_key(Raw(raw.subject, raw.headers, raw.payload + b" ", 1)) != dedup_key(raw)


# ---- verdicts ---------------------------------------------------------------------------------


async def _rejected(raw: Raw, code: str, intake: Intake | None = None) -> dict:
    ob = await (intake or _intake()).observe(raw)
    assert ob is not None and not ob.verified
    assert ob.reasons[0] == code, ob.reasons
    leaf = json.loads(build_leaf(0, ob, {}))
    assert leaf["status"] == "rejected" and leaf["subject"] == {} and "details" not in leaf
    assert leaf["reasons"][0] == code and leaf["actor"]["claimed"] is True
    assert leaf["event_digest"].startswith("sha256:") and leaf["time"] == "2023-11-14T22:13:20.000Z"
    return leaf


async def test_a_forged_signature_is_logged_as_rejected() -> None:
    raw = _raw(sub.TENANT_CREATED, reg.TenantCreated(tenant=TENANT, trust_domain="a.b", at=NOW))
    forged = Raw(raw.subject, dict(raw.headers), raw.payload.replace(b"a.b", b"x.y"), raw.stored_ms)
    leaf = await _rejected(forged, "invalid_signature")
    assert leaf["actor"]["id"] == REG_SENDER and leaf["trace_id"] == "4bf92f3577b34da6a3ce929d0e0e4736"


async def test_missing_headers_are_logged_as_rejected() -> None:
    raw = _raw(sub.TENANT_CREATED, reg.TenantCreated(tenant=TENANT, trust_domain="a.b", at=NOW), sig=None)
    await _rejected(raw, "invalid_signature")


async def test_an_unknown_sender_is_retried_then_logged_as_rejected() -> None:
    stranger = Signer("spiffe://agentid.system/service/nobody", PrivateKey.generate())
    body = reg.TenantCreated(tenant=TENANT, trust_domain="a.b", at=NOW)
    assert await _intake(3).observe(_raw(sub.TENANT_CREATED, body, signer=stranger, attempt=2)) is None
    await _rejected(_raw(sub.TENANT_CREATED, body, signer=stranger, attempt=3), "unknown_sender")


async def test_a_producer_that_does_not_own_the_topic_is_logged_as_rejected() -> None:
    orch = Signer(ORCH_SENDER, ORCH_KEY)
    await _rejected(_raw(sub.AGENT_REGISTERED, _registered(), signer=orch), "forbidden")
    spawn = reg.SpawnAgent(spawn_id="s1", public_jwk={"kty": "OKP"}, proof="p", purpose="t",
                           model=reg.Model(name="m", version="1"), tier="t", data_class="d",
                           controller=reg.Controller(type="user", id="u"))
    await _rejected(_raw(sub.SPAWN_REQUESTED, spawn), "forbidden")  # a service posing as an orchestrator
    await _rejected(_raw(sub.SPAWN_REQUESTED, spawn, signer=orch, tenant="other"), "forbidden")


async def test_bodies_and_subjects_that_are_not_the_catalogues_are_logged_as_rejected() -> None:
    raw = _raw(sub.TENANT_CREATED, {"tenant": TENANT, "unexpected": 1})
    await _rejected(raw, "invalid_request")
    huge = _raw(sub.TENANT_CREATED, {"tenant": "x" * 70_000})
    await _rejected(huge, "invalid_request")
    bogus = sub.Topic("bogus", "thing", reg.TenantCreated, "registration", "")
    leaf = await _rejected(_raw(bogus, reg.TenantCreated(tenant=TENANT, trust_domain="a.b", at=NOW)),
                           "invalid_request")
    assert leaf["event"] == "bogus.thing"


async def test_a_describer_failure_still_logs_the_verified_event() -> None:
    raw = _raw(sub.TENANT_CREATED, reg.TenantCreated(tenant=TENANT, trust_domain="a.b", at=NOW))
    saved = DESCRIBERS["tenant.created"]
    DESCRIBERS["tenant.created"] = lambda e: 1 / 0  # type: ignore[assignment,return-value]
    try:
        ob = await _intake().observe(raw)
    finally:
        DESCRIBERS["tenant.created"] = saved
    assert ob is not None and ob.verified
    assert json.loads(build_leaf(0, ob, {}))["details"] == {"omitted": "description failed"}


def _sample(t: mi.Type) -> object:
    """A value of a msgspec type, built without validation: enough to run a describer on."""
    if isinstance(t, mi.StructType):
        return t.cls(**{f.name: _sample(f.type) for f in t.fields})
    if isinstance(t, mi.UnionType):
        chosen = [x for x in t.types if not isinstance(x, mi.NoneType)]
        return _sample(chosen[0]) if chosen else None
    if isinstance(t, mi.LiteralType):
        return t.values[0]
    if isinstance(t, (mi.ListType, mi.TupleType, mi.VarTupleType)):
        return [_sample(t.item_type)] if hasattr(t, "item_type") else []
    if isinstance(t, mi.DictType):
        return {}
    samples = {mi.StrType: "agt_x", mi.IntType: 1, mi.BoolType: True, mi.FloatType: 1, mi.DateTimeType: NOW,
               mi.AnyType: {}, mi.NoneType: None}
    return samples[type(t)]


@pytest.mark.parametrize("topic", TOPICS, ids=lambda t: t.name)
def test_every_describer_reads_its_topic_struct(topic: sub.Topic) -> None:
    # A describer naming a field its event does not have fails here, not in production.
    event = _sample(mi.type_info(topic.event))
    facts = describe(topic.name, event)
    assert isinstance(facts.subject, dict) and facts.subject.get("type")
    canonical_json({"subject": facts.subject, "details": facts.details, "act": list(facts.act)})  # JSON, no floats
