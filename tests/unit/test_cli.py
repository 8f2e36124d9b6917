"""The command line lists every command, and refuses what it cannot do with a clear message."""

from __future__ import annotations

import subprocess
import sys

COMMANDS = ["up", "status", "demo", "worker", "tenant", "orchestrator", "keyring", "contracts", "bundle", "agent",
            "ca", "status-list", "issuer", "credential", "policy", "token", "jwks", "idp", "delegation", "attestation",
            "audit", "artifact", "rs", "bench"]


def test_help_lists_every_command() -> None:
    out = subprocess.run([sys.executable, "-m", "agentid.cli", "--help"], capture_output=True, text=True, check=True)
    for command in COMMANDS:
        assert f"    {command}" in out.stdout, command


def test_status_without_a_stack(tmp_path) -> None:
    env = {"AGENTID_DATA_DIR": str(tmp_path), "PATH": "/usr/bin:/bin"}
    out = subprocess.run([sys.executable, "-m", "agentid.cli", "status", "--json"], capture_output=True,
                         text=True, env=env)
    assert out.returncode == 1 and '"running": false' in out.stdout


def test_operator_command_without_a_stack_says_why(tmp_path) -> None:
    env = {"AGENTID_DATA_DIR": str(tmp_path), "PATH": "/usr/bin:/bin"}
    out = subprocess.run([sys.executable, "-m", "agentid.cli", "tenant", "create", "acme"], capture_output=True,
                         text=True, env=env)
    assert out.returncode == 1 and "unavailable" in out.stderr
