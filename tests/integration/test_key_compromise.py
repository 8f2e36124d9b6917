"""Key compromise drills.

A compromised orchestrator is revoked in one command, and everything it issued goes with it: its
key, its agents (sub-agents included), their credentials, their delegations and their tokens.
Each signing key (token, SPIFFE CA and JWT-SVID key, credential issuer, delegation authority, the
tenant's audit log) is rotated while agents keep asking for and presenting artifacts, and relying parties that refetch
keys the way the SDK and the SPIFFE spec say never see a failed verification.
"""

from __future__ import annotations

import asyncio
import json
from collections import Counter
from collections.abc import Awaitable, Callable
from typing import Any

import jwt
import pytest
from msgspec.structs import replace
from cryptography import x509

from agentid import audit_log, delegation
from agentid.agent import Agent
from agentid.audit import AuditClient, AuditProofError, open_with_keys, verify_inclusion
from agentid.cli import build_parser
from agentid.credentials import BusFetcher, verify_credential
from agentid.jwks import BusJwks
from agentid.revocation import RevocationFeed
from agentid.verifier import Verifier
from contracts import audit as au
from contracts import delegation as dlg
from contracts import issuance as iss
from contracts import registration as reg
from contracts import subjects as sub
from contracts import tokens as tok
from shared import spiffe as sp
from shared import ucan
from shared.bus import Bus
from shared.dpop import make_proof
from shared.errors import AgentInactive, Forbidden, NotFound
from shared.oauth_errors import InvalidTokenError
from shared.vc import CredentialError
from tests.helpers import DEFAULT_AUTHORITY, Harness, eventually, ledger

pytestmark = pytest.mark.integration

AUDIENCE = "https://ledger.example"
URL = "https://ledger.example/accounts/42"
RECORDS = {"type": "records", "locations": ["https://api.example.com/records/*"], "actions": ["read", "write"]}
DELEGATION = dlg.DelegationConfig(max_depth=5, base=[dlg.BaseCapabilities(tiers=["standard"], capabilities=[RECORDS])])


async def _rules(harness: Harness, tenant: str) -> None:
    await harness.token_rules(tenant)
    await harness.operator.request(sub.DELEGATION_CONFIG_SET, tenant, dlg.SetDelegationConfig(config=DELEGATION))


def _verifier(harness: Harness, tenant: str, **kw: Any) -> Verifier:
    return Verifier(issuer=f"{harness.stack.settings.base_url()}/tenants/{tenant}", audience=AUDIENCE,
                    jwks=BusJwks(harness.operator, tenant), **kw)


async def _present(verifier: Verifier, agent: Agent, token: str, url: str = URL) -> Any:
    proof = make_proof(agent.key.private, "GET", url, access_token=token)
    return await verifier.verify("GET", url, f"DPoP {token}", proof, action="read", resource=url)


# -- a compromised orchestrator -----------------------------------------------------------------------

