"""Delegation through to the resource server: a depth-5 chain (tenant -> A -> B -> C -> D -> E)
yields a token for E within E's slice only; revoking B -> C makes C's, D's and E's tokens fail at
the verifier within a second and their further grants fail, while A and B keep working."""

from __future__ import annotations

import asyncio
from typing import Any

import jwt
import nats
import pytest

from agentid import delegation
from agentid.jwks import BusJwks
from agentid.revocation import RevocationFeed
from agentid.verifier import Verifier
from contracts import subjects as sub
from contracts import tokens as tok
from shared.dpop import make_proof
from shared.errors import DelegationInvalid, PolicyDenied
from shared.oauth_errors import InvalidTokenError
from tests.helpers import Harness
from tests.integration.test_delegation import HOPS, _agents, _chain, _configure, records

pytestmark = pytest.mark.e2e

API = "https://api.example.com"
RECORDS_TYPE = {"type": "object", "required": ["type", "locations", "actions"]}
POLICY = 'permit(principal is Agent, action == Action::"read", resource) when { context.delegationDepth <= 5 };'


async def _rules(harness: Harness, tenant: str) -> None:
    await harness.token_rules(tenant, policy=POLICY, config=tok.TokenConfig(
        detail_types={"records": RECORDS_TYPE}, audiences=[API]))
    await _configure(harness, tenant)


async def test_depth_five_chain_to_the_verifier_and_revocation_below_b(harness: Harness, tenant: str) -> None:
    await _rules(harness, tenant)
    orch, agents = await _agents(harness, tenant, 5)
    a, b, c, d, e = agents
    links = await _chain(agents)
    assert [link.record.depth for link in links] == [1, 2, 3, 4, 5]
    leaf = HOPS[-1]  # E holds read on /team/42 only

    # E gets a token for what its leaf grants, with the chain's CIDs and depth in it.
    issued = await e.token([leaf], API, delegation=links[-1].chain)
    claims = jwt.decode(issued.access_token, options={"verify_signature": False})
    assert claims["delegation"]["depth"] == 5 and claims["delegation"]["chain"] == [link.cid for link in links]
    assert (await e.token([leaf], API, delegation_cid=links[-1].cid)).access_token  # or by the leaf's CID
    with pytest.raises(DelegationInvalid) as err:  # anything wider than the leaf is refused
        await e.token([records("/team/43", "read")], API, delegation=links[-1].chain)
    assert err.value.detail == {"reason": "widened"}
    with pytest.raises(DelegationInvalid):  # a chain E does not hold
        await d.token([leaf], API, delegation=links[-1].chain)

    rs = await nats.connect(harness.settings.nats_url or "", name="records-api")
    issuer = f"{harness.stack.settings.base_url()}/tenants/{tenant}"
    verifier = Verifier(issuer=issuer, audience=API, jwks=BusJwks(harness.operator, tenant),
                        revocations=RevocationFeed.from_deployment(rs, harness.deployment, tenant))
    await verifier.start()

    async def verify(agent: Any, token: str, resource: str) -> Any:
        url = f"{API}/records{resource}"
        proof = make_proof(agent.key.private, "GET", url, access_token=token)
        return await verifier.verify("GET", url, f"DPoP {token}", proof, action="read", resource=url)

    tokens = {}
    for holder, link, path in ((b, links[1], "/team/7"), (c, links[2], "/team/7"), (d, links[3], "/team/42"),
                               (e, links[4], "/team/42")):
        detail = records(path, "read")
        tokens[holder.agent_id] = ((await holder.token([detail], API, delegation=link.chain)).access_token, path)
        await verify(holder, *tokens[holder.agent_id])
    a_token = (await a.token([records("/team/1", "read")], API, delegation=links[0].chain)).access_token

    # B revokes its link to C: one event, C's, D's and E's tokens refused within a second.
    revocation = await delegation.revoke(b, links[2].cid)
    assert set(revocation.cids) == {links[2].cid, links[3].cid, links[4].cid}
    feed = verifier.revocations
    assert feed is not None
    await asyncio.wait_for(feed.wait_for(lambda: all(feed.revoked_cid(cid) for cid in revocation.cids)), 1.0)
    for holder in (c, d, e):
        with pytest.raises(InvalidTokenError):
            await verify(holder, *tokens[holder.agent_id])
    await verify(b, *tokens[b.agent_id])  # A and B unaffected
    await verify(a, a_token, "/team/1")

    # Further grants below C fail, as do new tokens from the revoked chain; introspection agrees.
    with pytest.raises(DelegationInvalid):
        await delegation.delegate(d, e.did, [HOPS[-1]], 600, parent=links[3])
    with pytest.raises((DelegationInvalid, PolicyDenied)):
        e._tokens.clear()
        await e.token([leaf], API, delegation=links[-1].chain)

    async def inactive(token: str) -> bool:
        info = await harness.operator.request(sub.TOKEN_INTROSPECT, tenant, tok.Introspect(token=token))
        return not info.active

    from tests.helpers import eventually

    await eventually(lambda: inactive(tokens[e.agent_id][0]))
    assert not await inactive(tokens[b.agent_id][0])
    await verifier.aclose()
    await rs.drain()
    for agent in agents:
        await agent.close()
    await orch.close()
