"""Bus permissions enforced by NATS itself (issue 13, item 6).

A real nats-server runs with the configuration `services/bus_permissions.py` generates (the one
deploy/nats.conf is rendered from), every user with a freshly generated nkey. First the real workers
run under it, each as its own user, and the whole flow works: spawn by request and by event,
credential, JWT-SVID, token, delegation root, attestation challenge, audit, revocations replayed by a
verifier; no worker hits a refusal. Then each role tries what it must not do, and the server
refuses: the refusal is the server's `-ERR 'Permissions Violation ...'`, which nats-py hands to the
error callback, and where a message could have been delivered an observer that may see everything
proves it was not.

"Not delivered" needs no sleeps: a server handles one connection's messages in order, so after the
sender's flush (PING/PONG) anything it routed is already queued for the receiver, and after the
receiver's own flush it has been read.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import nats
import pytest
from nats.aio.client import Client as NATS
from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy
from nats.js.errors import NotFoundError

from agentid.agent import Agent
from agentid.audit import AuditClient
from agentid.deployment import Deployment
from agentid.keys import AgentKey
from agentid.orchestrator import Orchestrator
from agentid.revocation import RevocationFeed
from contracts import attestation as att
from contracts import audit as au
from contracts import delegation as dlg
from contracts import registration as reg
from contracts import subjects as sub
from contracts import tokens as tok
from services import runner
from services.bus_permissions import Permissions, User, new_user_nkey, render, users
from shared.bus import Bus
from shared.bus.client import stream_name
from shared.bus.inbox import operator_inbox, party_inbox, service_inbox
from shared.config import Settings
from shared.embedded import EmbeddedNats
from shared.keyring import Keyring
from shared.keys import PrivateKey
from tests.helpers import (
    DEFAULT_AUTHORITY,
    PERMIT_STANDARD,
    SPAWN_FIELDS,
    TOKEN_CONFIG,
    ledger,
    scratch_database,
)

pytestmark = pytest.mark.integration

ROOT = "agentid"
TENANTS = ("acme", "beta")
STREAM = stream_name(ROOT)
# The gateway's own connection does not pass a NATS identity yet (services/gateway/worker.py):
# it cannot join a secured deployment until it does, so it does not run here.
WORKERS = [w for w in runner.WORKERS if w != "gateway"]
OBSERVER = User("observer", "test only: sees and may send everything",
                Permissions(publish=(">",), subscribe=(">",)))


class Refusals(logging.Handler):
    """Every 'nats refused' a worker logs (shared/bus/client.py): must stay empty."""

    def __init__(self) -> None:
        super().__init__(logging.ERROR)
        self.messages: list[str] = []
        self._more = asyncio.Event()

    def emit(self, record: logging.LogRecord) -> None:
        if record.getMessage().startswith("nats refused"):
            self.messages.append(record.getMessage())
            self._more.set()  # logged from the connection's own task, on this loop

    async def wait(self, count: int) -> None:
        while len(self.messages) < count:
            self._more.clear()
            await self._more.wait()


@dataclass
class Secured:
    url: str
    seeds: dict[str, str]
    keyring: Keyring
    operator: Bus
    observer: NATS
    refusals: Refusals
    public: dict[str, Any] = field(default_factory=dict)

    def deployment(self, user: str) -> Deployment:
        return Deployment.from_json({"nats_url": self.url, "nats_prefix": ROOT, "keyring": self.keyring.public()},
                                    nats_nkey_seed=self.seeds[user])


@pytest.fixture(scope="module")
async def secured(servers: tuple[str, str], settings: Settings,
                  tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Secured]:
    base: Path = tmp_path_factory.mktemp("secured")
    pairs = {u.name: new_user_nkey() for u in [*users(ROOT, TENANTS), OBSERVER]}
    config = base / "nats.conf"
    config.write_text(render(ROOT, TENANTS, {name: public for name, (_, public) in pairs.items()},
                             server=False, system_account=False, extra=[OBSERVER]))
    seeds = {name: seed for name, (seed, _) in pairs.items()}
    server = EmbeddedNats(base / "nats", config=config)
    await server.start()
    # Its own database: these workers must not share outboxes with the session's.
    async with scratch_database(servers[1], "agentid_perm_") as database_url:
        keyring = Keyring.generate()
        s = settings.model_copy(update={"nats_url": server.url, "database_url": database_url, "nats_prefix": ROOT,
                                        "data_dir": base / "data"})
        refusals = Refusals()
        logging.getLogger("shared.bus.client").addHandler(refusals)
        workers = [runner.worker_class(name)(s.model_copy(update={"nats_nkey_seed": seeds[name]}), keyring,
                                             nats_url=server.url, database_url=database_url) for name in WORKERS]
        stop = asyncio.Event()
        task = asyncio.create_task(runner.run(workers, stop))
        operator = observer = None
        try:
            await runner.wait_ready(workers)
            operator = await Bus.connect(server.url, name="operator", signer=keyring.signer("operator", "admin"),
                                         registry=keyring.registry(), root=ROOT, nkey_seed=seeds["operator"],
                                         inbox_prefix=operator_inbox(ROOT))
            observer = await nats.connect(server.url, nkeys_seed_str=seeds["observer"])
            for tenant in TENANTS:
                await operator.request(sub.CREATE_TENANT, tenant, reg.CreateTenant())
            yield Secured(server.url, seeds, keyring, operator, observer, refusals)
        finally:
            for conn_ in (operator, observer):
                if conn_ is not None:
                    await conn_.drain()
            stop.set()
            await task
            logging.getLogger("shared.bus.client").removeHandler(refusals)
            await server.stop()


class As:
    """A raw connection as one user, keeping what the server refused it.

    The server's `-ERR` for a refusal may reach the client after the PONG of a following flush, so
    a refusal is awaited (bounded), not assumed after a flush.
    """

    def __init__(self, nc: NATS, refused: list[str], arrived: asyncio.Condition) -> None:
        self.nc = nc
        self.refused = refused
        self._arrived = arrived

    @classmethod
    async def connect(cls, secured: Secured, user: str, inbox: str | None = None) -> As:
        refused: list[str] = []
        arrived = asyncio.Condition()

        async def on_error(exc: Exception) -> None:
            async with arrived:
                refused.append(str(exc))
                arrived.notify_all()

        options = {"inbox_prefix": inbox} if inbox else {}
        nc = await nats.connect(secured.url, nkeys_seed_str=secured.seeds[user], error_cb=on_error,
                                allow_reconnect=False, **options)
        return cls(nc, refused, arrived)

    async def refusal(self, action: str, subject: str) -> None:
        # nats-py lowercases the server's message (subject included); `using queue "q"` may follow.
        text = f'nats: permissions violation for {action} to "{subject}"'.lower()
        async with self._arrived:
            try:
                await asyncio.wait_for(self._arrived.wait_for(
                    lambda: any(r.startswith(text) for r in self.refused)), 5.0)
            except TimeoutError:
                raise AssertionError(f"not refused: {action} {subject}; refusals: {self.refused}") from None

    async def publish_refused(self, subject: str, observer: NATS) -> None:
        """Publishing on `subject` is refused, and nobody receives it."""
        watch = await observer.subscribe(subject)
        await observer.flush()
        await self.nc.publish(subject, b"{}", reply=self.nc.new_inbox())
        await self.refusal("publish", subject)
        # The server has handled the message: had it routed it, the observer would have it by now.
        await observer.flush()
        assert watch.pending_msgs == 0
        await watch.unsubscribe()

    async def publish_allowed(self, subject: str, observer: NATS) -> None:
        """The control: what the user may publish, the observer does receive."""
        watch = await observer.subscribe(subject)
        await observer.flush()
        await self.nc.publish(subject, b"{}")
        assert (await watch.next_msg(timeout=5.0)).subject == subject
        await watch.unsubscribe()

    async def subscribe_refused(self, subject: str, observer: NATS, *, queue: str = "",
                                probe: str | None = None) -> None:
        """Subscribing to `subject` is refused, and a message sent there (`probe`) never arrives."""
        watch = await self.nc.subscribe(subject, queue=queue)
        await self.refusal("subscription", subject)
        await observer.publish(probe or subject, b"{}")
        await observer.flush()
        await self.nc.flush()
        assert watch.pending_msgs == 0

    async def close(self) -> None:
        await self.nc.close()


async def as_user(secured: Secured, user: str, inbox: str | None = None) -> As:
    return await As.connect(secured, user, inbox)


# -- the configuration is workable: the real workers under it ------------------------------------


async def test_the_workers_run_the_whole_flow_under_the_permissions(secured: Secured) -> None:
    operator = secured.operator
    key = PrivateKey.generate()
    record = await operator.request(sub.ADD_ORCHESTRATOR, "acme", reg.AddOrchestrator(
        name="orch", public_jwk=key.public.jwk(), authority=DEFAULT_AUTHORITY))
    orch = await Orchestrator.connect(tenant="acme", orchestrator_id=record.orchestrator_id,
                                      spiffe_id=record.spiffe_id, key=key,
                                      deployment=secured.deployment("acme.orchestrator"))
    feed_nc = await nats.connect(secured.url, nkeys_seed_str=secured.seeds["acme.verifier"],
                                 inbox_prefix=party_inbox(ROOT, "acme", "verifier"))
    await operator.request(sub.TOKEN_CONFIG_SET, "acme", tok.SetTokenConfig(config=TOKEN_CONFIG))
    await operator.request(sub.POLICY_SET, "acme", tok.SetPolicy(policies=PERMIT_STANDARD))
    async with orch:
        agent_key = AgentKey.generate()
        identity = await orch.spawn(agent_key, **SPAWN_FIELDS)                     # request-reply
        by_event = await orch.spawn_via_event(orch.spawn_request(AgentKey.generate(), **SPAWN_FIELDS))
        assert by_event.tenant == "acme"
        agent = await Agent.connect(identity, agent_key, deployment=secured.deployment("acme.agent"), renew=False)
        async with agent:
            assert (await agent.credential()).agent_id == identity.agent_id        # waits on credential.issued
            assert await agent.jwt_svid("https://tools.example")
            await agent.renew_svid()
            assert (await agent.bus.request(sub.DELEGATION_AUTHORITY, "acme", dlg.GetAuthority())).did
            assert (await agent.token([ledger()], "https://ledger.example")).access_token
            challenge = await agent.bus.request(sub.ATTESTATION_CHALLENGE, "acme", att.RequestChallenge())
            assert challenge.nonce
            head = await agent.bus.request(sub.AUDIT_CHECKPOINTS, "acme", au.ListCheckpoints())
            assert head.origin
            await agent.exit()
        # A verifier started after the exit replays it from the stream, through its pinned consumer.
        feed = RevocationFeed.from_deployment(feed_nc, secured.deployment("acme.verifier"), "acme")
        await feed.start()
        assert feed.revoked_principal(identity.spiffe_id)
        await feed.close()
    await feed_nc.drain()
    # The audit worker's durable consumer read every event of the tenant.
    assert (await AuditClient(operator, "acme").caught_up(timeout=20)).checkpoint.size > 0
    assert not secured.refusals.messages, secured.refusals.messages


async def test_a_refusal_is_reported_loudly_by_a_workers_bus(secured: Secured) -> None:
    """What the flow above relies on: a worker's bus logs every refusal (so 'none' means none)."""
    bus = await Bus.connect(secured.url, name="agentid-token", signer=None, registry=secured.keyring.registry(),
                            root=ROOT, nkey_seed=secured.seeds["token"], inbox_prefix=service_inbox(ROOT, "token"))
    before = len(secured.refusals.messages)
    await bus.nc.publish(sub.AGENT_REGISTERED.subject("acme", ROOT), b"{}")
    await asyncio.wait_for(secured.refusals.wait(before + 1), 5.0)
    await bus.close()
    assert secured.refusals.messages[before:] == [
        'nats refused agentid-token: nats: permissions violation for publish to "agentid.v1.acme.evt.agent.registered"']
    del secured.refusals.messages[before:]


