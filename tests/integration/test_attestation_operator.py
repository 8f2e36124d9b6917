"""The demo's attestation step and the operator's commands, against the running worker."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import jwt
import msgspec
import pytest

from agentid.cli import build_parser
from agentid.demo import DemoContext
from agentid.demo_attestation import NOTE, attestation_step
from agentid.operator import Target
from contracts import attestation as att
from contracts import subjects as sub
from shared.b64 import b64u_decode
from shared.keys import PublicKey
from tests.helpers import Harness

pytestmark = pytest.mark.integration


async def test_demo_step_attests_the_first_agent_with_an_honestly_labelled_ear(
        harness: Harness, tenant: str) -> None:
    orch, _, _ = await harness.new_orchestrator(tenant)
    async with orch:
        agent, _ = await harness.new_agent(orch, alg="ES256", tier="high")
    lines: list[str] = []
    ctx = DemoContext(harness.settings, Target(harness.settings.nats_url or "", harness.root, None, None),
                      harness.keyring, harness.operator, lines.append, agents=[agent])
    async with agent:
        await attestation_step(ctx)
    report = ctx.report["attestation"]
    assert report["kind"] == "ear" and report["agent_id"] == agent.agent_id
    assert report["result"]["verified"] is True and report["result"]["posture"] == "tee"
    assert report["claims"]["submods"]["agent-runtime"]["status"] == "affirming"
    # The demo says what it is: a demo verifier key, no hardware evidence.
    assert report["note"] == NOTE and "demo verifier key" in NOTE and "No hardware evidence" in NOTE
    assert any(NOTE in line for line in lines)
    # An outside check of the artifacts: the EAR verifies under the reported key, and its nonce is
    # SHA-512(challenge nonce || the agent key's thumbprint).
    key = jwt.PyJWK(report["verifier_jwk"]).key
    claims = jwt.decode(report["evidence"], key, algorithms=["ES256"])
    thumb = PublicKey.from_jwk(agent.identity.public_jwk).thumbprint
    expected = hashlib.sha512(bytes.fromhex(report["challenge"]["nonce"]) + b64u_decode(thumb)).digest()
    assert b64u_decode(claims["eat_nonce"]) == expected
    [msg] = await harness.next_events(sub.ATTESTATION_VERIFIED.subject(tenant, harness.root))
    assert msgspec.json.decode(msg.data, type=att.AttestationVerified).result_id == report["result"]["result_id"]


async def test_reference_values_through_the_command_line(harness: Harness, tenant: str, tmp_path: Path,
                                                         capsys: pytest.CaptureFixture[str]) -> None:
    doc = tmp_path / "ref.json"
    doc.write_text(json.dumps({"snp_vmpl": 0, "snp_measurements": ["5a" * 48]}))

    async def cli(*argv: str) -> int:
        args = build_parser().parse_args(["attestation", *argv])
        return await args.fn(args, harness.settings)

    assert await cli("reference", "set", str(doc), "--tenant", tenant) == 0
    assert "version 1" in capsys.readouterr().out
    assert await cli("reference", "set", str(doc), "--tenant", tenant, "--expected-version", "1", "--json") == 0
    assert json.loads(capsys.readouterr().out)["version"] == 2
    assert await cli("reference", "list", "--tenant", tenant, "--json") == 0
    listing = json.loads(capsys.readouterr().out)
    assert listing["current"]["document"]["snp_measurements"] == ["5a" * 48]
    assert [v["version"] for v in listing["versions"]] == [2, 1]
    bad = tmp_path / "bad.json"
    bad.write_text("[1, 2]")
    assert await cli("reference", "set", str(bad), "--tenant", tenant) == 2
