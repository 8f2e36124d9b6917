"""The delegation worker: roots from the tenant authority, a depth-5 chain recorded link by link,
each refusal with its own reason (and nothing recorded), cascading revocation in one event, an
agent's exit, revocation records, the graph through the command line."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Sequence
from itertools import pairwise
from typing import Any

import msgspec
import pytest

from agentid import delegation
from agentid.agent import Agent
from agentid.cli import build_parser
from contracts import delegation as dlg
from contracts import subjects as sub
from shared import ucan
from shared.b64 import b64u_encode
from shared.capabilities import from_rar
from shared.errors import DelegationInvalid, Forbidden, InvalidRequest, NotFound
from shared.keys import PrivateKey
from tests.helpers import Harness, eventually
from tests.unit.delegation.chains import resign

pytestmark = pytest.mark.integration

API = "https://api.example.com/records"
RECORDS = {"type": "records", "locations": [f"{API}/*"], "actions": ["read", "write"]}
CONFIG = dlg.DelegationConfig(max_depth=5, base=[dlg.BaseCapabilities(tiers=["standard"], capabilities=[RECORDS])])


def records(path: str, *actions: str) -> dict[str, Any]:
    return {"type": "records", "locations": [f"{API}{path}"], "actions": list(actions)}


# What each agent of tenant -> A -> B -> C -> D -> E passes on: every hop narrower.
HOPS = [records("/*", "read", "write"), records("/team/*", "read", "write"), records("/team/*", "read"),
        records("/team/42", "read")]


async def _configure(harness: Harness, tenant: str, config: dlg.DelegationConfig = CONFIG) -> None:
    await harness.operator.request(sub.DELEGATION_CONFIG_SET, tenant, dlg.SetDelegationConfig(config=config))


async def _agents(harness: Harness, tenant: str, n: int, **fields: Any) -> tuple[Any, list[Agent]]:
    """`n` agents, each known to the delegation worker (its root fetched) before it is used."""
    orch, _, _ = await harness.new_orchestrator(tenant)
    agents = [(await harness.new_agent(orch, **fields))[0] for _ in range(n)]
    await asyncio.gather(*(delegation.root(a) for a in agents))
    return orch, agents


async def _chain(agents: Sequence[Agent]) -> list[delegation.Delegation]:
    """tenant -> agents[0] -> agents[1] -> ..., through the SDK, one `delegation.grant` per link."""
    links = [await delegation.root(agents[0])]
    for i, (giver, taker) in enumerate(pairwise(agents)):
        links.append(await delegation.delegate(giver, taker.did, [HOPS[min(i, len(HOPS) - 1)]], 600,
                                               parent=links[-1]))
    return links


async def _close(orch: Any, agents: Sequence[Agent]) -> None:
    for agent in agents:
        await agent.close()
    await orch.close()


async def _links(harness: Harness, tenant: str) -> int:
    return await harness.count("SELECT count(*) FROM delegation.links WHERE tenant = $1", tenant)


async def _refused(agent: Agent, chain: Sequence[str], reason: str) -> None:
    with pytest.raises(DelegationInvalid) as exc:
        await agent.bus.request(sub.DELEGATION_GRANT, agent.tenant, dlg.GrantDelegation(chain=list(chain)))
    assert exc.value.detail == {"reason": reason}, exc.value.message


def _link(issuer: Agent | PrivateKey, audience: Agent, details: Sequence[dict[str, Any]], parent: str | None, *,
          nbf: int | None = None, exp: int | None = None) -> str:
    key = issuer if isinstance(issuer, PrivateKey) else issuer.key.private
    now = int(time.time())
    # Expiring well before the 600 s links of `_chain`, so a link made a second later still nests.
    return ucan.issue(key, audience.did, [from_rar(d) for d in details], expires=exp or now + 300,
                      not_before=nbf if nbf is not None else now, proofs=[parent] if parent else [])


# -- roots ---------------------------------------------------------------------------------------------
async def test_an_agent_gets_a_root_from_the_tenant_authority_at_registration(harness: Harness, tenant: str) -> None:
    await _configure(harness, tenant)
    authority = await harness.operator.request(sub.DELEGATION_AUTHORITY, tenant, dlg.GetAuthority())
    orch, _, _ = await harness.new_orchestrator(tenant)
    agent, _ = await harness.new_agent(orch)
    [msg] = await harness.next_events(sub.DELEGATION_GRANTED.subject(tenant, harness.root))
    event = msgspec.json.decode(msg.data, type=dlg.DelegationGranted)
    assert event.audience_agent_id == agent.agent_id and event.issuer_agent_id is None and event.depth == 1
    assert event.issuer_did == authority.did and authority.trusted_roots == [authority.did]
    root = await delegation.root(agent)
    assert root.cid == event.cid and root.chain == (root.jwt,)
    claims = ucan.parse(root.jwt)
    assert claims.iss == authority.did and claims.aud == agent.did and claims.prf == ()
    assert claims.exp == int(agent.identity.expires_at.timestamp())
    assert root.record.capabilities == [RECORDS]
    # An agent whose tier no rule names gets no root.
    high, _ = await harness.new_agent(orch, tier="high")
    with pytest.raises(NotFound):
        await delegation.root(high)
    # An agent asks only for its own root; an operator for anyone's.
    with pytest.raises(Forbidden):
        await agent.bus.request(sub.DELEGATION_ROOT, tenant, dlg.GetRoot(agent_id=high.agent_id))
    by_operator = await harness.operator.request(sub.DELEGATION_ROOT, tenant, dlg.GetRoot(agent_id=agent.agent_id))
    assert by_operator.cid == root.cid
    await _close(orch, [agent, high])


async def test_rules_that_could_not_be_a_ucan_are_refused(harness: Harness, tenant: str) -> None:
    bad = dlg.DelegationConfig(base=[dlg.BaseCapabilities(capabilities=[{"type": "records", "actions": ["read"]}])])
    with pytest.raises(InvalidRequest):
        await harness.operator.request(sub.DELEGATION_CONFIG_SET, tenant, dlg.SetDelegationConfig(config=bad))
    record = await harness.operator.request(sub.DELEGATION_CONFIG_GET, tenant, dlg.GetDelegationConfig())
    assert record.version == 0 and record.config == dlg.DelegationConfig()


# -- the depth-5 chain ---------------------------------------------------------------------------------
async def test_a_depth_5_chain_is_recorded_link_by_link_and_checks_for_its_holder(
        harness: Harness, tenant: str, spans: Any) -> None:
    await _configure(harness, tenant)
    orch, agents = await _agents(harness, tenant, 5)
    links = await _chain(agents)
    e = agents[-1]
    leaf = links[-1]
    assert leaf.record.depth == 5 and len(leaf.chain) == 5
    assert leaf.record.issuer_agent_id == agents[3].agent_id and leaf.record.audience_agent_id == e.agent_id
    assert [ucan.cid(j) for j in leaf.chain] == [link.cid for link in links]

    by_cid = await delegation.check(e, leaf.cid)
    by_jwts = await delegation.check(e, leaf)
    for checked in (by_cid, by_jwts):
        assert checked.depth == 5 and checked.max_depth == 5 and checked.holder == e.did
        assert checked.capabilities == [records("/team/42", "read")]  # E's slice, nothing more
        assert checked.cids == [link.cid for link in links]
        assert checked.agent_ids == [a.agent_id for a in agents]
        assert checked.path[1:] == [a.did for a in agents] and checked.root == links[0].record.issuer_did

    async def traced() -> bool:  # the check's span carries the holder and the depth (DESIGN section 8)
        return any(span.attributes.get("agentid.delegation.depth") == 5 and span.attributes.get("agentid.did") == e.did
                   and span.attributes.get("agentid.decision") == "allow" for span in spans.get_finished_spans())

    await eventually(traced)
    # Granting a recorded link again is idempotent: the same record, no second event.
    again = await agents[3].bus.request(sub.DELEGATION_GRANT, tenant, dlg.GrantDelegation(chain=list(leaf.chain)))
    assert again.cid == leaf.cid
    assert await harness.event_count(sub.DELEGATION_GRANTED.subject(tenant, harness.root)) == 5 + 4
    # A chain is checked only for its holder: D may not check E's, and E's chain is not D's.
    with pytest.raises(Forbidden):
        await agents[3].bus.request(sub.DELEGATION_CHECK, tenant, dlg.CheckChain(leaf_cid=leaf.cid, holder_did=e.did))
    with pytest.raises(DelegationInvalid) as exc:
        await agents[3].bus.request(sub.DELEGATION_CHECK, tenant,
                                    dlg.CheckChain(leaf_cid=leaf.cid, holder_did=agents[3].did))
    assert exc.value.detail == {"reason": "wrong_audience"}
    # Only the agent that signed a link may record it, and only under a link it holds.
    with pytest.raises(Forbidden):
        await agents[0].bus.request(sub.DELEGATION_GRANT, tenant, dlg.GrantDelegation(chain=list(leaf.chain)))
    await _close(orch, agents)


async def test_each_bad_chain_is_refused_with_its_own_reason_and_nothing_is_recorded(
        harness: Harness, tenant: str) -> None:
    await _configure(harness, tenant)
    orch, agents = await _agents(harness, tenant, 6)
    a, b, c, _, e, f = agents
    links = await _chain(agents[:5])
    root, ab = links[0].jwt, links[1].jwt
    recorded = await _links(harness, tenant)
    granted = await harness.event_count(sub.DELEGATION_GRANTED.subject(tenant, harness.root))
    now = int(time.time())

    # Widening at a link: B passes on an action it does not hold.
    await _refused(b, [root, ab, _link(b, c, [records("/team/*", "read", "delete")], ab)], "widened")
    # An expired parent, and a parent not valid yet (A -> B dated outside now; B -> C inside it).
    old = _link(a, b, [HOPS[0]], root, nbf=now - 7200, exp=now - 3600)
    await _refused(b, [root, old, _link(b, c, [HOPS[1]], old, nbf=now - 7000, exp=now - 3700)], "expired")
    later = _link(a, b, [HOPS[0]], root, nbf=now + 3600, exp=now + 7200)
    await _refused(b, [root, later, _link(b, c, [HOPS[1]], later, nbf=now + 3700, exp=now + 7000)], "not_yet_valid")
    # A broken aud/iss link: B signs under A's root, which was delegated to A, not to B.
    await _refused(b, [root, _link(b, c, [HOPS[1]], root)], "broken_link")
    # A link signed by the wrong key: it names B as issuer, but another key signed it.
    forged = resign(_link(b, c, [HOPS[1]], ab), PrivateKey.generate())
    await _refused(b, [root, ab, forged], "bad_signature")
    # Depth 6 with a limit of 5: E passes on to F.
    await _refused(e, [*links[-1].chain, _link(e, f, [HOPS[-1]], links[-1].jwt)], "depth_exceeded")
    # A chain whose root the tenant does not trust.
    outsider = PrivateKey.generate()
    fake_root = _link(outsider, a, [RECORDS], None)
    await _refused(a, [fake_root, _link(a, b, [HOPS[0]], fake_root)], "untrusted_root")
    # A valid link under a parent never granted here.
    unrecorded = _link(a, b, [HOPS[1]], root)
    await _refused(b, [root, unrecorded, _link(b, c, [HOPS[2]], unrecorded)], "not_recorded")
    # A link to a principal that is not an agent of this tenant.
    stranger = PrivateKey.generate().public.did
    parent = ucan.parse(ab)  # the link's window exactly the parent's, so only the audience is wrong
    await _refused(b, [root, ab, ucan.issue(b.key.private, stranger, [from_rar(HOPS[1])], expires=parent.exp,
                                            not_before=parent.nbf, proofs=[ab])], "unknown_agent")
    # Garbage is malformed (as a whole request: an invalid JWT fails the request's own schema).
    await _refused(b, [root, ab, "eyJhbGciOiJub25lIn0.e30.AA"], "malformed")

    assert await _links(harness, tenant) == recorded
    assert await harness.event_count(sub.DELEGATION_GRANTED.subject(tenant, harness.root)) == granted
    await _close(orch, agents)


async def test_the_depth_limit_is_the_tenants(harness: Harness, tenant: str) -> None:
    await _configure(harness, tenant, msgspec.structs.replace(CONFIG, max_depth=2))
    orch, agents = await _agents(harness, tenant, 3)
    links = await _chain(agents[:2])
    assert links[-1].record.depth == 2
    with pytest.raises(DelegationInvalid) as exc:
        await delegation.delegate(agents[1], agents[2].did, [HOPS[1]], 600, parent=links[-1])
    assert exc.value.detail == {"reason": "depth_exceeded"}
    await _close(orch, agents)


# -- revocation ----------------------------------------------------------------------------------------
async def test_revoking_b_to_c_revokes_c_d_and_e_at_once_in_one_event(harness: Harness, tenant: str) -> None:
    await _configure(harness, tenant)
    orch, agents = await _agents(harness, tenant, 6)
    a, b, c, d, e, f = agents
    links = await _chain(agents[:5])
    bc, cd, de = links[2], links[3], links[4]

    started = time.monotonic()
    result = await delegation.revoke(b, bc.cid, reason="C was compromised")  # B issued B -> C
    assert result.cids == [bc.cid, cd.cid, de.cid] and not result.already_revoked
    [msg] = await harness.next_events(sub.DELEGATION_REVOKED.subject(tenant, harness.root), timeout=1.0)
    assert time.monotonic() - started < 1.0
    event = msgspec.json.decode(msg.data, type=dlg.DelegationRevoked)
    assert event.cids == [bc.cid, cd.cid, de.cid] and event.direct == [bc.cid]
    assert event.by == b.did and event.reason == "C was compromised" and event.parts == 1

    for holder, link in ((c, bc), (d, cd), (e, de)):
        for held in (link.cid, link):
            with pytest.raises(DelegationInvalid) as exc:
                await delegation.check(holder, held)
            assert exc.value.detail == {"reason": "revoked"}
    # Nothing can be granted below C any more.
    with pytest.raises(DelegationInvalid) as exc:
        await delegation.delegate(c, f.did, [HOPS[2]], 600, parent=bc)
    assert exc.value.detail == {"reason": "revoked"}
    with pytest.raises(DelegationInvalid) as exc:
        await delegation.delegate(d, f.did, [HOPS[3]], 600, parent=cd)
    assert exc.value.detail == {"reason": "revoked"}
    # A and B are unaffected, and B may still delegate.
    assert (await delegation.check(a, links[0])).depth == 1
    assert (await delegation.check(b, links[1])).depth == 2
    assert (await delegation.delegate(b, f.did, [HOPS[1]], 600, parent=links[1])).record.depth == 3
    # Revoking again changes nothing and says so.
    again = await delegation.revoke(b, bc.cid)
    assert again.already_revoked and again.cids == []
    assert await harness.event_count(sub.DELEGATION_REVOKED.subject(tenant, harness.root)) == 1

    # Outside verifiers fetch the records: the named link with B's signed record, the rest by cause.
    listing = await harness.operator.request(sub.DELEGATION_REVOCATIONS, tenant, dlg.ListRevocations())
    assert [r.cid for r in listing.revocations] == [bc.cid, cd.cid, de.cid]
    assert [r.cause for r in listing.revocations] == [bc.cid] * 3
    named = listing.revocations[0].record
    assert named is not None and ucan.verify_revocation(msgspec.to_builtins(named), {b.did}) == bc.cid
    assert listing.revocations[1].record is None
    page = await harness.operator.request(sub.DELEGATION_REVOCATIONS, tenant, dlg.ListRevocations(limit=2))
    assert page.next_after == page.revocations[-1].seq
    rest = await harness.operator.request(sub.DELEGATION_REVOCATIONS, tenant,
                                          dlg.ListRevocations(after=page.next_after))
    assert [r.cid for r in rest.revocations] == [de.cid] and rest.next_after is None
    await _close(orch, agents)


async def test_an_ancestors_issuer_or_an_operator_may_revoke_and_no_one_else(harness: Harness, tenant: str) -> None:
    await _configure(harness, tenant)
    orch, agents = await _agents(harness, tenant, 4)
    a, _, c, d = agents
    links = await _chain(agents)
    # C -> D is below A -> B: A's record may revoke it; D (its audience, not an issuer) may not.
    with pytest.raises(DelegationInvalid) as exc:
        await delegation.revoke(d, links[3].cid)
    assert exc.value.detail == {"reason": "not_in_chain"}
    outsider = PrivateKey.generate()
    with pytest.raises(DelegationInvalid) as exc:
        await c.bus.request(sub.DELEGATION_REVOKE, tenant, dlg.RevokeDelegation(
            cid=links[3].cid, record=dlg.RevocationRecord(**ucan.revocation(outsider, links[3].cid))))
    assert exc.value.detail == {"reason": "not_in_chain"}
    # A record whose signature is not its issuer's.
    forged = dlg.RevocationRecord(iss=c.did, revoke=links[3].cid,
                                  challenge=b64u_encode(outsider.sign(f"REVOKE:{links[3].cid}".encode())))
    with pytest.raises(DelegationInvalid) as exc:
        await c.bus.request(sub.DELEGATION_REVOKE, tenant, dlg.RevokeDelegation(cid=links[3].cid, record=forged))
    assert exc.value.detail == {"reason": "bad_signature"}
    # A record for another CID than the one named, and no record from a non-operator.
    with pytest.raises(InvalidRequest):
        await c.bus.request(sub.DELEGATION_REVOKE, tenant, dlg.RevokeDelegation(
            cid=links[3].cid, record=dlg.RevocationRecord(**ucan.revocation(c.key.private, links[2].cid))))
    with pytest.raises(Forbidden):
        await c.bus.request(sub.DELEGATION_REVOKE, tenant, dlg.RevokeDelegation(cid=links[3].cid))
    assert await harness.count("SELECT count(*) FROM delegation.revocations WHERE tenant = $1", tenant) == 0

    result = await delegation.revoke(a, links[3].cid)
    assert result.cids == [links[3].cid]
    # An operator revokes A -> B; the tenant authority (the root issuer) signs the record.
    by_operator = await harness.operator.request(sub.DELEGATION_REVOKE, tenant,
                                                 dlg.RevokeDelegation(cid=links[1].cid, reason="operator"))
    assert by_operator.cids == [links[1].cid, links[2].cid]
    listing = await harness.operator.request(sub.DELEGATION_REVOCATIONS, tenant, dlg.ListRevocations())
    record = next(r for r in listing.revocations if r.cid == links[1].cid).record
    authority = await harness.operator.request(sub.DELEGATION_AUTHORITY, tenant, dlg.GetAuthority())
    assert record is not None and record.iss == authority.did
    assert ucan.verify_revocation(msgspec.to_builtins(record), {authority.did}) == links[1].cid
    await _close(orch, agents)


async def test_no_link_is_ever_recorded_below_a_revoked_one(harness: Harness, tenant: str) -> None:
    """Grants racing a revocation: each either commits before it (and is cascaded) or is refused."""
    await _configure(harness, tenant)
    orch, agents = await _agents(harness, tenant, 3)
    a, b, c = agents
    links = await _chain([a, b])
    now = int(time.time())
    grants = [_link(b, c, [records(f"/team/{i}", "read")], links[1].jwt, nbf=now, exp=now + 600) for i in range(12)]

    async def grant(jwt: str) -> str:
        try:
            await b.bus.request(sub.DELEGATION_GRANT, tenant, dlg.GrantDelegation(chain=[*links[1].chain, jwt]))
            return "granted"
        except DelegationInvalid as exc:
            return str((exc.detail or {}).get("reason"))

    revoke = harness.operator.request(sub.DELEGATION_REVOKE, tenant, dlg.RevokeDelegation(cid=links[1].cid))
    results = await asyncio.gather(*(grant(j) for j in grants[:6]), revoke, *(grant(j) for j in grants[6:]))
    outcomes = [r for r in results if isinstance(r, str)]
    assert set(outcomes) <= {"granted", "revoked"}
    escaped = await harness.count(
        "SELECT count(*) FROM delegation.links child JOIN delegation.links parent"
        " ON parent.tenant = child.tenant AND parent.cid = child.parent"
        " WHERE child.tenant = $1 AND child.revoked_at IS NULL AND parent.revoked_at IS NOT NULL", tenant)
    assert escaped == 0
    revocation = next(r for r in results if isinstance(r, dlg.DelegationRevocation))
    assert len(revocation.cids) == 1 + outcomes.count("granted")
    await _close(orch, agents)


async def test_an_agents_exit_revokes_every_link_to_and_from_it(harness: Harness, tenant: str) -> None:
    await _configure(harness, tenant)
    orch, agents = await _agents(harness, tenant, 4)
    a, b, _, d = agents
    links = await _chain(agents)
    b_root = await delegation.root(b)
    await b.exit("done")
    [msg] = await harness.next_events(sub.DELEGATION_REVOKED.subject(tenant, harness.root))
    event = msgspec.json.decode(msg.data, type=dlg.DelegationRevoked)
    # B's root, A -> B, B -> C and C -> D: one event, root-most first.
    assert event.cids == [b_root.cid, *(link.cid for link in links[1:])]
    assert set(event.direct) == {b_root.cid, links[1].cid, links[2].cid}
    assert f"agent {b.agent_id} exited" in event.reason
    with pytest.raises(DelegationInvalid) as exc:
        await delegation.check(d, links[3])
    assert exc.value.detail == {"reason": "revoked"}
    assert (await delegation.check(a, links[0])).depth == 1
    # Records signed by the tenant authority let outside verifiers see it too.
    listing = await harness.operator.request(sub.DELEGATION_REVOCATIONS, tenant, dlg.ListRevocations())
    assert {r.cid for r in listing.revocations if r.record is not None} == set(event.direct)
    await _close(orch, agents)


async def test_a_chain_through_an_inactive_agent_is_refused_even_before_its_links_are_revoked(
        harness: Harness, tenant: str) -> None:
    await _configure(harness, tenant)
    orch, agents = await _agents(harness, tenant, 3)
    links = await _chain(agents)
    # Mark C's directory entry inactive as if its exit reached the directory first.
    await harness.db.execute("UPDATE delegation.senders SET active = false WHERE subject_id = $1",
                             agents[2].agent_id)
    with pytest.raises(DelegationInvalid) as exc:
        await harness.operator.request(sub.DELEGATION_GRANT, tenant, dlg.GrantDelegation(chain=list(links[-1].chain)))
    assert exc.value.detail == {"reason": "agent_inactive"}
    await harness.db.execute("UPDATE delegation.senders SET active = true WHERE subject_id = $1", agents[2].agent_id)
    await _close(orch, agents)


# -- the graph -----------------------------------------------------------------------------------------
async def test_the_graph_command_prints_json_and_dot(harness: Harness, tenant: str,
                                                     capsys: pytest.CaptureFixture[str]) -> None:
    await _configure(harness, tenant)
    orch, agents = await _agents(harness, tenant, 4)
    a, b, c, d = agents
    links = await _chain(agents)
    other = await delegation.delegate(a, d.did, [HOPS[2]], 600, parent=links[0])  # a second branch: A -> D
    await delegation.revoke(b, links[2].cid)

    async def cli(*argv: str) -> str:
        args = build_parser().parse_args(["delegation", *argv, "--tenant", tenant])
        assert await args.fn(args, harness.settings) == 0
        return capsys.readouterr().out

    roots = {(await delegation.root(x)).cid for x in agents}  # every agent has its own root
    graph = json.loads(await cli("graph", "--format", "json"))
    edges = {e["cid"]: e for e in graph["edges"]}
    assert set(edges) == {link.cid for link in links} | {other.cid} | roots
    assert edges[links[2].cid]["status"] == "revoked" and edges[links[3].cid]["status"] == "revoked"
    assert edges[links[1].cid]["status"] == "active"
    kinds = {n["did"]: n for n in graph["nodes"]}
    assert kinds[links[0].record.issuer_did]["kind"] == "authority"
    assert kinds[c.did]["agent_id"] == c.agent_id and kinds[c.did]["kind"] == "agent"

    # Through B: B's own links (its root too), what is above them and below them; not A -> D.
    through_b = json.loads(await cli("graph", "--agent", b.agent_id))
    b_root = (await delegation.root(b)).cid
    assert {e["cid"] for e in through_b["edges"]} == {link.cid for link in links} | {b_root}
    active = json.loads(await cli("graph", "--active-only"))
    assert {e["cid"] for e in active["edges"]} == roots | {links[1].cid, other.cid}

    dot = await cli("graph", "--format", "dot")
    assert dot.startswith("digraph delegation {") and dot.rstrip().endswith("}")
    assert f'"{a.did}" -> "{b.did}"' in dot and f'"{a.did}" -> "{d.did}"' in dot
    assert dot.count("style=dashed") == 2  # the two revoked links

    shown = json.loads(await cli("show", links[1].cid))
    assert shown["chain"] == list(links[1].chain) and shown["depth"] == 2
    assert "revoked 1 link(s)" in await cli("revoke", links[1].cid)
    await _close(orch, agents)


async def test_authority_rotation_keeps_old_roots_valid(harness: Harness, tenant: str) -> None:
    await _configure(harness, tenant)
    orch, agents = await _agents(harness, tenant, 1)
    old = await delegation.root(agents[0])
    before = await harness.operator.request(sub.DELEGATION_AUTHORITY, tenant, dlg.GetAuthority())
    after = await harness.operator.request(sub.DELEGATION_ROTATE_AUTHORITY, tenant, dlg.RotateAuthority())
    assert after.did != before.did and after.trusted_roots == [after.did, before.did]
    assert (await delegation.check(agents[0], old)).root == before.did
    new_orch, [fresh] = await _agents(harness, tenant, 1)
    assert ucan.parse((await delegation.root(fresh)).jwt).iss == after.did
    await _close(orch, agents)
    await _close(new_orch, [fresh])


async def test_a_bad_message_never_stops_the_worker(harness: Harness, tenant: str) -> None:
    await _configure(harness, tenant)
    orch, agents = await _agents(harness, tenant, 1)
    subject = sub.DELEGATION_GRANT.subject(tenant, harness.root)
    code, _ = await harness.raw_request(subject, b"{not json", None)
    assert code is not None

    async def still_answers() -> bool:
        return (await delegation.check(agents[0], await delegation.root(agents[0]))).depth == 1

    await eventually(still_answers)
    await _close(orch, agents)


# -- the demo step -------------------------------------------------------------------------------------
async def test_the_demo_step_reports_a_chain_root_first_and_what_failed_after_revocation(
        harness: Harness, tenant: str) -> None:
    from types import SimpleNamespace

    from agentid.demo_delegation import delegation_step
    from contracts import registration as reg

    orch, _, _ = await harness.new_orchestrator(tenant, reg.Authority(
        tiers=["standard", "high"], purposes=["loan-decisions", "document-research"],
        data_classes=["internal", "confidential"]))
    loan, _ = await harness.new_agent(orch, tier="high", purpose="loan-decisions", data_class="confidential")
    research, _ = await harness.new_agent(orch, purpose="document-research")
    lines: list[str] = []
    ctx = SimpleNamespace(operator=harness.operator, agents=[loan, research], say=lines.append, report={})
    minted: list[str] = []

    async def mint(holder: Agent, link: delegation.Delegation) -> str:
        minted.append(link.cid)
        return "a-token"

    async def after(holder: Agent, link: delegation.Delegation, token: str | None) -> dict[str, Any]:
        return {"token_active": False, "token": token}

    link = await delegation_step(ctx, mint=mint, after_revocation=after)  # type: ignore[arg-type]
    report = ctx.report["delegation"]
    assert report["chain"] == list(link.chain) and len(report["chain"]) == 2
    root, leaf = (ucan.parse(j) for j in report["chain"])
    assert root.iss == report["authority_did"] and root.aud == loan.did
    assert leaf.iss == loan.did and leaf.aud == research.did and leaf.prf == (root.cid,)
    assert report["token"] == "a-token" and minted == [link.cid]
    after_revocation = report["revoked_after"]
    assert after_revocation["revoked_cids"] == [link.cid] and after_revocation["chain_check"] == "revoked"
    assert after_revocation["token_active"] is False
    assert len(lines) == 3
    await _close(orch, [loan, research])