async def test_only_known_users_connect(secured: Secured) -> None:
    with pytest.raises(Exception, match="[Aa]uthorization"):
        await nats.connect(secured.url, allow_reconnect=False, max_reconnect_attempts=0)
    stranger, _ = new_user_nkey()
    with pytest.raises(Exception, match="[Aa]uthorization"):
        await nats.connect(secured.url, nkeys_seed_str=stranger, allow_reconnect=False, max_reconnect_attempts=0)


# -- workers ---------------------------------------------------------------------------------------


async def test_a_worker_may_not_publish_another_workers_events(secured: Secured) -> None:
    token = await as_user(secured, "token", service_inbox(ROOT, "token"))
    for topic in (sub.AGENT_REGISTERED, sub.AGENT_EXITED, sub.CREDENTIAL_ISSUED, sub.SPAWN_REQUESTED):
        await token.publish_refused(topic.subject("acme", ROOT), secured.observer)
    # ...nor call what it has no business calling, though the catalogue lets services call it.
    await token.publish_refused(sub.LIST_AGENTS.subject("acme", ROOT), secured.observer)
    await token.close()


async def test_a_worker_may_not_take_another_workers_requests(secured: Secured) -> None:
    token = await as_user(secured, "token", service_inbox(ROOT, "token"))
    spawn = sub.SPAWN.pattern(ROOT)
    probe = sub.SPAWN.subject("beta", ROOT)
    await token.subscribe_refused(spawn, secured.observer, queue="registration", probe=probe)
    await token.subscribe_refused(spawn, secured.observer, queue="token", probe=probe)
    # Its own routes only in its own queue group: no silent extra copy of every token request.
    issue = sub.TOKEN_ISSUE.pattern(ROOT)
    await token.subscribe_refused(issue, secured.observer, probe=sub.TOKEN_ISSUE.subject("beta", ROOT))
    await token.close()


