"""Agent-signed artifacts for real: signed with the agent's key, logged through issuance and the
audit log, verified offline (SDK and CLI) against a trust file; the service refuses what it must."""

from __future__ import annotations

import asyncio
import json
import os
import sys
from pathlib import Path

import pytest

from agentid.artifacts import ArtifactError, trust_for, verify
from contracts import artifacts as art
from contracts import subjects as sub
from shared import artifacts
from shared.errors import AgentInactive, InvalidRequest, InvalidSignature
from shared.keys import PrivateKey
from tests.helpers import Harness

pytestmark = pytest.mark.integration

REPORT = b'{"loan": "L-1001", "decision": "approve", "reason": "income verified"}'


async def test_sign_log_and_verify_offline(harness: Harness, tenant: str, tmp_path: Path) -> None:
    orch, _, _ = await harness.new_orchestrator(tenant)
    agent, key = await harness.new_agent(orch)
    bundle = await agent.sign(REPORT, "application/json", purpose="loan decision", name="decision.json")
    assert bundle.logged and json.loads(bundle.leaf)["event"] == "artifact.signed"
    trust = await trust_for(harness.operator, tenant)
    result = await verify(bundle, REPORT, trust)
    assert result.agent_spiffe_id == agent.spiffe_id and result.purpose == "loan decision"
    with pytest.raises(ArtifactError) as err:
        await verify(bundle, REPORT + b" ", trust)
    assert err.value.reason == "digest_mismatch"

    # The command line, offline, against a trust file.
    (tmp_path / "decision.json").write_bytes(REPORT)
    (tmp_path / "bundle.json").write_text(json.dumps(bundle.to_json()))
    (tmp_path / "trust.json").write_text(json.dumps(trust.to_json()))
    env = {k: v for k, v in os.environ.items() if not k.startswith("AGENTID_")}
    env.update(AGENTID_DATA_DIR=str(harness.settings.data_dir), OTEL_SDK_DISABLED="true", AGENTID_TENANT=tenant)

    async def cli(*args: str) -> tuple[int, str]:
        proc = await asyncio.create_subprocess_exec(sys.executable, "-m", "agentid.cli", *args, env=env,
                                                    stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
        out, err = await asyncio.wait_for(proc.communicate(), 60)
        return proc.returncode or 0, out.decode() + err.decode()

    code, out = await cli("artifact", "verify", str(tmp_path / "bundle.json"), "--artifact",
                          str(tmp_path / "decision.json"), "--trust", str(tmp_path / "trust.json"))
    assert code == 0 and agent.spiffe_id in out, out
    (tmp_path / "decision.json").write_bytes(REPORT.replace(b"approve", b"decline"))
    code, out = await cli("artifact", "verify", str(tmp_path / "bundle.json"), "--artifact",
                          str(tmp_path / "decision.json"), "--trust", str(tmp_path / "trust.json"))
    assert code == 1 and "digest_mismatch" in out

    # `artifact sign` for scripts, with the agent's key file.
    (tmp_path / "agent.pem").write_text(key.private.pem())
    (tmp_path / "invoice.txt").write_bytes(b"invoice 42: 100 EUR")
    code, out = await cli("artifact", "sign", str(tmp_path / "invoice.txt"), "--agent-id", agent.agent_id,
                          "--key", str(tmp_path / "agent.pem"), "--purpose", "invoice")
    assert code == 0, out
    code, out = await cli("artifact", "verify", str(tmp_path / "invoice.txt.bundle.json"), "--artifact",
                          str(tmp_path / "invoice.txt"), "--trust", str(tmp_path / "trust.json"), "--json")
    assert code == 0 and json.loads(out)["purpose"] == "invoice"
    await agent.close()
    await orch.close()


async def test_the_service_refuses_what_it_must(harness: Harness, tenant: str) -> None:
    orch, _, _ = await harness.new_orchestrator(tenant)
    agent, _ = await harness.new_agent(orch)
    credential = await agent.credential()
    predicate = {"agent": {"agentId": agent.agent_id, "spiffeId": agent.spiffe_id, "did": agent.did},
                 "credentialId": credential.credential_id, "onBehalfOf": None, "act": None, "delegation": None,
                 "purpose": "x", "mediaType": "text/plain", "signedAt": __import__("shared.vc", fromlist=["iso"]).iso(
                     __import__("datetime").datetime.now(__import__("datetime").UTC))}
    stmt = artifacts.statement(name="a.txt", digest_hex=artifacts.sha256_hex(b"a"), predicate=predicate)

    async def record(envelope: dict) -> art.ArtifactRecorded:
        return await agent.bus.request(sub.RECORD_ARTIFACT, tenant, art.RecordArtifact(envelope=envelope))

    with pytest.raises(InvalidSignature):  # signed by a key that is not the agent's
        await record(artifacts.envelope(PrivateKey.generate(), stmt))
    other = {**predicate, "agent": {**predicate["agent"], "agentId": "agt_someone_else"}}
    with pytest.raises(InvalidRequest, match="another agent"):
        await record(artifacts.envelope(agent.key.private, {**stmt, "predicate": other}))
    stale = {**predicate, "signedAt": "2020-01-01T00:00:00Z"}
    with pytest.raises(InvalidRequest, match="not now"):
        await record(artifacts.envelope(agent.key.private, {**stmt, "predicate": stale}))
    await orch.revoke(agent.agent_id)
    with pytest.raises(AgentInactive):  # a revoked agent's credential signs nothing any more
        await agent.sign(b"late", "text/plain", purpose="after revocation")
    await agent.close()
    await orch.close()
