"""`agentid demo` on a machine where nothing of ours runs: embedded stack, full report."""

from __future__ import annotations

import base64
import gzip
import json
import os
import textwrap
import subprocess
import sys
from pathlib import Path

import base58
import jwt
import pytest
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec
from joserfc import jws
from joserfc.jwk import ECKey, OKPKey
from spiffe import JwtBundle, JwtSvid, TrustDomain, X509Bundle

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def report(tmp_path_factory: pytest.TempPathFactory) -> dict:
    tmp = tmp_path_factory.mktemp("demo")
    out = tmp / "out.json"
    env = {k: v for k, v in os.environ.items() if not k.startswith("AGENTID_")}
    env.update({"AGENTID_DATA_DIR": str(tmp / "data")})  # telemetry on: audit entries carry trace ids
    run = subprocess.run([sys.executable, "-m", "agentid.cli", "demo", "--json", str(out)],
                         capture_output=True, text=True, env=env, timeout=300)
    assert run.returncode == 0, run.stderr
    assert "Spawned" in run.stdout and "SPIFFE ID" in run.stdout
    assert "/tenants/demo/token (client_credentials, private_key_jwt, DPoP)" in run.stdout  # over the gateway
    return json.loads(out.read_text())


def test_report_names_tenant_and_orchestrator(report: dict) -> None:
    assert report["tenant"] == "demo"
    assert report["orchestrator"]["spiffe_id"] == (
        f"spiffe://{report['trust_domain']}/orchestrator/{report['orchestrator']['id']}")


def test_two_agents_with_consistent_identities(report: dict) -> None:
    assert len(report["agents"]) == 2
    for agent in report["agents"]:
        assert agent["spiffe_id"] == f"spiffe://{report['trust_domain']}/agent/{agent['id']}"
        # did:key decoded independently of our code: multicodec p256-pub (0x80 0x24) + the
        # compressed point, which must be the JWK's key (as joserfc reads it).
        raw = base58.b58decode(agent["did"][len("did:key:z"):])
        assert raw[:2] == b"\x80\x24"
        point = ec.EllipticCurvePublicKey.from_encoded_point(ec.SECP256R1(), raw[2:]).public_numbers()
        jwk = ECKey.import_key(agent["public_jwk"]).as_dict(private=False)
        assert point.x == int.from_bytes(base64.urlsafe_b64decode(jwk["x"] + "=="), "big")
        assert point.y == int.from_bytes(base64.urlsafe_b64decode(jwk["y"] + "=="), "big")


def test_svids_verify_against_the_trust_bundle(report: dict, tmp_path: Path) -> None:
    td = TrustDomain(report["trust_domain"])
    cas = ["-----BEGIN CERTIFICATE-----\n" + "\n".join(textwrap.wrap(k["x5c"][0], 64)) + "\n-----END CERTIFICATE-----\n"
           for k in report["trust_bundle"]["keys"] if k["use"] == "x509-svid"]
    assert X509Bundle.parse(td, "".join(cas).encode()).x509_authorities
    (tmp_path / "ca.pem").write_text("".join(cas))
    jwt_keys = {"keys": [k for k in report["trust_bundle"]["keys"] if k["use"] == "jwt-svid"]}
    jwt_bundle = JwtBundle.parse(td, json.dumps(jwt_keys).encode())
    for agent in report["agents"]:
        (tmp_path / "chain.pem").write_text(agent["x509_chain_pem"])
        out = subprocess.run(["openssl", "verify", "-x509_strict", "-CAfile", str(tmp_path / "ca.pem"),
                              str(tmp_path / "chain.pem")], capture_output=True, text=True)
        assert out.returncode == 0, out.stderr
        leaf = x509.load_pem_x509_certificate(agent["x509_svid_pem"].encode())
        uris = leaf.extensions.get_extension_for_class(x509.SubjectAlternativeName).value.get_values_for_type(
            x509.UniformResourceIdentifier)
        assert uris == [agent["spiffe_id"]]
        aud = f"spiffe://{report['trust_domain']}/tool/ledger"
        assert str(JwtSvid.parse_and_validate(agent["jwt_svid"], jwt_bundle, {aud}).spiffe_id) == agent["spiffe_id"]


