"""`agentid attestation check` over the real samples: verdicts, reasons, claims, exit codes, JSON.

Expected values and times come from each folder's MANIFEST.md (tests/data/attestation). Most
cases run the command in-process (`build_parser` then the command, as `main` does); a few run
the installed entry point in a subprocess to prove the process exit status.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric import ec

from agentid.cli import build_parser
from services.attestation.verifiers import Binding
from shared.b64 import b64u_encode
from shared.config import Settings
from tests.attestation_factory import ear_claims, ear_jwt, ec_public_jwk, thumbprint
from tests.attestation_factory.samples import (
    AZURE_HCL_AT, DATA, EAR_IAT, NITRO_DEBUG_AT, NITRO_PROD_AT, SIGSTORE_HELLO_AT, SIGSTORE_JS_AT,
    SIGSTORE_WHL_AT, SNP_MILAN_AT, TODAY, sample, sample_json,
)

GH = "https://token.actions.githubusercontent.com"
RUNNER = "https://github.com/actions/runner/github-hosted"
PROD_PCRS = {
    "0": "e72a46ca80a260fb044a125442f0c7e331813bcbaf9724d9f3857758992766f2d65710a27aa94ae3949dd54e7c9fe86a",
    "1": "0343b056cd8485ca7890ddd833476d78460aed2aa161548e4e26bedf321726696257d623e8805f3f605946b3d8b0c6aa",
    "2": "d5dcbdea0aa39c802f9d55ced2ea6e4d74ecec5f08fe40c508882639c9090642669106a062a3e24ee2805a3024b9b75c",
    "4": "45706d7b621e4620a332e147a5ddb000b049f73d47d3e61f6b03d2069152d4df6a4a786ad1c10102b955799a9dc96b44",
}
SNP_MEASUREMENT = "b07af9620f3b839b47996422ddec6058338951d984e312115131ea82705eaf5b6bdf8a9ece31a5a608eb0cf2e4872b01"
SNP_CHIP_ID = ("3ac3fe21e13fb0990eb28a802e3fb6a29483a6b0753590c951bdd3b8e5378618"
               "4ca39e359669a2b76a1936776b564ea464cdce40c05f63c9b610c5068b006b5d")
HELLO_SHA256 = "afa27b44d43b02a9fea41d13cedc2e4016cfcf87c5dbf990e593669aa8ce286d"
WHL_SHA256 = "49a3aa6075e0f49f82843e74b5baa614ad2a588e6675612bf108a0a008c5ac25"
JS_SHA512 = ("90f223f992e4c88dd068cd2a5fc57f9d2b30798343dd6e38f29c240e04ba090e"
             "f831f84490847c4e82b9232c78e8a258463b1e55c0f7469f730265008fa6633f")
HELLO_WORKFLOW = "https://github.com/too-legit/attest/.github/workflows/integration.yml@refs/heads/main"

REFERENCES: dict[str, dict[str, Any]] = {
    "nitro": {"nitro_pcrs": {i: [v] for i, v in PROD_PCRS.items()}},
    "nitro-debug": {"debug_allowed": True, "nitro_pcrs": {"4": [PROD_PCRS["4"]]}},
    # The Milan sample's guest policy has the DEBUG bit set (sev-snp/MANIFEST.md: policy 0xB0000).
    "snp": {"debug_allowed": True, "snp_measurements": [SNP_MEASUREMENT], "snp_vmpl": 0,
            "snp_min_tcb": {"bl": 2, "tee": 0, "snp": 5, "ucode": 68}},
    "eat": {"eat_keys": [sample_json("rats-eat", "psa_iak_pub.jwk.json")],
            "psa_measurements": ["00010204" * 8, "05060708" * 8]},
    "ear": {"ear_keys": [sample_json("rats-ear", "ear_verifier_pub.jwk.json")]},
    "hello": {"sigstore_identities": [{"issuer": f"{GH}/hammer-time", "subject": HELLO_WORKFLOW}],
              "slsa_builder_ids": [HELLO_WORKFLOW],
              "slsa_sources": [{"repository": "https://github.com/too-legit/attest", "ref": "refs/heads/main"}]},
    "whl": {"sigstore_identities": [{"issuer": GH, "subject": "https://github.com/github/artifact-attestations-"
                                     "workflows/.github/workflows/attest.yml@09b495c3f12c7881b3cc17209a327792065c1a1d"}],
            "artifact_digests": {"toolchain": ["sha256:" + WHL_SHA256]}, "slsa_builder_ids": [RUNNER],
            "slsa_sources": [{"repository": "https://github.com/malancas/attest-demo", "ref": "refs/heads/main"}]},
    "js": {"sigstore_identities": [{"issuer": GH, "subject": "https://github.com/sigstore/sigstore-js/.github/"
                                    "workflows/release.yml@refs/heads/main"}],
           "artifact_digests": {"toolchain": ["sha512:" + JS_SHA512]}, "slsa_builder_ids": [RUNNER],
           "slsa_sources": [{"repository": "https://github.com/sigstore/sigstore-js"}]},
}
ROOT = str(DATA / "sigstore-slsa" / "trusted_root_public_good.json")


def path(*parts: str) -> str:
    return str(DATA.joinpath(*parts))


def iso(t: datetime) -> str:
    return t.isoformat().replace("+00:00", "Z")


@pytest.fixture
def refs(tmp_path: Path) -> dict[str, str]:
    out = {}
    for name, doc in REFERENCES.items():
        out[name] = str(tmp_path / f"{name}.json")
        Path(out[name]).write_text(json.dumps(doc))
    return out


def run(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, dict[str, Any]]:
    """`agentid attestation check ... --json` in-process: (exit status, the printed JSON)."""
    args = build_parser().parse_args(["attestation", "check", *argv, "--json"])
    status = asyncio.run(args.fn(args, Settings(attestation_sigstore_trusted_root=None)))
    return status, json.loads(capsys.readouterr().out)


def verified(argv: list[str], capsys: pytest.CaptureFixture[str]) -> dict[str, Any]:
    status, report = run(argv, capsys)
    assert (status, report["verified"], report["reason"]) == (0, True, None), report
    return report


def refused(argv: list[str], capsys: pytest.CaptureFixture[str]) -> dict[str, Any]:
    status, report = run(argv, capsys)
    assert status == 1 and report["verified"] is False and report["reason"], report
    return report


# -- AWS Nitro -------------------------------------------------------------------------------

NITRO_PROD = ["--kind", "aws-nitro", "--evidence", path("nitro", "nitro_attestation_prod.b64")]
NITRO_DEBUG = ["--kind", "aws-nitro", "--evidence", path("nitro", "nitro_attestation_debug.b64")]


def test_nitro_prod_verifies_as_of_its_timestamp_with_the_manifest_values(refs, capsys) -> None:
    report = verified([*NITRO_PROD, "--as-of", iso(NITRO_PROD_AT), "--reference", refs["nitro"]], capsys)
    c = report["claims"]
    assert c["module_id"] == "i-0a22e5c5f24d22174-enc0191cceb4289903f" and c["timestamp"] == 1725719859545
    assert {i: c["pcrs"][i] for i in PROD_PCRS} == PROD_PCRS and c["pcrs"]["3"] == "00" * 48
    assert c["debug"] is False
    assert hashlib.sha256(bytes.fromhex(c["user_data"])).hexdigest() == (
        "5a648d8015900d89664e00e125df179636301a2d8fa191c1aa2bd9358ea53a69")
    assert c["root_sha256"] == "641a0321a3e244efe456463195d606317ed7cdcc3c1756e09893f3c68f79bb5b"
    assert report["bound"] is False and report["unchecked"] == []


def test_nitro_debug_verifies_only_where_debug_is_allowed(refs, capsys) -> None:
    report = verified([*NITRO_DEBUG, "--as-of", iso(NITRO_DEBUG_AT), "--reference", refs["nitro-debug"]], capsys)
    assert report["claims"]["debug"] is True
    assert report["claims"]["module_id"] == "i-0a22e5c5f24d22174-enc0191ccebaf8feaba"
    assert refused([*NITRO_DEBUG, "--as-of", iso(NITRO_DEBUG_AT), "--reference", refs["nitro"]],
                   capsys)["reason"] == "debug_enclave"


def test_nitro_documents_are_expired_today(refs, capsys) -> None:
    for argv in (NITRO_PROD, NITRO_DEBUG):
        assert refused([*argv, "--as-of", iso(TODAY), "--reference", refs["nitro-debug"]], capsys)["reason"] == \
            "cert_expired"


def test_nitro_tampered_and_self_signed_documents_are_refused(refs, capsys) -> None:
    at = ["--as-of", iso(NITRO_PROD_AT), "--reference", refs["nitro"]]
    tampered = ["--kind", "aws-nitro", "--evidence", path("nitro", "nitro_attestation_prod_tampered.b64")]
    assert refused([*tampered, *at], capsys)["reason"] == "bad_signature"
    selfsigned = ["--kind", "aws-nitro", "--evidence", path("nitro", "nitro_attestation_selfsigned_not_aws.b64")]
    assert refused([*selfsigned, *at], capsys)["reason"] == "malformed"


def test_without_reference_values_the_claims_show_but_nothing_verifies(capsys) -> None:
    report = refused([*NITRO_PROD, "--as-of", iso(NITRO_PROD_AT)], capsys)
    assert report["reason"] == "policy_incomplete" and report["unchecked"] == ["nitro_pcrs"]
    assert report["claims"]["module_id"].startswith("i-0a22e5c5f24d22174")


# -- AMD SEV-SNP -----------------------------------------------------------------------------

SNP = ["--kind", "amd-sev-snp", "--evidence", path("sev-snp", "milan_report_no_idblock.bin"),
       "--vcek", path("sev-snp", "milan_vcek.der")]


def test_snp_milan_verifies_within_its_vcek_window(refs, capsys) -> None:
    for at in (SNP_MILAN_AT, TODAY):  # the VCEK is valid 2022-09-24 .. 2029-09-24 (MANIFEST.md)
        c = verified([*SNP, "--as-of", iso(at), "--reference", refs["snp"]], capsys)["claims"]
        assert c["measurement"] == SNP_MEASUREMENT and c["chip_id"] == SNP_CHIP_ID
        assert c["report_data"] == "0102030405" + "00" * 59 and c["product"] == "Milan"
        assert c["vcek_sha256"] == "0d057f9b6e29a69eda9c0154b259567d291c1c08d73a11e9d31ace07c435b6d8"


def test_snp_milan_is_refused_after_its_vcek_expires_and_when_tampered(refs, capsys) -> None:
    after = datetime(2030, 1, 1, tzinfo=UTC)
    assert refused([*SNP, "--as-of", iso(after), "--reference", refs["snp"]], capsys)["reason"] == "cert_expired"
    tampered = ["--kind", "amd-sev-snp", "--evidence", path("sev-snp", "milan_report_no_idblock_tampered.bin"),
                "--vcek", path("sev-snp", "milan_vcek.der")]
    assert refused([*tampered, "--as-of", iso(SNP_MILAN_AT), "--reference", refs["snp"]], capsys)["reason"] == \
        "bad_signature"


def test_snp_report_with_another_chips_vcek_is_refused(refs, tmp_path, capsys) -> None:
    evidence = tmp_path / "azure.bin"
    evidence.write_bytes(sample("azure", "azure_cvm_hcl_report_snp.bin")[0x20:0x4C0]
                         + sample("azure", "azure_vcek_ask_ark_chain_other_chip.pem"))
    argv = ["--kind", "amd-sev-snp", "--evidence", str(evidence), "--as-of", iso(AZURE_HCL_AT), "--reference",
            refs["snp"]]
    assert refused(argv, capsys)["reason"] == "chip_id_mismatch"


# -- PSA EAT and EAR -------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["psa_token_p2.hex", "psa_token_p1.hex"])
def test_psa_tokens_verify_at_any_time(name, refs, capsys) -> None:
    c = verified(["--kind", "eat", "--evidence", path("rats-eat", name), "--as-of", iso(TODAY),
                  "--reference", refs["eat"]], capsys)["claims"]
    assert c["nonce"] == "00010203" * 8 and c["instance_id"] == "01" + "a0a1a2a3" * 8
    assert c["security_lifecycle_name"] == "secured" and c["implementation_id"] == "5051525354555657" * 4
    assert [s["measurement_value"] for s in c["software_components"]] == ["00010204" * 8, "05060708" * 8]


def test_psa_tampered_token_is_refused(refs, capsys) -> None:
    argv = ["--kind", "eat", "--evidence", path("rats-eat", "psa_token_p2_tampered.hex"), "--reference", refs["eat"]]
    assert refused(argv, capsys)["reason"] == "bad_signature"


def test_psa_sample_is_not_bound_to_a_challenge(refs, capsys) -> None:
    argv = ["--kind", "eat", "--evidence", path("rats-eat", "psa_token_p2.hex"), "--reference", refs["eat"],
            "--nonce", "00" * 32, "--key-thumbprint", b64u_encode(bytes(32))]
    report = refused(argv, capsys)
    assert report["reason"] == "binding_mismatch" and report["bound"] is False


def test_ear_verifies_as_of_its_iat_and_is_stale_today(refs, capsys) -> None:
    ear = ["--kind", "ear", "--evidence", path("rats-ear", "ear_affirming.jwt"), "--reference", refs["ear"]]
    c = verified([*ear, "--as-of", iso(EAR_IAT)], capsys)["claims"]
    assert c["eat_profile"] == "tag:github.com/veraison/ar4si,2022-10-17" and c["iat"] == 1666091373
    assert c["submods"]["legacy"]["status"] == "affirming"
    assert c["submods"]["legacy"]["trustworthiness_vector"]["executables"] == 3
    assert refused([*ear, "--as-of", iso(TODAY)], capsys)["reason"] == "stale"
    tampered = ["--kind", "ear", "--evidence", path("rats-ear", "ear_affirming_tampered.jwt"), "--reference",
                refs["ear"], "--as-of", iso(EAR_IAT)]
    assert refused(tampered, capsys)["reason"] == "bad_signature"


def test_evidence_bound_to_the_given_nonce_and_key_verifies_bound(tmp_path, capsys) -> None:
    key = ec.generate_private_key(ec.SECP256R1())
    agent_jkt = thumbprint(ec_public_jwk(ec.generate_private_key(ec.SECP256R1())))
    nonce = os.urandom(32)
    now = datetime.now(UTC)
    digest = Binding(nonce, agent_jkt).digest()
    (tmp_path / "ear.jwt").write_bytes(ear_jwt(key, ear_claims(iat=now, nonce=b64u_encode(digest))))
    (tmp_path / "ref.json").write_text(json.dumps({"ear_keys": [ec_public_jwk(key)]}))
    argv = ["--kind", "ear", "--evidence", str(tmp_path / "ear.jwt"), "--reference", str(tmp_path / "ref.json")]
    report = verified([*argv, "--nonce", nonce.hex(), f"--key-thumbprint={agent_jkt}"], capsys)
    assert report["bound"] is True
    other = thumbprint(ec_public_jwk(ec.generate_private_key(ec.SECP256R1())))
    assert refused([*argv, "--nonce", nonce.hex(), f"--key-thumbprint={other}"], capsys)["reason"] == \
        "binding_mismatch"
    assert refused([*argv, "--nonce", os.urandom(32).hex(), f"--key-thumbprint={agent_jkt}"], capsys)["reason"] == \
        "binding_mismatch"


# -- Sigstore / SLSA -------------------------------------------------------------------------

HELLO = ["--kind", "sigstore", "--evidence", path("sigstore-slsa", "hello-world.sigstore.json"),
         "--trusted-root", ROOT]


def test_hello_world_bundle_verifies_with_its_artifact(refs, capsys) -> None:
    report = verified([*HELLO, "--artifact", path("sigstore-slsa", "hello-world.txt"), "--as-of",
                       iso(SIGSTORE_HELLO_AT), "--reference", refs["hello"]], capsys)
    c = report["claims"]
    assert c["log_index"] == 129601213 and c["matched_digests"] == {"artifact": ["sha256:" + HELLO_SHA256]}
    assert c["identity"] == {"issuer": f"{GH}/hammer-time", "subjects": [HELLO_WORKFLOW]}


def test_hello_world_bundle_refuses_the_tampered_artifact(refs, capsys) -> None:
    argv = [*HELLO, "--artifact", path("sigstore-slsa", "hello-world_tampered.txt"), "--as-of",
            iso(SIGSTORE_HELLO_AT), "--reference", refs["hello"]]
    assert refused(argv, capsys)["reason"] == "digest_mismatch"


@pytest.mark.parametrize(("name", "ref", "at", "log_index"), [
    ("github_provenance_demo-0.0.0-py3-none-any.whl.sigstore.json", "whl", SIGSTORE_WHL_AT, 96764485),
    ("sigstore-js-2.1.0.sigstore.json", "js", SIGSTORE_JS_AT, 33351527),
])
def test_npm_and_wheel_bundles_verify_as_of_their_integrated_time(name, ref, at, log_index, refs, capsys) -> None:
    argv = ["--kind", "sigstore", "--evidence", path("sigstore-slsa", name), "--trusted-root", ROOT,
            "--reference", refs[ref], "--as-of", iso(at)]
    assert verified(argv, capsys)["claims"]["log_index"] == log_index


def test_sigstore_tampered_bundle_and_missing_root_are_refused(refs, capsys) -> None:
    js = ["--evidence", path("sigstore-slsa", "sigstore-js-2.1.0_tampered.sigstore.json"), "--reference", refs["js"],
          "--as-of", iso(SIGSTORE_JS_AT), "--kind", "sigstore"]
    assert refused([*js, "--trusted-root", ROOT], capsys)["reason"] == "bad_signature"
    assert refused(js, capsys)["reason"] == "not_configured"


def test_sigstore_bundles_are_stale_today_under_a_provenance_age_limit(tmp_path, capsys) -> None:
    ref = tmp_path / "aged.json"
    ref.write_text(json.dumps({**REFERENCES["hello"], "max_provenance_age_s": 86_400}))
    argv = [*HELLO, "--artifact", path("sigstore-slsa", "hello-world.txt"), "--reference", str(ref)]
    verified([*argv, "--as-of", iso(SIGSTORE_HELLO_AT)], capsys)
    assert refused([*argv, "--as-of", iso(TODAY)], capsys)["reason"] == "stale"


# -- usage -----------------------------------------------------------------------------------


@pytest.mark.parametrize("extra", [
    ["--nonce", "00" * 32],                                  # no key thumbprint
    ["--as-of", "2024-09-07T14:37:39"],                      # no time zone
    ["--as-of", "yesterday"],
    ["--reference", "/nonexistent/ref.json"],
    ["--vcek", path("sev-snp", "milan_vcek.der")],           # not SNP evidence
])
def test_usage_errors_exit_2(extra, capsys) -> None:
    args = build_parser().parse_args(["attestation", "check", *NITRO_PROD, *extra])
    assert asyncio.run(args.fn(args, Settings(attestation_sigstore_trusted_root=None))) == 2
    assert capsys.readouterr().err.startswith("error: ")


def test_a_bad_reference_document_is_a_usage_error(tmp_path, capsys) -> None:
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"nitro_pcrs": {"99": ["00"]}}))
    args = build_parser().parse_args(["attestation", "check", *NITRO_PROD, "--reference", str(bad)])
    assert asyncio.run(args.fn(args, Settings(attestation_sigstore_trusted_root=None))) == 2
    assert "nitro" in capsys.readouterr().err


# -- the installed command, as a process -----------------------------------------------------


def _cli(*argv: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("AGENTID_")}
    env["OTEL_SDK_DISABLED"] = "true"
    return subprocess.run([sys.executable, "-m", "agentid.cli", "attestation", "check", *argv],
                          capture_output=True, text=True, env=env, timeout=60)


def test_the_command_exits_0_only_when_evidence_verifies(refs) -> None:
    ok = _cli(*NITRO_PROD, "--as-of", iso(NITRO_PROD_AT), "--reference", refs["nitro"], "--json")
    assert ok.returncode == 0, ok.stderr
    assert json.loads(ok.stdout)["verified"] is True
    expired = _cli(*NITRO_PROD, "--reference", refs["nitro"])  # as of now: the chain expired in 2024
    assert expired.returncode == 1
    assert "REFUSED" in expired.stdout and "cert_expired" in expired.stdout
    usage = _cli("--kind", "aws-nitro", "--evidence", "/nonexistent")
    assert usage.returncode == 2 and "cannot read evidence" in usage.stderr
