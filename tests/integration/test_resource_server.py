"""Resource servers against real NATS: revocations pushed by registration, and one DPoP replay
cache shared by two replicas. Tokens are minted locally (tests/token_factory.py) for real agents."""

from __future__ import annotations

import asyncio
import secrets
from collections.abc import AsyncIterator
from typing import Any

import msgspec
import nats
import pytest

from agentid.jwks import StaticJwks
from agentid.revocation import RevocationFeed
from agentid.verifier import Verifier
from contracts import subjects as sub
from shared.bus.signing import sign
from shared.dpop import KvReplayCache, make_proof
from shared.oauth_errors import InvalidDpopProofError, InvalidTokenError
from tests.helpers import Harness
from tests.token_factory import AUDIENCE, TokenFactory

pytestmark = pytest.mark.integration

URL = "https://ledger.example/accounts/42"


@pytest.fixture
async def rs_nc(harness: Harness) -> AsyncIterator[Any]:
    """The resource server's own connection: it has no bus identity, only subscriptions and KV."""
    nc = await nats.connect(harness.settings.nats_url or "", name="test-resource-server")
    yield nc
    await nc.drain()


def _issuer(tenant: str) -> TokenFactory:
    return TokenFactory(issuer=f"https://agentid.example/tenants/{tenant}", tenant=tenant)


async def _verifier(harness: Harness, nc: Any, tenant: str, issuer: TokenFactory, **kw: Any) -> Verifier:
    feed = RevocationFeed.from_deployment(nc, harness.deployment, tenant)
    verifier = Verifier(issuer=issuer.issuer, audience=AUDIENCE, jwks=StaticJwks(issuer.jwks),
                        revocations=feed, **kw)
    await verifier.start()
    return verifier


async def _verify(verifier: Verifier, key: Any, token: str, proof: str | None = None) -> Any:
    proof = proof or make_proof(key, "GET", URL, access_token=token)
    return await verifier.verify("GET", URL, f"DPoP {token}", proof, action="read", resource=URL)


async def test_an_exited_agents_token_is_refused_as_soon_as_the_event_arrives(
        harness: Harness, tenant: str, rs_nc: Any) -> None:
    orch, _, _ = await harness.new_orchestrator(tenant)
    issuer = _issuer(tenant)
    async with orch:
        agent, key = await harness.new_agent(orch)
        replicas = [await _verifier(harness, rs_nc, tenant, issuer) for _ in range(2)]
        token = issuer.mint(key.private, sub=agent.spiffe_id, client_id=agent.spiffe_id, agent_did=agent.did)
        for verifier in replicas:
            assert (await _verify(verifier, key.private, token)).agent_spiffe_id == agent.spiffe_id
        await agent.exit()
        for verifier in replicas:  # every replica hears it: no shared consumer
            feed = verifier.revocations
            assert feed is not None
            await asyncio.wait_for(feed.wait_for(lambda f=feed: f.revoked_principal(agent.spiffe_id)), 1.0)
            with pytest.raises(InvalidTokenError) as caught:
                await _verify(verifier, key.private, token)
            assert caught.value.reason == "revoked_agent"
        await agent.close()
        for verifier in replicas:
            await verifier.aclose()


async def test_a_verifier_started_after_the_exit_still_knows_it(harness: Harness, tenant: str, rs_nc: Any) -> None:
    """Start-up replays the retention window from the event stream."""
    orch, _, _ = await harness.new_orchestrator(tenant)
    issuer = _issuer(tenant)
    async with orch:
        agent, key = await harness.new_agent(orch)
        token = issuer.mint(key.private, sub=agent.spiffe_id, client_id=agent.spiffe_id)
        await agent.exit()
        await agent.close()
        subject = sub.AGENT_EXITED.subject(tenant, harness.root)
        assert await harness.next_events(subject)  # the event is in the stream
        verifier = await _verifier(harness, rs_nc, tenant, issuer)
        with pytest.raises(InvalidTokenError, match="revoked_agent"):
            await _verify(verifier, key.private, token)
        await verifier.aclose()