async def test_nobody_reads_anothers_replies(secured: Secured) -> None:
    token = await as_user(secured, "token", service_inbox(ROOT, "token"))
    agent = await as_user(secured, "acme.agent", party_inbox(ROOT, "acme", "agent"))
    for offender, inbox in ((token, service_inbox(ROOT, "registration")), (token, "_INBOX"),
                            (agent, party_inbox(ROOT, "beta", "agent")),
                            (agent, party_inbox(ROOT, "acme", "orchestrator")), (agent, operator_inbox(ROOT))):
        await offender.subscribe_refused(inbox + ".>", secured.observer, probe=inbox + ".x.y")
    await token.close()
    await agent.close()


async def test_only_the_audit_worker_touches_its_durable(secured: Secured) -> None:
    audit = await as_user(secured, "audit", service_inbox(ROOT, "audit"))
    info = await audit.nc.jetstream().consumer_info(STREAM, "audit-log")
    assert info.name == "audit-log" and not audit.refused
    await audit.close()
    subjects = [f"$JS.API.CONSUMER.{api}.{STREAM}.audit-log"
                for api in ("INFO", "MSG.NEXT", "DURABLE.CREATE", "CREATE", "DELETE")]
    subjects.append(f"$JS.ACK.{STREAM}.audit-log.1.1.1.1.0")
    everyone_else = [u.name for u in users(ROOT, TENANTS) if u.name not in ("audit", "operator")]
    for name in everyone_else:
        offender = await as_user(secured, name)
        for subject in subjects:
            await offender.publish_refused(subject, secured.observer)
        await offender.close()


