"""`agentid demo` on a machine where nothing of ours runs: embedded stack, full report."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import base58
import pytest
from joserfc.jwk import OKPKey

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def report(tmp_path_factory: pytest.TempPathFactory) -> dict:
    tmp = tmp_path_factory.mktemp("demo")
    out = tmp / "out.json"
    env = {k: v for k, v in os.environ.items() if not k.startswith("AGENTID_")}
    env.update({"AGENTID_DATA_DIR": str(tmp / "data"), "OTEL_SDK_DISABLED": "true"})
    run = subprocess.run([sys.executable, "-m", "agentid.cli", "demo", "--json", str(out)],
                         capture_output=True, text=True, env=env, timeout=300)
    assert run.returncode == 0, run.stderr
    assert "Spawned" in run.stdout and "SPIFFE ID" in run.stdout
    return json.loads(out.read_text())


def test_report_names_tenant_and_orchestrator(report: dict) -> None:
    assert report["tenant"] == "demo"
    assert report["orchestrator"]["spiffe_id"] == (
        f"spiffe://{report['trust_domain']}/orchestrator/{report['orchestrator']['id']}")


def test_two_agents_with_consistent_identities(report: dict) -> None:
    assert len(report["agents"]) == 2
    for agent in report["agents"]:
        assert agent["spiffe_id"] == f"spiffe://{report['trust_domain']}/agent/{agent['id']}"
        # did:key decoded independently: multicodec ed25519-pub (0xed 0x01) + the JWK's x.
        raw = base58.b58decode(agent["did"][len("did:key:z"):])
        assert raw[:2] == b"\xed\x01"
        key = OKPKey.import_key(agent["public_jwk"])
        assert key.as_dict(private=False)["x"] == agent["public_jwk"]["x"]
        from shared.b64 import b64u_encode

        assert b64u_encode(raw[2:]) == agent["public_jwk"]["x"]
