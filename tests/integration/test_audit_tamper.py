"""Nobody, a database administrator included, edits the audit log quietly: `agentid audit verify`
names the entry that was changed or removed, straight in Postgres."""

from __future__ import annotations

import asyncio
import json
import os
import sys
from pathlib import Path

import pytest

from agentid.audit import AuditClient
from tests.helpers import Harness

pytestmark = pytest.mark.integration


async def _cli(harness: Harness, *args: str) -> tuple[int, str, str]:
    s = harness.settings
    env = {k: v for k, v in os.environ.items() if not k.startswith("AGENTID_")}
    env.update({"AGENTID_NATS_URL": s.nats_url or "", "AGENTID_NATS_PREFIX": s.nats_prefix,
                "AGENTID_DATA_DIR": str(s.data_dir), "AGENTID_KEYRING": str(s.keyring_path),
                "OTEL_SDK_DISABLED": "true"})
    proc = await asyncio.create_subprocess_exec(sys.executable, "-m", "agentid.cli", "audit", *args, env=env,
                                                stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    out, err = await asyncio.wait_for(proc.communicate(), 60)
    assert proc.returncode is not None
    return proc.returncode, out.decode(), err.decode()


async def _logged_story(harness: Harness, tenant: str) -> str:
    orch, _, _ = await harness.new_orchestrator(tenant)
    agent, _ = await harness.new_agent(orch)
    await agent.close()
    await orch.close()
    return (await AuditClient(harness.operator, tenant).caught_up(timeout=20)).log_public_key


async def test_an_edited_leaf_row_is_named_and_an_earlier_export_still_verifies(
        harness: Harness, tenant: str, tmp_path: Path) -> None:
    log_key = await _logged_story(harness, tenant)
    code, out, err = await _cli(harness, "verify", "--tenant", tenant)
    assert code == 0 and out.startswith("OK:"), (out, err)
    export = tmp_path / "log.jsonl"
    code, _, err = await _cli(harness, "export", str(export), "--tenant", tenant)
    assert code == 0, err
    lines = [json.loads(line) for line in export.read_text().splitlines()]
    assert lines[0]["type"] == "log" and lines[0]["log_public_key"] == log_key
    assert {line["type"] for line in lines} == {"log", "entry", "checkpoint"} | (
        {"consistency"} if sum(line["type"] == "checkpoint" for line in lines) > 1 else set())

    await harness.db.execute(
        "UPDATE audit.entries SET leaf = convert_to(replace(convert_from(leaf, 'UTF8'), 'registration',"
        " 'registrat1on'), 'UTF8') WHERE log = $1 AND seq = 2", tenant)
    code, out, err = await _cli(harness, "verify", "--tenant", tenant)
    assert code == 1, (out, err)
    assert "entry 2 is the first that does not match" in out
    assert "entry 2: its leaf text no longer has the hash it was logged with" in out

    # The export taken before the edit is evidence of what the log said, checkable offline.
    code, out, err = await _cli(harness, "verify", "--from-export", str(export), "--log-key", log_key)
    assert code == 0 and out.startswith("OK:"), (out, err)


async def test_a_deleted_row_is_named(harness: Harness, tenant: str) -> None:
    await _logged_story(harness, tenant)
    await harness.db.execute("DELETE FROM audit.entries WHERE log = $1 AND seq = 1", tenant)
    code, out, err = await _cli(harness, "verify", "--tenant", tenant)
    assert code == 1, (out, err)
    assert "entry 1 is the first that does not match" in out and "entry 1 is missing" in out


async def test_a_checkpoint_signed_by_another_key_is_refused(harness: Harness, tenant: str, tmp_path: Path) -> None:
    log_key = await _logged_story(harness, tenant)
    export = tmp_path / "log.jsonl"
    assert (await _cli(harness, "export", str(export), "--tenant", tenant))[0] == 0
    other = AuditClient(harness.operator, await harness.new_tenant())
    other_key = (await other.caught_up(timeout=20)).log_public_key
    code, out, _ = await _cli(harness, "verify", "--from-export", str(export), "--log-key", other_key)
    assert code == 1 and "not one this log has signed with" in out and "the log does not verify" in out
    export.write_text(export.read_text().replace('"type":"entry","seq":0', '"type":"entry","seq":"0"'))
    code, _, err = await _cli(harness, "verify", "--from-export", str(export), "--log-key", log_key)
    assert code == 1 and "cannot read" in err


async def test_tail_query_proof_and_checkpoint_commands(harness: Harness, tenant: str) -> None:
    log_key = await _logged_story(harness, tenant)
    code, out, _ = await _cli(harness, "tail", "--tenant", tenant, "-n", "2")
    assert code == 0 and len(out.splitlines()) == 2 and "credential.issued" in out
    code, out, _ = await _cli(harness, "query", "--tenant", tenant, "--event", "agent.registered", "--json")
    [leaf] = [json.loads(line) for line in out.splitlines()]
    assert leaf["event"] == "agent.registered" and leaf["status"] == "verified"
    code, out, err = await _cli(harness, "proof", "0", "--tenant", tenant)
    assert code == 0 and json.loads(out)["leaf_index"] == 0 and "verified against" in err
    code, out, _ = await _cli(harness, "checkpoint", "--tenant", tenant)
    assert code == 0 and log_key in out and "\u2014 " in out
    code, _, err = await _cli(harness, "query", "--tenant", tenant, "--since", "2026-01-01T00:00:00")
    assert code == 2 and "time zone" in err