async def test_a_worker_may_not_create_consumers_of_its_own_choosing(secured: Secured) -> None:
    token = await as_user(secured, "token", service_inbox(ROOT, "token"))
    js = token.nc.jetstream(timeout=0.5)
    config = ConsumerConfig(durable_name="stolen", ack_policy=AckPolicy.EXPLICIT, deliver_policy=DeliverPolicy.ALL)
    with pytest.raises(nats.errors.TimeoutError):  # the request never reaches JetStream: no answer
        await js.add_consumer(STREAM, config)
    await token.refusal("publish", f"$JS.API.CONSUMER.DURABLE.CREATE.{STREAM}.stolen")
    with pytest.raises(NotFoundError):
        await secured.operator.js.consumer_info(STREAM, "stolen")
    await token.close()


# -- orchestrators, agents, verifiers --------------------------------------------------------------


async def test_an_agent_is_confined_to_its_own_routes(secured: Secured) -> None:
    agent = await as_user(secured, "acme.agent", party_inbox(ROOT, "acme", "agent"))
    observer = secured.observer
    for subject in (sub.CREATE_TENANT.subject("acme", ROOT),        # operators only
                    sub.SPAWN.subject("acme", ROOT),                # orchestrators only
                    sub.LOOKUP_SENDER.subject("acme", ROOT),        # services only
                    sub.GET_AGENT.subject("beta", ROOT),            # another tenant
                    sub.SPAWN_REQUESTED.subject("acme", ROOT),      # an orchestrator's event
                    sub.CREDENTIAL_ISSUED.subject("acme", ROOT)):   # issuance's event
        await agent.publish_refused(subject, observer)
    for subject in (f"{ROOT}.v1.*.evt.>", f"{ROOT}.v1.acme.evt.>", sub.AGENT_REGISTERED.subject("acme", ROOT),
                    sub.CREDENTIAL_ISSUED.subject("beta", ROOT), sub.GET_AGENT.subject("acme", ROOT)):
        await agent.subscribe_refused(subject, observer, probe=subject.replace("*", "acme").replace(">", "agent.x"))
    # The replay cache and the stream are the workers' business.
    kv = f"{ROOT}_replay"
    for subject in (f"$JS.API.STREAM.INFO.KV_{kv}", f"$JS.API.DIRECT.GET.KV_{kv}.$KV.{kv}.k", f"$KV.{kv}.k",
                    f"$JS.API.STREAM.INFO.{STREAM}", f"$JS.API.CONSUMER.CREATE.{STREAM}"):
        await agent.publish_refused(subject, observer)
    await agent.subscribe_refused(f"$KV.{kv}.>", observer, probe=f"$KV.{kv}.probe")
    # What it may do, it may: the refusals above are the server's, not a closed connection.
    await agent.publish_allowed(sub.GET_BUNDLE.subject("acme", ROOT), observer)
    await agent.close()


