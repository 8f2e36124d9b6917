"""Fuzzing every parser and verifier that reads what others send, without servers: whatever the
input, each answers with a result or its own typed error, never another exception.

Structured mutation fuzzers already exist for UCAN claims (tests/unit/delegation/test_ucan_parse.py),
RAR objects (tests/unit/capabilities/test_capability_mappings.py), DPoP proofs
(tests/unit/resource_server/test_dpop.py) and attestation evidence
(tests/unit/attestation/test_attest_fuzz.py); these add raw text and JWS-shaped inputs for the same
entry points and cover the rest.
"""

from __future__ import annotations

import datetime as dt
import json
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from hypothesis import given
from hypothesis import strategies as st

from agentid.access_token import read_token
from agentid.audit import AuditProofError, verify_inclusion
from agentid.audit_log import ExportError, LogExport, verify_log
from shared import checkpoint, did, dpop, jose, signed_note, spiffe, status_list, ucan, vc
from shared.artifacts_check import check_signed_statement
from shared.b64 import b64u_encode
from shared.capabilities import CapabilityError, parse_authorization_details
from shared.dsse import EnvelopeError, open_envelope
from shared.errors import InvalidRequest, InvalidSignature
from shared.keys import InvalidKey, PrivateKey, PublicKey
from shared.oauth_errors import VerificationError
from tests.hostile.fuzzing import compact_tokens, fuzz, json_values, objects_with, run
from tests.unit.audit.test_audit_verify import LOG_KEY, make_log

KEY = PrivateKey.generate()
TEXT = st.text(max_size=120)


@fuzz(80)
@given(compact_tokens(["exp", "iat", "nbf", "aud", "iss", "sub", "jti"]))
def test_jose_split_and_verify(token: str) -> None:
    try:
        jose.split(token)
        jose.verify(token, KEY.public, algorithms=["EdDSA", "ES256"], typ="JWT", audience="a", issuer="i")
    except jose.JoseError:
        pass


@fuzz(80)
@given(compact_tokens(["jti", "htm", "htu", "iat", "ath", "nonce"]) | st.lists(TEXT, max_size=3), TEXT)
def test_dpop_check_proof(proof: Any, token: str) -> None:
    try:
        dpop.check_proof(proof, method="GET", url="https://rs.example/x", access_token=token or None)
    except VerificationError:
        pass


@fuzz(80)
@given(compact_tokens(["ucv", "iss", "aud", "nbf", "exp", "nnc", "fct", "cap", "prf"]))
def test_ucan_parse(token: str) -> None:
    try:
        ucan.parse(token)
    except ucan.DelegationError:
        pass


@fuzz(80)
@given(json_values | st.lists(objects_with(["type", "locations", "actions", "identifiers", "datatypes",
                                            "privileges", "max_uses", "not_after"]), max_size=3))
def test_parse_authorization_details(value: Any) -> None:
    try:
        parse_authorization_details(value)
    except CapabilityError:
        pass


@fuzz(50)
@given(compact_tokens(["iss", "sub", "jti", "id", "type", "@context", "issuer", "validFrom", "validUntil",
                       "credentialSubject", "credentialStatus", "exp", "nbf"]))
def test_verify_credential(token: str) -> None:
    try:
        run(vc.verify_credential(token, resolver=vc.DidResolver(), trusted_issuers=None, status_fetcher=None))
    except (vc.CredentialError, did.DidError):
        pass


@fuzz(80)
@given(TEXT | st.binary(max_size=80).map(lambda b: "u" + b64u_encode(b)))
def test_status_list_decode(encoded: str) -> None:
    try:
        status_list.decode(encoded)
    except status_list.StatusListError:
        pass


LINES = st.lists(st.one_of(TEXT, st.sampled_from(["", "0", "18446744073709551616", "-1", "1 2",
                                                   "47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU="])), max_size=6)


@fuzz(80)
@given(LINES, st.booleans())
def test_checkpoint_and_signed_note(lines: list[str], trailing: bool) -> None:
    text = "\n".join(lines) + ("\n" if trailing else "")
    try:
        checkpoint.parse(text)
    except checkpoint.CheckpointError:
        pass
    try:
        signed_note.open_note(text + "\n\u2014 " + "\n".join(lines), [signed_note.parse_verifier_key(LOG_KEY)])
    except signed_note.NoteError:
        pass


@fuzz(80)
@given(TEXT | st.builds(lambda td, path: f"spiffe://{td}/{path}", TEXT, TEXT))
def test_spiffe_parse_id(value: str) -> None:
    try:
        spiffe.parse_id(value)
    except spiffe.SpiffeError:
        pass


_CA_KEY = ec.generate_private_key(ec.SECP256R1())


