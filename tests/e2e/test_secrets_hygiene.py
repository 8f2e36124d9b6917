"""Secrets hygiene: after a full demo run (and refusals provoked with secrets in hand), no access
token, DPoP proof, JWT-SVID, user token or private key is in any log record, event, span, database
row, error reply, exception or line the demo printed.

The needles are collected, not guessed: every key generated in the process is recorded, the
deployment keyring's private members are read, and every bearer-grade JWT that crossed the bus is
picked out of the traffic itself (requests and replies).
"""

from __future__ import annotations

import base64
import json
import re
from collections.abc import Iterator
from typing import Any

import pytest

from agentid import demo
from agentid.devidp import DevIdp
from agentid.verifier import Verifier
from agentid.jwks import BusJwks
from contracts import headers as H
from contracts import subjects as sub
from shared import jose
from shared.b64 import b64u_decode
from shared.dpop import make_proof
from shared.errors import AgentidError
from shared.keys import PrivateKey
from shared.oauth_errors import VerificationError
from tests import secrets_scan
from tests.helpers import Harness

pytestmark = pytest.mark.e2e

JWT = re.compile(rb"eyJ[A-Za-z0-9_-]{8,}\.eyJ[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]{16,}")


def _bearer_grade(token: str) -> bool:
    """Tokens that grant something to whoever holds them (or prove possession right now): access
    tokens, DPoP proofs, JWT-SVIDs, a user's token. Credentials, UCANs and status lists are meant to
    be stored and shown."""
    try:
        header, claims, _ = jose.split(token)
    except jose.JoseError:
        return False
    if header.get("typ") in ("at+jwt", "dpop+jwt") or header.get("alg") == "RS256":
        return True
    return header.get("typ") == "JWT" and str(claims.get("sub", "")).startswith("spiffe://") and "ucv" not in claims


def _key_needles(d: str) -> Iterator[str]:
    """A private key's scalar as the ways it could leak: base64url (the JWK `d`), base64, hex."""
    raw = b64u_decode(d)
    yield d
    yield base64.b64encode(raw).decode().rstrip("=")
    yield raw.hex()


def _private_members(doc: Any) -> Iterator[str]:
    if isinstance(doc, dict):
        for name, value in doc.items():
            if name in ("d", "kek") and isinstance(value, str):
                yield value
            else:
                yield from _private_members(value)
    elif isinstance(doc, list):
        for value in doc:
            yield from _private_members(value)


async def test_no_secret_of_a_full_demo_run_is_anywhere(harness: Harness, spans, caplog, monkeypatch) -> None:
    caplog.set_level("DEBUG")
    generated: list[PrivateKey] = []
    original = PrivateKey.generate.__func__  # type: ignore[attr-defined]

    def recording(cls: type[PrivateKey], alg: Any = "EdDSA") -> PrivateKey:
        key = original(cls, alg)
        generated.append(key)
        return key

    monkeypatch.setattr(PrivateKey, "generate", classmethod(recording))
    wire: list[tuple[str, dict[str, str], bytes]] = []

    async def capture(msg: Any) -> None:
        wire.append((msg.subject, dict(msg.headers or {}), msg.data))

    taps = [await harness.nc.subscribe(f"_INBOX.>", cb=capture), await harness.nc.subscribe(f"{harness.root}.v1.>", cb=capture)]
    said: list[str] = []
    report = await demo.run(harness.settings, say=said.append)
    assert report["access_token"]["token"] and report["obo"]["token"]

    # Refusals with secrets in hand: the messages say what is wrong, never repeat the secret.
    exceptions: list[BaseException] = []
    idp = DevIdp()
    forged_user_token = idp.mint("mallory@bank.example", audience="https://agents.bank.example")
    verifier = Verifier(issuer=report["access_token"]["iss"], audience=demo.LEDGER, jwks=BusJwks(harness.operator, "demo"))
    await verifier.start()
    stolen = report["access_token"]["token"]
    orch, _, _ = await harness.new_orchestrator("demo")
    agent, _ = await harness.new_agent(orch)
    attempts = [
        verifier.verify("GET", report["access_token"]["htu"], f"DPoP {stolen}",  # a thief's own key
                        make_proof(PrivateKey.generate("ES256"), "GET", report["access_token"]["htu"], access_token=stolen),
                        action="read", resource=report["access_token"]["htu"]),
        verifier.verify("GET", report["access_token"]["htu"], f"Bearer {stolen}", None,
                        action="read", resource=report["access_token"]["htu"]),
        orch.token_for(agent.agent_id, forged_user_token, [demo.ledger_detail(["read"], "/loans/L-1001")],
                       demo.LEDGER),
    ]
    for attempt in attempts:
        with pytest.raises((AgentidError, VerificationError)) as refused:
            await attempt
        exceptions.append(refused.value)
    await verifier.aclose()
    await agent.close()
    await orch.close()
    await harness.nc.flush()
    for tap in taps:
        await tap.unsubscribe()

    tokens = {m.group().decode() for _, headers, data in wire for m in JWT.finditer(data + repr(headers).encode())}
    secret_tokens = {t for t in tokens | {forged_user_token, stolen, report["access_token"]["dpop_proof"],
                                          report["obo"]["token"]} if _bearer_grade(t)}
    kinds = {"user" if jose.split(t)[0]["alg"] == "RS256" else jose.split(t)[0].get("typ") for t in secret_tokens}
    assert kinds == {"at+jwt", "dpop+jwt", "JWT", "user"}, kinds  # the capture saw every kind
    needles = [part for t in secret_tokens for part in (t, t.rsplit(".", 1)[1])]
    private = [k.private_jwk()["d"] for k in generated] + list(_private_members(harness.keyring.to_json(private=True)))
    assert len(generated) >= 10  # agents, orchestrator, CA, issuer, token and delegation keys, proofs
    needles += [n for d in private for n in _key_needles(d)]

    found = await secrets_scan.in_database(harness, needles)
    found += await secrets_scan.in_events(harness, needles, "demo")
    found += secrets_scan.in_spans(spans, needles)
    found += secrets_scan.in_logs(caplog.records, needles)
    errors = [data.decode("utf-8", "replace") for _, headers, data in wire if headers.get(H.ERROR)]
    assert len(errors) >= 2  # the demo's refusal after revocation, the forged user token
    found += [f"error reply: {e[:80]}" for e in errors for n in needles if n in e]
    found += [f"exception {type(e).__name__}" for e in exceptions for n in needles if n in f"{e} {e!r} {e.args}"]
    found += [f"printed: {line[:80]}" for line in said for n in needles if n in line]
    assert found == []
    # The scan would have seen them: what is meant to be public is found in the same places.
    assert await secrets_scan.in_events(harness, [report["agents"][0]["spiffe_id"]], "demo")
    assert secrets_scan.in_logs(caplog.records, [report["agents"][0]["id"]]) or secrets_scan.in_spans(
        spans, [report["agents"][0]["id"]])
    assert json.dumps(report).count(stolen) == 1  # the report carries the artifact itself, on purpose
