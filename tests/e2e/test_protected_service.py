"""End to end: an agent spawned through the orchestrator gets a DPoP-bound token from the token
worker and calls the example ledger over real HTTP, which accepts it and refuses every misuse."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from typing import Any

import httpx
import jwt
import nats
import pytest

from agentid.jwks import BusJwks
from agentid.revocation import RevocationFeed
from agentid.verifier import Verifier
from examples.protected_service.app import create_app, serve
from shared import jose
from shared.dpop import make_proof
from shared.keys import PrivateKey
from tests.helpers import Harness, eventually

pytestmark = pytest.mark.e2e

LEDGER = "https://ledger.example"
POLICY = 'permit(principal is Agent, action in [Action::"read", Action::"pay"], resource);'


def read(path: str = "/accounts/42") -> dict[str, Any]:
    return {"type": "ledger", "locations": [f"{LEDGER}{path}"], "actions": ["read"]}


@pytest.fixture
async def ledger(harness: Harness, tenant: str) -> AsyncIterator[tuple[str, list[Verifier]]]:
    await harness.token_rules(tenant, policy=POLICY)
    issuer = f"{harness.stack.settings.base_url()}/tenants/{tenant}"
    rs_nc = await nats.connect(harness.settings.nats_url or "", name="ledger")
    made: list[Verifier] = []

    async def verifier() -> Verifier:
        feed = RevocationFeed.from_deployment(rs_nc, harness.deployment, tenant)
        # leeway 0: so that the expired-token check below needs no half-minute wait
        v = Verifier(issuer=issuer, audience=LEDGER, jwks=BusJwks(harness.operator, tenant), revocations=feed,
                     leeway=0)
        await v.start()
        made.append(v)
        return v

    async with serve(lambda base_url: create_app(verifier, base_url=base_url)) as url:
        yield url, made
    await rs_nc.drain()


async def test_the_ledger_accepts_a_valid_call_and_refuses_every_misuse(harness: Harness, tenant: str, ledger) -> None:
    url, verifiers = ledger
    orch, _, _ = await harness.new_orchestrator(tenant)
    agent, key = await harness.new_agent(orch)
    other, other_key = await harness.new_agent(orch)
    account = f"{url}/accounts/42"
    async with httpx.AsyncClient() as http:
        # The SDK way: an httpx auth that fetches the token and signs a proof per request.
        ok = await http.get(account, auth=agent.http_auth([read()], LEDGER))
        assert ok.status_code == 200, ok.text
        assert ok.json()["read_by"] == agent.spiffe_id

        token = (await agent.token([read()], LEDGER)).access_token

        async def call(method: str = "GET", target: str = account, *, proof: str | None = None,
                       scheme: str = "DPoP", tok: str = token, **kw: Any) -> httpx.Response:
            headers = {"Authorization": f"{scheme} {tok}"}
            if proof is not False:
                headers["DPoP"] = proof or make_proof(key.private, method, target, access_token=tok)
            return await http.request(method, target, headers=headers, **kw)

        fresh = make_proof(key.private, "GET", account, access_token=token)
        assert (await call(proof=fresh)).status_code == 200
        replayed = await call(proof=fresh)
        assert replayed.status_code == 401 and 'error="invalid_dpop_proof"' in replayed.headers["www-authenticate"]

        wrong_method = make_proof(key.private, "POST", account, access_token=token)
        wrong_url = make_proof(key.private, "GET", f"{url}/accounts/43", access_token=token)
        for proof in (wrong_method, wrong_url):
            r = await call(proof=proof)
            assert r.status_code == 401 and "invalid_dpop_proof" in r.headers["www-authenticate"]

        thief = make_proof(other_key.private, "GET", account, access_token=token)  # another agent's key
        r = await call(proof=thief)
        assert r.status_code == 401 and 'error="invalid_token"' in r.headers["www-authenticate"]

        outside = await call(target=f"{url}/accounts/43")  # the details name account 42 only
        assert outside.status_code == 403 and "insufficient_scope" in outside.headers["www-authenticate"]
        pay = await call("POST", f"{url}/payments", json={"to": "bob", "amount": {"value": "1.00", "currency": "EUR"}})
        assert pay.status_code == 403

        bearer = await call(scheme="Bearer", proof=False)
        assert bearer.status_code == 401 and "invalid_token" in bearer.headers["www-authenticate"]

        # A token signed by a key the tenant never published (same kid, same claims).
        header, claims, _ = jose.split(token)
        forged = jose.sign(claims, PrivateKey.generate(), typ="at+jwt", kid=header["kid"])
        r = await call(tok=forged)
        assert r.status_code == 401 and "invalid_token" in r.headers["www-authenticate"]

        # An expired token.
        short = (await agent.token([read()], LEDGER, lifetime_s=1)).access_token
        assert jwt.decode(short, options={"verify_signature": False})["exp"] <= time.time() + 1

        async def expired() -> bool:
            return (await call(tok=short)).status_code == 401

        await eventually(expired, timeout=10)

        # A revoked agent's token is refused as soon as the revocation event reaches the verifier.
        other_token = (await other.token([read()], LEDGER)).access_token
        r = await call(tok=other_token, proof=make_proof(other_key.private, "GET", account, access_token=other_token))
        assert r.status_code == 200
        await orch.revoke(other.agent_id, reason="compromised")
        feed = verifiers[0].revocations
        assert feed is not None
        await asyncio.wait_for(feed.wait_for(lambda: feed.revoked_principal(other.spiffe_id)), 1.0)
        r = await call(tok=other_token, proof=make_proof(other_key.private, "GET", account, access_token=other_token))
        assert r.status_code == 401 and "invalid_token" in r.headers["www-authenticate"]
    for a in (agent, other):
        await a.close()
    await orch.close()