async def test_a_compromised_orchestrator_is_revoked_with_everything_it_issued(
        harness: Harness, tenant: str, capsys: pytest.CaptureFixture[str]) -> None:
    await _rules(harness, tenant)
    bad, bad_record, _ = await harness.new_orchestrator(tenant)
    good, _, _ = await harness.new_orchestrator(tenant)
    a, _ = await harness.new_agent(bad)
    b, _ = await harness.new_agent(bad, parent_agent_id=a.agent_id)  # a sub-agent goes with its tree
    c, _ = await harness.new_agent(good)
    d, _ = await harness.new_agent(good)
    for agent in (a, b, c, d):
        await delegation.root(agent)

    # What the compromised orchestrator's agents hold: credentials, tokens, delegations both ways.
    a_credential = await a.credential()
    a_token = await a.token([ledger()], AUDIENCE)
    c_token = await c.token([ledger()], AUDIENCE)
    a_to_b = await delegation.delegate(a, b.did, [RECORDS], 600, parent=await delegation.root(a))
    c_to_a = await delegation.delegate(c, a.did, [RECORDS], 600, parent=await delegation.root(c))
    c_to_d = await delegation.delegate(c, d.did, [RECORDS], 600, parent=await delegation.root(c))
    feed = RevocationFeed.from_deployment(harness.nc, harness.deployment, tenant)
    verifier = _verifier(harness, tenant, revocations=feed)
    await verifier.start()
    assert (await _present(verifier, a, a_token.access_token)).agent_spiffe_id == a.spiffe_id

    # One command.
    args = build_parser().parse_args(["orchestrator", "revoke", bad_record.orchestrator_id, "--tenant", tenant,
                                      "--reason", "key found in a public repository"])
    assert await args.fn(args, harness.settings) == 0
    assert "2 agents revoked" in capsys.readouterr().out

    # The orchestrator's key is refused from its next message.
    with pytest.raises(Forbidden):
        await harness.new_agent(bad)
    # Its agents: revoked, and refused as senders.
    for agent in (a, b):
        shown = await harness.operator.request(sub.GET_AGENT, tenant, reg.GetAgent(agent_id=agent.agent_id))
        assert shown.status == "revoked" and "key found in a public repository" in (shown.end_reason or "")
    with pytest.raises(AgentInactive):
        await a.jwt_svid("spiffe://example.org/x")
    # Their tokens: refused by resource servers (the feed) and by introspection.
    await asyncio.wait_for(feed.wait_for(lambda: feed.revoked_principal(a.spiffe_id)), 5.0)
    with pytest.raises(InvalidTokenError) as refused:
        await _present(verifier, a, a_token.access_token)
    assert refused.value.reason == "revoked_agent"

    async def introspected_inactive() -> bool:
        got = await harness.operator.request(sub.TOKEN_INTROSPECT, tenant, tok.Introspect(token=a_token.access_token))
        return got.active is False

    await eventually(introspected_inactive)
    # Their credentials: the status bit is set.
    issuer = await harness.operator.request(sub.GET_ISSUER, tenant, iss.GetIssuer())

    async def credential_revoked() -> bool:
        try:
            await verify_credential(a_credential.vc_jwt, trusted_issuers=issuer.dids,
                                    fetcher=BusFetcher(harness.operator))
        except CredentialError as exc:
            return exc.reason == "revoked"
        return False

    await eventually(credential_revoked)
    # Their delegations, given and received, are revoked; the other orchestrator's are untouched.
    async def delegations_revoked() -> bool:
        listing = await harness.operator.request(sub.DELEGATION_REVOCATIONS, tenant, dlg.ListRevocations())
        return {a_to_b.cid, c_to_a.cid} <= {r.cid for r in listing.revocations}

    await eventually(delegations_revoked)
    assert (await delegation.check(d, c_to_d)).depth == 2
    assert (await _present(verifier, c, c_token.access_token)).agent_spiffe_id == c.spiffe_id
    # One event says what happened, and the audit log has it.
    [msg] = await harness.next_events(sub.ORCHESTRATOR_REVOKED.subject(tenant, harness.root))
    event = json.loads(msg.data)
    assert event["orchestrator_id"] == bad_record.orchestrator_id
    assert set(event["revoked_agents"]) == {a.agent_id, b.agent_id}
    # Revoking again finds nothing left to revoke and announces nothing.
    again = await harness.operator.request(sub.REVOKE_ORCHESTRATOR, tenant,
                                           reg.RevokeOrchestrator(orchestrator_id=bad_record.orchestrator_id))
    assert again.revoked_agents == [] and again.count == 0
    assert await harness.event_count(sub.ORCHESTRATOR_REVOKED.subject(tenant, harness.root)) == 1
    # Another tenant's operator request cannot name this tenant's orchestrator; nor can a made-up id.
    other = await harness.new_tenant()
    for where, orchestrator_id in ((other, good.orchestrator_id), (tenant, "orc_00000000000000000000000000")):
        with pytest.raises(NotFound):
            await harness.operator.request(sub.REVOKE_ORCHESTRATOR, where,
                                           reg.RevokeOrchestrator(orchestrator_id=orchestrator_id))
    await verifier.aclose()
    for closing in (a, b, c, d, bad, good):
        await closing.close()


# -- rotation under load ----------------------------------------------------------------------------