@st.composite
def certificates(draw: st.DrawFn) -> x509.Certificate:
    """Leaf-shaped certificates with any URI SANs and any CA flag, key usage present or not."""
    name = x509.Name([x509.NameAttribute(x509.NameOID.COMMON_NAME, "fuzz")])
    now = dt.datetime.now(dt.UTC)
    builder = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(_CA_KEY.public_key())
               .serial_number(draw(st.integers(1, 2**64))).not_valid_before(now).not_valid_after(now + dt.timedelta(hours=1)))
    uris = draw(st.lists(st.sampled_from(["spiffe://td.example/agent/a", "spiffe://td/", "https://x", "spiffe://a/b/../c"])
                         | st.text(alphabet="spife:/.abc-", max_size=30), max_size=3))
    if uris:
        builder = builder.add_extension(x509.SubjectAlternativeName([x509.UniformResourceIdentifier(u) for u in uris]),
                                        critical=False)
    if draw(st.booleans()):
        builder = builder.add_extension(x509.BasicConstraints(ca=draw(st.booleans()), path_length=None), critical=True)
    if draw(st.booleans()):
        builder = builder.add_extension(x509.KeyUsage(
            digital_signature=draw(st.booleans()), content_commitment=False, key_encipherment=False,
            data_encipherment=False, key_agreement=False, key_cert_sign=draw(st.booleans()), crl_sign=False,
            encipher_only=False, decipher_only=False), critical=True)
    return builder.sign(_CA_KEY, hashes.SHA256())


@fuzz(30)
@given(certificates())
def test_spiffe_svid_id(cert: x509.Certificate) -> None:
    try:
        spiffe.svid_id(cert)
    except spiffe.SpiffeError:
        pass


@fuzz(80)
@given(objects_with(["kty", "crv", "x", "y", "d", "n", "e", "alg", "kid", "use"]),
       TEXT | st.builds(lambda s: "did:key:z" + s, TEXT))
def test_public_keys_from_jwk_and_did(jwk: dict[str, Any], did_text: str) -> None:
    for make, value in ((PublicKey.from_jwk, jwk), (PublicKey.from_did, did_text)):
        try:
            make(value)  # type: ignore[operator]
        except InvalidKey:
            pass


@fuzz(80)
@given(TEXT | st.builds(lambda s: "did:web:" + s, TEXT))
def test_did_web_url(value: str) -> None:
    try:
        did.did_web_url(value)
    except did.DidError:
        pass


@fuzz(80)
@given(objects_with(["iss", "sub", "aud", "exp", "iat", "jti", "cnf", "client_id", "tenant", "authorization_details",
                     "act", "delegation", "scope", "agent"]))
def test_read_access_token(claims: dict[str, Any]) -> None:
    try:
        read_token(claims, kid="k1", tenant="t1", max_delegation_depth=5)
    except VerificationError:
        pass


@fuzz(80)
@given(objects_with(["payload", "payloadType", "signatures"])
       | st.fixed_dictionaries({"payload": TEXT, "payloadType": TEXT,
                                "signatures": st.lists(objects_with(["keyid", "sig"]), max_size=2)}))
def test_dsse_envelopes_and_signed_statements(envelope: dict[str, Any]) -> None:
    try:
        open_envelope(envelope)
    except EnvelopeError:
        pass
    try:
        check_signed_statement(envelope, KEY.public)
    except (InvalidRequest, InvalidSignature):
        pass


_LOG = list(make_log(6, [2, 6]).lines())
_NOTE = next(json.loads(line)["note"] for line in _LOG if json.loads(line)["type"] == "checkpoint")


@fuzz(60)
@given(st.integers(0, len(_LOG) - 1), st.text(max_size=12), json_values, st.booleans())
def test_audit_log_exports_parse_and_verify_or_say_why(line: int, member: str, value: Any, replace_line: bool) -> None:
    """An auditor's export file, damaged anywhere: parsing refuses it, or verification reports it."""
    lines = list(_LOG)
    if replace_line:
        lines[line] = json.dumps(value)
    else:
        doc = json.loads(lines[line])
        doc[member if member in doc or not doc else sorted(doc)[len(member) % len(doc)]] = value
        lines[line] = json.dumps(doc)
    try:
        export = LogExport.parse(lines)
    except ExportError:
        return
    verify_log(export, log_key=LOG_KEY)


@fuzz(60)
@given(st.text(max_size=60), st.integers(-3, 2**64), st.lists(st.text(max_size=50), max_size=4), LINES)
def test_verify_inclusion(leaf: str, index: int, proof: list[str], note_lines: list[str]) -> None:
    note = _NOTE if index % 2 else "\n".join(note_lines)
    try:
        verify_inclusion(leaf, index, proof, note, LOG_KEY)
    except AuditProofError:
        pass
