"""`RevocationFeed` without a server: signed events go in through `handle`, the link is a stub
whose state the test sets, and clocks are injected, so nothing waits on time."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import msgspec
import pytest

from agentid.jwks import StaticJwks
from agentid.revocation import RevocationFeed
from agentid.verifier import Verifier
from shared.bus.registry import StaticRegistry
from shared.bus.signing import Signer, sign
from shared.dpop import make_proof
from shared.keyring import Keyring
from shared.keys import PrivateKey
from shared.oauth_errors import InvalidTokenError, TemporarilyUnavailableError
from tests.token_factory import AUDIENCE, TENANT, TokenFactory, spiffe_id

RING = Keyring.generate()
SERVICES = StaticRegistry(k for k in RING.registry().senders() if k.kind == "service")
ROOT = "agentid"
URL = "https://ledger.example/accounts/42"


class FakeNats:
    def __init__(self) -> None:
        self.is_connected = True
        self.stats = {"reconnects": 0}
        self.subjects: list[str] = []

    async def subscribe(self, subject: str, cb: Any = None) -> Any:
        self.subjects.append(subject)

        class _Sub:
            async def unsubscribe(self) -> None:
                pass

        return _Sub()


def subject(noun: str, verb: str) -> str:
    return f"{ROOT}.v1.{TENANT}.evt.{noun}.{verb}"


def signed(noun: str, verb: str, body: dict, *, by: str | None = None, signer: Signer | None = None,
           ts_ms: int | None = None) -> tuple[str, dict, bytes]:
    subj = subject(noun, verb)
    payload = msgspec.json.encode(body)
    signer = signer or RING.signer("service", by or {"agent": "registration"}.get(noun, noun))
    return subj, sign(signer, subj, payload, ts_ms=ts_ms), payload


class Setup:
    def __init__(self, **feed_kw: Any) -> None:
        self.nc = FakeNats()
        self.mono = [1000.0]
        # The background watcher is parked (an hour between looks): tests call `watch_once` themselves.
        self.feed = RevocationFeed(self.nc, tenant=TENANT, registry=SERVICES, root=ROOT, catch_up=False,
                                   monotonic=lambda: self.mono[0], watch_interval_s=3600, **feed_kw)
        self.issuer = TokenFactory()
        self.agent = PrivateKey.generate()
        self.sub = spiffe_id()
        self.verifier = Verifier(issuer=self.issuer.issuer, audience=AUDIENCE, jwks=StaticJwks(self.issuer.jwks),
                                 revocations=self.feed)

    async def verify(self, token: str) -> Any:
        proof = make_proof(self.agent, "GET", URL, access_token=token)
        return await self.verifier.verify("GET", URL, f"DPoP {token}", proof, action="read", resource=URL)

    def token(self, **kw: Any) -> str:
        return self.issuer.mint(self.agent, sub=kw.pop("sub", self.sub), **kw)


@pytest.fixture
async def s() -> Any:
    setup = Setup()
    await setup.feed.start()
    yield setup
    await setup.feed.close()


async def test_subscribes_to_the_three_revocation_subjects(s: Setup) -> None:
    assert sorted(s.nc.subjects) == sorted([subject("agent", "exited"), subject("token", "revoked"),
                                            subject("delegation", "revoked")])


async def test_agent_exit_revokes_its_tokens_at_once(s: Setup) -> None:
    token = s.token()
    assert await s.verify(token)
    assert await s.feed.handle(*signed("agent", "exited", {
        "agent_id": "agt_x", "spiffe_id": s.sub, "did": "did:key:zX", "status": "exited", "reason": "done",
        "by": "spiffe://x/orchestrator/o", "at": "2026-01-01T00:00:00Z"}))
    with pytest.raises(InvalidTokenError, match="revoked_agent"):
        await s.verify(token)  # the cached token too
    assert await s.verify(s.token(sub=spiffe_id()))  # other agents are untouched


async def test_exit_revokes_tokens_where_the_agent_is_an_actor_or_named_by_did(s: Setup) -> None:
    actor = spiffe_id()
    obo = s.token(sub="user:alice", client_id=actor, act={"sub": actor})
    by_did = s.token(sub=spiffe_id(), agent_did="did:key:zGone")
    await s.feed.handle(*signed("agent", "exited", {"spiffe_id": actor, "did": "did:key:zGone"}))
    for token in (obo, by_did):
        with pytest.raises(InvalidTokenError, match="revoked_agent"):
            await s.verify(token)


async def test_token_revocation_refuses_that_jti(s: Setup) -> None:
    token, other = s.token(jti="jti-1"), s.token(jti="jti-2")
    await s.feed.handle(*signed("token", "revoked", {"jti": "jti-1", "sub": s.sub, "exp": time.time() + 300}))
    with pytest.raises(InvalidTokenError, match="revoked_token"):
        await s.verify(token)
    assert await s.verify(other)


async def test_delegation_revocation_refuses_chains_through_the_link(s: Setup) -> None:
    token = s.token(delegation={"depth": 2, "chain": ["bafyroot", "bafymid"]})
    unrelated = s.token(delegation={"depth": 1, "chain": ["bafyother"]})
    await s.feed.handle(*signed("delegation", "revoked", {"cids": ["bafymid"], "reason": "new field"}))
    with pytest.raises(InvalidTokenError, match="revoked_delegation"):
        await s.verify(token)
    assert await s.verify(unrelated)


@pytest.mark.parametrize("case", ["unsigned", "other_service", "operator", "stale", "garbage", "wrong_subject"])
async def test_events_we_cannot_trust_are_ignored(s: Setup, case: str) -> None:
    body = {"spiffe_id": s.sub}
    subj, headers, payload = signed("agent", "exited", body)
    if case == "unsigned":
        headers = {}
    elif case == "other_service":
        subj, headers, payload = signed("agent", "exited", body, by="issuance")
    elif case == "operator":
        subj, headers, payload = signed("agent", "exited", body, signer=RING.signer("operator", "admin"))
    elif case == "stale":
        subj, headers, payload = signed("agent", "exited", body, ts_ms=int((time.time() - 3600) * 1000))
    elif case == "garbage":
        subj, headers, payload = signed("agent", "exited", {"nothing": 1})
    else:
        subj = subj.replace(TENANT, "other")
    assert not await s.feed.handle(subj, headers, payload)
    assert s.feed.ignored == 1 and s.feed.applied == 0
    assert await s.verify(s.token())


async def test_wait_for_returns_when_the_revocation_is_applied(s: Setup) -> None:
    waiter = asyncio.create_task(s.feed.wait_for(lambda: s.feed.revoked_principal(s.sub)))
    await asyncio.sleep(0)
    assert not waiter.done()
    await s.feed.handle(*signed("agent", "exited", {"spiffe_id": s.sub}))
    await asyncio.wait_for(waiter, 1.0)


async def test_entries_expire_after_the_longest_token_lifetime() -> None:
    wall = [time.time()]
    setup = Setup(clock=lambda: wall[0])
    await setup.feed.start()
    await setup.feed.handle(*signed("agent", "exited", {"spiffe_id": setup.sub}, ts_ms=int(wall[0] * 1000)))
    assert setup.feed.revoked_principal(setup.sub)
    wall[0] += setup.feed.retention_s + 1
    assert not setup.feed.revoked_principal(setup.sub)
    await setup.feed.close()


async def test_cut_off_from_nats_the_verifier_fails_closed_after_the_grace(s: Setup) -> None:
    token = s.token()
    assert await s.verify(token)
    s.nc.is_connected = False
    s.mono[0] += 10
    assert await s.verify(s.token())  # within max_disconnected_s (30 s): still served
    s.mono[0] += 21
    with pytest.raises(TemporarilyUnavailableError) as caught:
        await s.verify(s.token())
    assert caught.value.status == 503 and caught.value.reason == "revocations_stale"


async def test_after_reconnecting_the_feed_must_catch_up_before_it_is_current() -> None:
    setup = Setup(max_disconnected_s=5)
    caught_up: list[float] = []

    async def fake_catch_up(since: float) -> None:
        caught_up.append(since)

    setup.feed._catch_up = fake_catch_up  # type: ignore[method-assign]
    setup.feed._catch_up_enabled = True
    await setup.feed.start()
    caught_up.clear()
    setup.nc.is_connected = False
    await setup.feed.watch_once()
    setup.mono[0] += 6
    with pytest.raises(TemporarilyUnavailableError):
        await setup.verify(setup.token())
    setup.nc.is_connected = True
    setup.nc.stats["reconnects"] = 1
    with pytest.raises(TemporarilyUnavailableError):  # connected, but the gap is not replayed yet
        await setup.verify(setup.token())
    await setup.feed.watch_once()
    assert len(caught_up) == 1  # replayed from the last moment it was current (minus skew)
    assert await setup.verify(setup.token())
    await setup.feed.close()


async def test_a_reconnect_between_two_looks_is_noticed() -> None:
    setup = Setup()
    replays: list[float] = []

    async def fake_catch_up(since: float) -> None:
        replays.append(since)

    setup.feed._catch_up = fake_catch_up  # type: ignore[method-assign]
    await setup.feed.start()
    setup.feed._catch_up_enabled = True
    setup.nc.stats["reconnects"] = 3
    await setup.feed.watch_once()
    assert len(replays) == 1
    await setup.feed.watch_once()
    assert len(replays) == 1
    await setup.feed.close()


async def test_zero_grace_refuses_as_soon_as_the_link_is_down() -> None:
    setup = Setup(max_disconnected_s=0)
    await setup.feed.start()
    setup.nc.is_connected = False
    setup.mono[0] += 0.001
    with pytest.raises(TemporarilyUnavailableError):
        await setup.verify(setup.token())
    await setup.feed.close()


async def test_a_feed_that_is_not_started_refuses() -> None:
    setup = Setup()
    with pytest.raises(TemporarilyUnavailableError, match="not_started"):
        await setup.verify(setup.token())


async def test_full_deny_sets_refuse_every_token() -> None:
    setup = Setup(max_entries=1)
    await setup.feed.start()
    await setup.feed.handle(*signed("token", "revoked", {"jti": "a"}))
    await setup.feed.handle(*signed("token", "revoked", {"jti": "b"}))
    with pytest.raises(TemporarilyUnavailableError, match="overflow"):
        await setup.verify(setup.token())
    await setup.feed.close()


def test_the_feed_must_cover_the_verifiers_tenant_and_lifetime() -> None:
    issuer = TokenFactory()
    feed = RevocationFeed(FakeNats(), tenant="other", registry=SERVICES)
    with pytest.raises(ValueError):
        Verifier(issuer=issuer.issuer, audience=AUDIENCE, jwks=StaticJwks(issuer.jwks), revocations=feed)
    feed = RevocationFeed(FakeNats(), tenant=TENANT, registry=SERVICES, max_token_lifetime_s=60)
    with pytest.raises(ValueError):
        Verifier(issuer=issuer.issuer, audience=AUDIENCE, jwks=StaticJwks(issuer.jwks), revocations=feed)