class RelyingParty:
    """What an outside verifier holds for one tenant: the SPIFFE bundle, the credential issuers it
    trusts and the delegation roots. Each is fetched again once when an artifact names an authority
    it does not know (the SPIFFE bundle endpoint and did:key issuers work that way), never more."""

    def __init__(self, bus: Bus, tenant: str) -> None:
        self.bus, self.tenant = bus, tenant
        self.cas: list[x509.Certificate] = []
        self.svid_keys: dict[str, Any] = {}
        self.issuers: list[str] = []
        self.roots: list[str] = []
        self.audit = AuditClient(bus, tenant)
        self.pinned_log_key = ""
        self.log_keys: tuple[str, list[tuple[str, int]]] = ("", [])

    async def pin_log(self) -> None:
        """The log key an auditor pins once; later keys are trusted only through signed handovers."""
        self.pinned_log_key = (await self.audit.checkpoint()).log_public_key
        self.log_keys = (self.pinned_log_key, [])

    async def refresh(self) -> None:
        if self.pinned_log_key:
            self.log_keys = await self.audit.keys(self.pinned_log_key)
        bundle = await self.bus.request(sub.GET_BUNDLE, self.tenant, reg.GetBundle())
        self.cas, self.svid_keys = sp.bundle_authorities(bundle.jwks)
        self.issuers = (await self.bus.request(sub.GET_ISSUER, self.tenant, iss.GetIssuer())).dids
        self.roots = (await self.bus.request(sub.DELEGATION_AUTHORITY, self.tenant, dlg.GetAuthority())).trusted_roots

    async def _twice(self, check: Callable[[], Awaitable[Any]]) -> Any:
        try:
            return await check()
        except (sp.SpiffeError, CredentialError, LookupError, AuditProofError):
            await self.refresh()
            return await check()

    async def x509_svid(self, pem: str) -> str:
        cert = x509.load_pem_x509_certificate(pem.encode())

        async def check() -> str:
            return sp.verify_x509_svid([cert], self.cas)
        await self._twice(check)
        return cert.issuer.rfc4514_string()

    async def jwt_svid(self, token: str, audience: str) -> str:
        async def check() -> Any:
            return sp.verify_jwt_svid(token, self.svid_keys, audience=audience)
        await self._twice(check)
        return str(jwt.get_unverified_header(token)["kid"])

    async def credential(self, vc_jwt: str) -> str:
        async def check() -> Any:
            return await verify_credential(vc_jwt, trusted_issuers=self.issuers, fetcher=BusFetcher(self.bus))
        await self._twice(check)
        return str(jwt.decode(vc_jwt, options={"verify_signature": False})["iss"])

    async def log_entry(self) -> str:
        """The newest entry's inclusion proof, against the newest checkpoint."""
        head = await self.audit.checkpoint()
        proof = await self.audit.proof(head.checkpoint.size - 1, head.checkpoint.size)

        async def check() -> str:
            current, retired = self.log_keys
            _, key = open_with_keys(proof.checkpoint, [current], retired)
            verify_inclusion(proof.leaf, proof.leaf_index, proof.hashes, proof.checkpoint, key)
            return key
        return str(await self._twice(check))

    async def root(self, root_jwt: str) -> str:
        issuer = ucan.parse(root_jwt).iss

        async def check() -> str:
            if issuer not in self.roots:
                raise LookupError(issuer)
            return issuer
        return str(await self._twice(check))


