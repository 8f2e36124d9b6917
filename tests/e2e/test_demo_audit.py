"""The demo's audit step: what it reports, an outside verifier accepts (and refuses when changed)."""

from __future__ import annotations

import base64
import copy
import json
from types import SimpleNamespace

import pytest
from cryptography.exceptions import InvalidSignature
from sigstore.errors import VerificationError

from agentid.demo_audit import audit_step
from contracts import headers as H
from contracts import subjects as sub
from tests.e2e.audit_report import AUDIT_KEYS, check_audit_report
from tests.helpers import Harness

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
async def audit_report(harness: Harness) -> tuple[str, dict]:
    tenant = await harness.new_tenant()
    orch, _, _ = await harness.new_orchestrator(tenant)
    first, _ = await harness.new_agent(orch)
    second, _ = await harness.new_agent(orch, controller={"type": "service", "id": "loan-desk"})
    await second.exit()
    await first.close()
    await second.close()
    await orch.close()
    said: list[str] = []
    ctx = SimpleNamespace(operator=harness.operator, report={"tenant": tenant}, say=said.append)
    await audit_step(ctx)  # type: ignore[arg-type]
    assert said and "Audit log" in said[0]
    return tenant, ctx.report["audit"]


async def test_the_report_has_exactly_the_design_keys_and_verifies_outside(
        harness: Harness, audit_report: tuple[str, dict]) -> None:
    tenant, audit = audit_report
    assert set(audit) == AUDIT_KEYS
    leaves = check_audit_report(audit)
    # Every event the tenant published is there, with the trace id its message carried.
    published = await harness.next_events(f"{harness.root}.v1.{tenant}.evt.>",
                                          n=await harness.event_count(f"{harness.root}.v1.{tenant}.evt.>"))
    by_id = {leaf["msg_id"]: leaf for leaf in leaves}
    assert len(by_id) == len(published) == len(leaves)
    for msg in published:
        leaf = by_id[msg.headers[H.MSG_ID]]
        assert leaf["event"] == sub.topic_for(msg.subject).name  # type: ignore[union-attr]
        assert leaf["trace_id"] == msg.headers["traceparent"].split("-")[1]
    assert {"tenant.created", "orchestrator.added", "agent.registered", "credential.issued", "agent.exited",
            "credential.revoked"} <= {leaf["event"] for leaf in leaves}
    assert audit["consistency_proof"]["first"] < audit["consistency_proof"]["second"]


@pytest.mark.parametrize("damage", ["leaf", "proof_hash", "checkpoint_text", "signature", "consistency", "old"])
async def test_the_outside_verifier_refuses_a_changed_report(audit_report: tuple[str, dict], damage: str) -> None:
    audit = copy.deepcopy(audit_report[1])
    if damage == "leaf":
        audit["entries"][1]["leaf"] = audit["entries"][1]["leaf"].replace('"seq":1', '"seq":1 ')
    elif damage == "proof_hash":
        proof = next(p for p in audit["inclusion_proofs"] if p["hashes"])
        proof["hashes"][0] = base64.b64encode(b"\x00" * 32).decode()
    elif damage == "checkpoint_text":
        lines = audit["checkpoint"].split("\n")
        lines[1] = str(int(lines[1]) + 1)
        audit["checkpoint"] = "\n".join(lines)
    elif damage == "signature":
        head, _, sig = audit["checkpoint"].rpartition(" ")
        raw = bytearray(base64.b64decode(sig))
        raw[-1] ^= 1
        audit["checkpoint"] = f"{head} {base64.b64encode(bytes(raw)).decode()}\n"
    elif damage == "consistency":
        audit["consistency_proof"]["hashes"] = audit["consistency_proof"]["hashes"][:-1]
    else:
        audit["old_checkpoint"] = audit["checkpoint"]
    with pytest.raises((AssertionError, InvalidSignature, VerificationError, ValueError)):
        check_audit_report(audit)


async def test_every_leaf_names_its_actor_and_subject(audit_report: tuple[str, dict]) -> None:
    leaves = [json.loads(entry["leaf"]) for entry in audit_report[1]["entries"]]
    registered = [leaf for leaf in leaves if leaf["event"] == "agent.registered"]
    assert len(registered) == 2 and all(leaf["decision"] == "allow" for leaf in registered)
    assert {leaf.get("on_behalf_of") for leaf in registered} == {"alice@example.com", None}
    for leaf in leaves:
        assert leaf["actor"]["kind"] in ("service", "orchestrator") and leaf["subject"]["type"]