def test_credentials_and_status_list_check_out_independently(report: dict) -> None:
    """joserfc verifies every credential with the issuer's did:key; the status list decodes with
    gzip + base64url alone, has the revoked agent's bit set and the live agents' clear."""
    issuer = report["issuer"]
    raw = base58.b58decode(issuer["did"][len("did:key:z"):])
    assert raw[:2] == b"\xed\x01"
    key = OKPKey.import_key({"kty": "OKP", "crv": "Ed25519", "x": base64.urlsafe_b64encode(raw[2:]).rstrip(b"=").decode()})
    for agent in report["agents"]:
        token = jws.deserialize_compact(agent["credential_vc_jwt"], key, algorithms=["EdDSA"])
        claims = json.loads(token.payload)
        assert claims["issuer"] == issuer["did"] and claims["credentialSubject"]["id"] == agent["did"]
        assert claims["credentialSubject"]["spiffeId"] == agent["spiffe_id"]
    status = jws.deserialize_compact(report["status_list"]["vc_jwt"], key, algorithms=["EdDSA"])
    subject = json.loads(status.payload)["credentialSubject"]
    assert subject["type"] == "BitstringStatusList" and subject["statusPurpose"] == "revocation"
    encoded = subject["encodedList"]
    assert encoded[0] == "u"
    bits = gzip.decompress(base64.urlsafe_b64decode(encoded[1:] + "=" * (-len(encoded[1:]) % 4)))
    assert len(bits) * 8 >= 131_072
    index = report["status_list"]["revoked_index"]
    assert bits[index // 8] & (0x80 >> (index % 8))
    for agent in report["agents"]:  # the live agents' current credentials are not revoked
        claims = json.loads(base64.urlsafe_b64decode(agent["credential_vc_jwt"].split(".")[1] + "=="))
        i = int(claims["credentialStatus"]["statusListIndex"])
        assert not bits[i // 8] & (0x80 >> (i % 8))
    assert issuer["did_document"]["id"] == issuer["did"]


def test_obo_token_names_the_user_and_the_full_actor_chain(report: dict) -> None:
    claims = jwt.decode(report["obo"]["token"], options={"verify_signature": False})
    agents = {a["spiffe_id"] for a in report["agents"]}
    assert claims["sub"] == "alice@bank.example" and claims["subject_issuer"] == report["obo"]["subject_token_issuer"]
    assert claims["act"]["act"]["sub"] in agents               # the loan agent acted first
    assert claims["act"]["sub"].startswith(f"spiffe://{report['trust_domain']}/agent/")
    assert "act" not in claims["act"]["act"]
    assert list(claims["cnf"]) == ["jkt"]


def test_attestation_is_reported_honestly(report: dict) -> None:
    att = report["attestation"]
    assert att["kind"] == "ear" and att["agent_id"] == report["agents"][0]["id"]
    assert att["result"]["verified"] is True and att["result"]["posture"] == "tee"
    assert "demo verifier key" in att["note"] and "No hardware evidence" in att["note"]
    assert att["claims"]
    # The loan agent's reported credential states the posture.
    token = report["agents"][0]["credential_vc_jwt"]
    subject = json.loads(base64.urlsafe_b64decode(token.split(".")[1] + "=="))["credentialSubject"]
    assert subject["attested"] is True and subject["attestation"]["tee"]["resultId"] == att["result"]["result_id"]


def test_access_token_verifies_with_plain_pyjwt_and_its_proof_with_joserfc(report: dict) -> None:
    at = report["access_token"]
    header = jwt.get_unverified_header(at["token"])
    key = jwt.PyJWKSet.from_dict(at["jwks"])[header["kid"]].key
    claims = jwt.decode(at["token"], key, algorithms=[header["alg"]], audience="https://ledger.bank.example",
                        issuer=at["iss"])
    assert header["typ"] == "at+jwt" and claims["sub"] == report["agents"][1]["spiffe_id"]
    proof_header = json.loads(base64.urlsafe_b64decode(at["dpop_proof"].split(".")[0] + "=="))
    assert proof_header["typ"] == "dpop+jwt"
    jwk = ECKey.import_key(proof_header["jwk"]) if proof_header["jwk"]["kty"] == "EC" else OKPKey.import_key(proof_header["jwk"])
    proof = json.loads(jws.deserialize_compact(at["dpop_proof"], jwk, algorithms=[proof_header["alg"]]).payload)
    assert proof["htm"] == at["htm"] and proof["htu"] == at["htu"]
    assert claims["cnf"]["jkt"] == jwk.thumbprint()
    assert at["verified"]["agent"] == claims["sub"]


def test_delegation_chain_token_and_revocation(report: dict) -> None:
    from multiformats import CID, multihash

    dl = report["delegation"]
    chain = dl["chain"]
    first = json.loads(base64.urlsafe_b64decode(chain[0].split(".")[1] + "=="))
    assert first["ucv"] == "0.10.0" and first["iss"] == dl["authority_did"]  # root first
    leaf = json.loads(base64.urlsafe_b64decode(chain[-1].split(".")[1] + "=="))
    assert leaf["aud"] == report["agents"][1]["did"]
    # CIDs recomputed independently (CIDv1, raw, sha2-256) are the ones the token carries.
    cids = [str(CID("base32", 1, "raw", multihash.digest(j.encode(), "sha2-256"))) for j in chain]
    claims = jwt.decode(dl["token"], options={"verify_signature": False})
    assert claims["delegation"]["chain"] == cids and claims["delegation"]["depth"] == len(chain)
    assert dl["revoked_after"]["token_introspection_active"] is False
    assert dl["revoked_after"]["new_token"] == "revoked" and dl["revoked_after"]["chain_check"] == "revoked"


def test_audit_report_checks_out_with_an_outside_verifier(report: dict) -> None:
    from tests.e2e.audit_report import check_audit_report

    leaves = check_audit_report(report["audit"])
    # Every event type the demo produced is in the log, each with its trace id.
    events = {leaf["event"] for leaf in leaves}
    for expected in ("tenant.created", "orchestrator.added", "agent.registered", "agent.exited",
                     "credential.issued", "credential.revoked", "token.issued", "attestation.verified",
                     "delegation.granted", "delegation.revoked", "policy.updated", "idp.changed"):
        assert expected in events, expected
    assert all(leaf.get("trace_id") for leaf in leaves if leaf.get("status") != "rejected")


def test_artifact_bundle_checks_out_with_outside_tools(report: dict) -> None:
    """The DSSE signature (PAE) with the agent's did:key, the in-toto subject digest, and the log
    entry's inclusion in the signed checkpoint (sigstore's RFC 9162 verifier, cryptography)."""
    import hashlib

    from tests.e2e.audit_report import open_checkpoint

    a = report["artifact"]
    bundle = a["bundle"]
    env = bundle["dsse_envelope"]
    payload = base64.b64decode(env["payload"])
    pae = b"DSSEv1 %d %s %d %s" % (len(env["payloadType"]), env["payloadType"].encode(), len(payload), payload)
    statement = json.loads(payload)
    assert statement == bundle["statement"] and statement["_type"] == "https://in-toto.io/Statement/v1"
    assert statement["subject"][0]["digest"]["sha256"] == hashlib.sha256(a["content"].encode()).hexdigest()
    did = statement["predicate"]["agent"]["did"]
    raw = base58.b58decode(did[len("did:key:z"):])
    key = ec.EllipticCurvePublicKey.from_encoded_point(ec.SECP256R1(), raw[2:])
    sig = base64.b64decode(env["signatures"][0]["sig"])
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.asymmetric.utils import encode_dss_signature

    key.verify(encode_dss_signature(int.from_bytes(sig[:32], "big"), int.from_bytes(sig[32:], "big")), pae,
               ec.ECDSA(hashes.SHA256()))
    assert statement["predicate"]["onBehalfOf"] == "alice@bank.example"
    _, size, root = open_checkpoint(bundle["checkpoint"], bundle["log_public_key"])
    from sigstore._internal.merkle import verify_merkle_inclusion

    from tests.e2e.audit_report import _sigstore_entry

    proof = bundle["inclusion_proof"]
    verify_merkle_inclusion(_sigstore_entry(proof["leaf_index"], size, proof["hashes"], root, bundle["leaf"].encode()))
    assert json.loads(bundle["leaf"])["details"]["artifact_digest"] == statement["subject"][0]["digest"]["sha256"]