async def test_an_orchestrator_stays_in_its_tenant(secured: Secured) -> None:
    orch = await as_user(secured, "acme.orchestrator", party_inbox(ROOT, "acme", "orchestrator"))
    for subject in (sub.SPAWN.subject("beta", ROOT), sub.SPAWN_REQUESTED.subject("beta", ROOT),
                    sub.REVOKE_AGENT.subject("beta", ROOT), sub.AGENT_REGISTERED.subject("acme", ROOT),
                    sub.ADD_ORCHESTRATOR.subject("acme", ROOT)):
        await orch.publish_refused(subject, secured.observer)
    for subject in (sub.AGENT_REGISTERED.subject("beta", ROOT), sub.CREDENTIAL_ISSUED.subject("acme", ROOT)):
        await orch.subscribe_refused(subject, secured.observer)
    await orch.publish_allowed(sub.LIST_AGENTS.subject("acme", ROOT), secured.observer)
    await orch.close()


async def test_a_verifier_replays_only_its_tenants_revocations(secured: Secured) -> None:
    verifier = await as_user(secured, "acme.verifier", party_inbox(ROOT, "acme", "verifier"))
    own = sub.AGENT_EXITED.subject("acme", ROOT)
    theirs = sub.AGENT_EXITED.subject("beta", ROOT)
    await verifier.publish_refused(f"$JS.API.CONSUMER.CREATE.{STREAM}.peek.{theirs}", secured.observer)
    await verifier.publish_refused(f"$JS.API.CONSUMER.CREATE.{STREAM}.peek", secured.observer)  # no filter in it
    await verifier.subscribe_refused(theirs, secured.observer)
    await verifier.publish_refused(sub.TOKEN_JWKS.subject("acme", ROOT), secured.observer)  # it signs nothing
    # Through the subject it may use, JetStream itself refuses a consumer whose filter is not that subject.
    inbox = verifier.nc.new_inbox()
    for config in ({"filter_subject": theirs}, {"filter_subjects": [theirs]}, {"filter_subject": f"{ROOT}.v1.>"}):
        request = {"stream_name": STREAM, "config": {"name": "peek", "deliver_subject": inbox,
                                                     "ack_policy": "none", **config}}
        reply = await verifier.nc.request(f"$JS.API.CONSUMER.CREATE.{STREAM}.peek.{own}",
                                          __import__("json").dumps(request).encode(), timeout=5)
        assert b'"error"' in reply.data, reply.data
    assert not [r for r in verifier.refused if own in r]
    await verifier.close()