async def test_forged_revocations_are_ignored(harness: Harness, tenant: str, rs_nc: Any) -> None:
    orch, _, _ = await harness.new_orchestrator(tenant)
    issuer = _issuer(tenant)
    async with orch:
        agent, key = await harness.new_agent(orch)
        verifier = await _verifier(harness, rs_nc, tenant, issuer)
        feed = verifier.revocations
        assert feed is not None
        subject = sub.AGENT_EXITED.subject(tenant, harness.root)
        payload = msgspec.json.encode({"spiffe_id": agent.spiffe_id})
        await rs_nc.publish(subject, payload)  # unsigned
        await rs_nc.publish(subject, payload, headers=sign(orch.bus.signer, subject, payload))  # not registration
        await rs_nc.flush()
        await asyncio.wait_for(feed.wait_for(lambda: feed.ignored >= 2), 1.0)
        token = issuer.mint(key.private, sub=agent.spiffe_id, client_id=agent.spiffe_id)
        assert await _verify(verifier, key.private, token)
        await agent.close()
        await verifier.aclose()


async def test_two_replicas_share_one_replay_cache(harness: Harness, tenant: str, rs_nc: Any) -> None:
    issuer = _issuer(tenant)
    bucket = f"{harness.root}_dpop_{secrets.token_hex(4)}"
    second_nc = await nats.connect(harness.settings.nats_url or "", name="test-resource-server-2")
    try:
        a = Verifier(issuer=issuer.issuer, audience=AUDIENCE, jwks=StaticJwks(issuer.jwks),
                     replay=await KvReplayCache.open(rs_nc, bucket))
        b = Verifier(issuer=issuer.issuer, audience=AUDIENCE, jwks=StaticJwks(issuer.jwks),
                     replay=await KvReplayCache.open(second_nc, bucket))
        from shared.keys import PrivateKey

        key = PrivateKey.generate()
        token = issuer.mint(key)
        proof = make_proof(key, "GET", URL, access_token=token)
        assert await _verify(a, key, token, proof)
        with pytest.raises(InvalidDpopProofError) as caught:
            await _verify(b, key, token, proof)
        assert caught.value.reason == "replayed"
        assert await _verify(b, key, token)  # a fresh proof is fine on either replica
    finally:
        await rs_nc.jetstream().delete_key_value(bucket)
        await second_nc.drain()


async def test_the_token_workers_tokens_pass_and_its_revocations_are_honoured(
        harness: Harness, tenant: str, rs_nc: Any) -> None:
    """The contract with the token worker: its JWKS over the bus, its token, its `token.revoked`."""
    from agentid.jwks import BusJwks
    from contracts import tokens as tok
    from tests.helpers import ledger

    await harness.token_rules(tenant)
    orch, _, _ = await harness.new_orchestrator(tenant)
    async with orch:
        agent, key = await harness.new_agent(orch)
        issued = await agent.token([ledger()], AUDIENCE)
        feed = RevocationFeed.from_deployment(rs_nc, harness.deployment, tenant)
        verifier = Verifier(issuer=f"{harness.stack.settings.base_url()}/tenants/{tenant}", audience=AUDIENCE,
                            jwks=BusJwks(agent.bus, tenant), revocations=feed)
        await verifier.start()
        verified = await _verify(verifier, key.private, issued.access_token)
        assert verified.agent_spiffe_id == agent.spiffe_id and verified.jti == issued.jti
        await harness.operator.request(sub.TOKEN_REVOKE, tenant, tok.RevokeToken(jti=issued.jti))
        await asyncio.wait_for(feed.wait_for(lambda: feed.revoked_jti(issued.jti)), 1.0)
        with pytest.raises(InvalidTokenError, match="revoked_token"):
            await _verify(verifier, key.private, issued.access_token)
        await verifier.aclose()
        await agent.close()