async def test_signing_keys_rotate_under_load_without_a_failed_verification(harness: Harness, tenant: str) -> None:
    await _rules(harness, tenant)
    orch, _, _ = await harness.new_orchestrator(tenant, replace(DEFAULT_AUTHORITY, spawns_per_minute=60_000))
    workers = [(await harness.new_agent(orch))[0] for _ in range(3)]
    rp = RelyingParty(harness.operator, tenant)
    await rp.refresh()
    verifier = _verifier(harness, tenant)
    await verifier.start()
    await rp.pin_log()
    seen: dict[str, Counter[str]] = {kind: Counter() for kind in ("token", "jwt_svid", "ca", "issuer", "root", "log")}
    failures: list[str] = []
    stop = asyncio.Event()

    async def loop(name: str, step: Callable[[int], Awaitable[None]]) -> None:
        n = 0
        while not stop.is_set():
            n += 1
            try:
                await step(n)
            except Exception as exc:  # every failure is the finding: collect, keep the load on
                failures.append(f"{name}: {type(exc).__name__}: {exc}")

    def presenting(agent: Agent) -> Callable[[int], Awaitable[None]]:
        async def step(n: int) -> None:
            issued = await agent.token([ledger(path=f"/accounts/{n}")], AUDIENCE)  # new details: a new token
            await _present(verifier, agent, issued.access_token, f"{AUDIENCE}/accounts/{n}")
            seen["token"][jwt.get_unverified_header(issued.access_token)["kid"]] += 1
            seen["jwt_svid"][await rp.jwt_svid(await agent.jwt_svid("spiffe://rp.example/api"),
                                               "spiffe://rp.example/api")] += 1
        return step

    async def spawning(n: int) -> None:
        agent, _ = await harness.new_agent(orch)
        try:
            assert agent.identity.svid is not None
            seen["ca"][await rp.x509_svid(agent.identity.svid.cert_pem)] += 1
            seen["issuer"][await rp.credential((await agent.credential()).vc_jwt)] += 1
            root = await delegation.root(agent)
            seen["root"][await rp.root(root.jwt)] += 1
            await delegation.check(agent, root)
            seen["log"][await rp.log_entry()] += 1
        finally:
            await agent.exit()
            await agent.close()

    tasks = [asyncio.create_task(loop(f"agent {i}", presenting(a))) for i, a in enumerate(workers)]
    tasks.append(asyncio.create_task(loop("spawner", spawning)))

    async def verified_with_more(kind: str, than: int) -> None:
        """Load keeps flowing: `kind` has been verified under more distinct keys than `than`."""
        async def enough() -> bool:
            return len(seen[kind]) > than and min(seen[kind].values()) >= 2 or bool(failures)
        await eventually(enough, timeout=30)

    for kind in seen:
        await verified_with_more(kind, 0)
    await harness.operator.request(sub.TOKEN_ROTATE_KEY, tenant, tok.RotateSigningKey())
    await verified_with_more("token", 1)
    await harness.operator.request(sub.ROTATE_AUTHORITIES, tenant, reg.RotateAuthorities())
    await verified_with_more("ca", 1)
    await verified_with_more("jwt_svid", 1)
    await harness.operator.request(sub.ROTATE_ISSUER_KEY, tenant, iss.RotateIssuerKey())
    await verified_with_more("issuer", 1)
    await harness.operator.request(sub.DELEGATION_ROTATE_AUTHORITY, tenant, dlg.RotateAuthority())
    await verified_with_more("root", 1)
    await harness.operator.request(sub.AUDIT_ROTATE_KEY, tenant, au.RotateLogKey())
    await verified_with_more("log", 1)
    stop.set()
    await asyncio.gather(*tasks)

    assert failures == []
    assert all(len(keys) == 2 for keys in seen.values()), seen  # each kind verified under old and new keys
    await verifier.aclose()
    for agent in workers:
        await agent.close()
    await orch.close()


async def test_the_log_key_rotates_from_the_command_line_and_the_whole_log_verifies_from_the_old_pin(
        harness: Harness, tenant: str, capsys: pytest.CaptureFixture[str]) -> None:
    orch, _, _ = await harness.new_orchestrator(tenant)
    first, _ = await harness.new_agent(orch)
    client = AuditClient(harness.operator, tenant)

    async def logged(n: int) -> bool:
        try:
            return (await client.checkpoint()).checkpoint.size >= n
        except NotFound:
            return False

    await eventually(lambda: logged(3))
    old = (await client.checkpoint()).log_public_key
    args = build_parser().parse_args(["audit", "rotate-key", "--tenant", tenant, "--reason", "drill"])
    assert await args.fn(args, harness.settings) == 0
    assert "signed by the old and the new key" in capsys.readouterr().out
    head = await client.checkpoint()
    assert head.log_public_key != old and [r.key for r in head.retired_log_keys] == [old]
    handover = head.retired_log_keys[0].until_size
    second, _ = await harness.new_agent(orch)  # more entries, signed by the new key only
    await eventually(lambda: logged(handover + 1))
    export = await audit_log.fetch(client)
    for pinned in (old, head.log_public_key):
        report = audit_log.verify_log(export, log_key=pinned)
        assert report.ok, report.problems
    newest = export.checkpoints[-1].note
    with pytest.raises(AuditProofError):  # the old key alone does not vouch for what came after
        open_with_keys(newest, [old])
    for a in (first, second, orch):
        await a.close()
