"""One valid example per route, and what emits each topic: the lists the coverage rule checks.

The corpus of refused variants is derived from a route's contract by itself (tests/hostile/corpus.py),
so a new route is attacked by default; what cannot be derived is one request the worker accepts.
It proves the worker still works after the attack, and it is what the replayed, re-signed and
cross-tenant variants are made of. So a route without an entry in `EXAMPLES` fails the suite until
someone writes one (tests/hostile/test_coverage.py).

A builder may write (spawn a fresh agent to exit, grant a link to revoke): it runs before the
"nothing written" snapshot is taken. Each call returns a fresh request, never sent before.
"""

from __future__ import annotations

import secrets
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from agentid.keys import AgentKey
from contracts import artifacts as art
from contracts import attestation as att
from contracts import audit as au
from contracts import delegation as dlg
from contracts import gateway as gw
from contracts import issuance as iss
from contracts import registration as reg
from contracts import subjects as sub
from contracts import tokens as tok
from shared import artifacts, jose, ucan
from shared.capabilities import from_rar
from shared.keys import PrivateKey
from shared.vc import iso
from tests.attestation_factory import GOOD_PCRS, nitro_document
from tests.helpers import TOKEN_CONFIG, eventually, ledger
from tests.hostile.world import AUDIENCE, DELEGATION, POLICY, REFERENCE, USER_AUDIENCE, Party, World


@dataclass(frozen=True)
class Example:
    sender: Party
    tenant: str
    body: Any
    expect: str | None = None  # an error code the example legitimately gets (None: a result)


Builder = Callable[[World], Awaitable[Example]]
EXAMPLES: dict[str, Builder] = {}


def example(route: sub.Route[Any, Any]) -> Callable[[Builder], Builder]:
    def register(builder: Builder) -> Builder:
        assert route.name not in EXAMPLES, f"two examples for {route.name}"
        EXAMPLES[route.name] = builder
        return builder
    return register


# -- registration ----------------------------------------------------------------------------------
@example(sub.CREATE_TENANT)
async def _create_tenant(w: World) -> Example:
    return Example(w.operator(), f"t{secrets.token_hex(5)}", reg.CreateTenant())


@example(sub.ADD_ORCHESTRATOR)
async def _add_orchestrator(w: World) -> Example:
    return Example(w.operator(), w.tenant, reg.AddOrchestrator(
        name=f"orch-{secrets.token_hex(3)}", public_jwk=PrivateKey.generate().public.jwk()))


@example(sub.SPAWN)
async def _spawn(w: World) -> Example:
    return Example(w.orch, w.tenant, w.spawn_request(w.orch, w.tenant, AgentKey.generate()))


@example(sub.GET_AGENT)
async def _get_agent(w: World) -> Example:
    return Example(w.orch, w.tenant, reg.GetAgent(agent_id=w.agent.agent_id))


@example(sub.EXIT_AGENT)
async def _exit_agent(w: World) -> Example:
    return Example(w.orch, w.tenant, reg.ExitAgent(agent_id=(await w.spawn()).agent_id))


@example(sub.REVOKE_AGENT)
async def _revoke_agent(w: World) -> Example:
    return Example(w.orch, w.tenant, reg.RevokeAgent(agent_id=(await w.spawn()).agent_id))


@example(sub.LIST_AGENTS)
async def _list_agents(w: World) -> Example:
    return Example(w.orch, w.tenant, reg.ListAgents(limit=5))


@example(sub.RENEW_SVID)
async def _renew(w: World) -> Example:
    proof = w.agent.key.renew_proof(agent_id=w.agent.agent_id, tenant=w.tenant)
    return Example(w.agent.party, w.tenant, reg.RenewSvid(agent_id=w.agent.agent_id, proof=proof))


@example(sub.ISSUE_JWT_SVID)
async def _jwt_svid(w: World) -> Example:
    return Example(w.agent.party, w.tenant, reg.IssueJwtSvid(audience=["https://tools.hostile.example"]))


@example(sub.GET_BUNDLE)
async def _bundle(w: World) -> Example:
    return Example(w.agent.party, w.tenant, reg.GetBundle())


@example(sub.ROTATE_AUTHORITIES)
async def _rotate_authorities(w: World) -> Example:
    return Example(w.operator(), w.tenant, reg.RotateAuthorities())


@example(sub.LOOKUP_SENDER)
async def _lookup_sender(w: World) -> Example:
    return Example(w.service("token"), w.tenant, reg.LookupSender(sender=w.agent.party.sender,
                                                                  key_id=w.agent.key.thumbprint))


@example(sub.REVOKE_ORCHESTRATOR)
async def _revoke_orchestrator(w: World) -> Example:
    _, record = await w.orchestrator(w.tenant)
    return Example(w.operator(), w.tenant, reg.RevokeOrchestrator(orchestrator_id=record.orchestrator_id))


# -- issuance ----------------------------------------------------------------------------------------
@example(sub.GET_CREDENTIAL)
async def _get_credential(w: World) -> Example:
    return Example(w.agent.party, w.tenant, iss.GetCredential(agent_id=w.agent.agent_id))


@example(sub.GET_STATUS_LIST)
async def _status_list(w: World) -> Example:
    return Example(w.agent.party, w.tenant, iss.GetStatusList())


@example(sub.GET_ISSUER)
async def _issuer(w: World) -> Example:
    return Example(w.agent.party, w.tenant, iss.GetIssuer())


@example(sub.REVOKE_CREDENTIAL)
async def _revoke_credential(w: World) -> Example:
    agent = await w.spawn()
    await w.credential(agent)
    return Example(w.operator(), w.tenant, iss.RevokeCredential(agent_id=agent.agent_id))


@example(sub.ROTATE_ISSUER_KEY)
async def _rotate_issuer_key(w: World) -> Example:
    return Example(w.operator(), w.tenant, iss.RotateIssuerKey())


@example(sub.RECORD_ARTIFACT)
async def _record_artifact(w: World) -> Example:
    a = w.agent
    credential = await w.credential(a)
    predicate = {"agent": {"agentId": a.agent_id, "spiffeId": a.party.sender, "did": a.identity.did},
                 "credentialId": credential.credential_id, "onBehalfOf": None, "act": None, "delegation": None,
                 "purpose": "hostile suite", "mediaType": "text/plain", "signedAt": iso(datetime.now(UTC))}
    content = secrets.token_bytes(16)
    stmt = artifacts.statement(name="report.txt", digest_hex=artifacts.sha256_hex(content), predicate=predicate)
    return Example(a.party, w.tenant, art.RecordArtifact(envelope=artifacts.envelope(a.key.private, stmt)))


# -- attestation -------------------------------------------------------------------------------------
@example(sub.ATTESTATION_CHALLENGE)
async def _challenge(w: World) -> Example:
    return Example(w.agent.party, w.tenant, att.RequestChallenge())


@example(sub.ATTESTATION_VERIFY)
async def _verify(w: World) -> Example:
    ch = await w.call(w.agent.party, sub.ATTESTATION_CHALLENGE, att.RequestChallenge())
    evidence = nitro_document(timestamp=datetime.now(UTC), pcrs=GOOD_PCRS, nonce=bytes.fromhex(ch.nonce),
                              user_data=bytes.fromhex(ch.binding))
    return Example(w.agent.party, w.tenant, att.VerifyEvidence(kind="aws-nitro", evidence=evidence,
                                                               challenge_id=ch.challenge_id))


@example(sub.ATTESTATION_POSTURE)
async def _posture(w: World) -> Example:
    return Example(w.agent.party, w.tenant, att.GetPosture(agent_id=w.agent.agent_id))


@example(sub.SET_REFERENCE_VALUES)
async def _set_reference(w: World) -> Example:
    return Example(w.operator(), w.tenant, att.SetReferenceValues(document=REFERENCE))


@example(sub.LIST_REFERENCE_VALUES)
async def _list_reference(w: World) -> Example:
    return Example(w.operator(), w.tenant, att.ListReferenceValues())


# -- audit -------------------------------------------------------------------------------------------
async def _covered_entry(w: World) -> tuple[int, list[au.SignedCheckpoint]]:
    """An entry about the world's agent under a signed checkpoint, and the tenant's checkpoints."""
    found: list[tuple[int, list[au.SignedCheckpoint]]] = []

    async def covered() -> bool:
        page = await w.call(w.agent.party, sub.AUDIT_QUERY, au.QueryLog(agent_id=w.agent.agent_id, limit=1))
        listing = await w.call(w.agent.party, sub.AUDIT_CHECKPOINTS, au.ListCheckpoints())
        if not page.entries or not listing.checkpoints or listing.checkpoints[-1].size <= page.entries[0].seq:
            return False
        found.append((page.entries[0].seq, listing.checkpoints))
        return True

    await eventually(covered, timeout=20.0)
    return found[-1]


@example(sub.AUDIT_CHECKPOINT)
async def _checkpoint(w: World) -> Example:
    await _covered_entry(w)
    return Example(w.agent.party, w.tenant, au.GetCheckpoint())


@example(sub.AUDIT_CHECKPOINTS)
async def _checkpoints(w: World) -> Example:
    return Example(w.agent.party, w.tenant, au.ListCheckpoints(limit=10))


@example(sub.AUDIT_PROOF)
async def _proof(w: World) -> Example:
    seq, _ = await _covered_entry(w)
    return Example(w.agent.party, w.tenant, au.GetInclusionProof(seq=seq))


@example(sub.AUDIT_CONSISTENCY)
async def _consistency(w: World) -> Example:
    _, checkpoints = await _covered_entry(w)
    return Example(w.agent.party, w.tenant, au.GetConsistencyProof(first=checkpoints[0].size))


@example(sub.AUDIT_QUERY)
async def _query(w: World) -> Example:
    return Example(w.agent.party, w.tenant, au.QueryLog(agent_id=w.agent.agent_id, event="agent.registered",
                                                        limit=5))


@example(sub.AUDIT_ROTATE_KEY)
async def _rotate_log_key(w: World) -> Example:
    await _covered_entry(w)  # the tenant's log exists
    return Example(w.operator(), w.tenant, au.RotateLogKey())


# -- tokens ------------------------------------------------------------------------------------------
@example(sub.TOKEN_ISSUE)
async def _issue(w: World) -> Example:
    return Example(w.agent.party, w.tenant, tok.IssueToken(authorization_details=[ledger()], audience=AUDIENCE))


@example(sub.TOKEN_JWKS)
async def _jwks(w: World) -> Example:
    return Example(w.agent.party, w.tenant, tok.GetJwks())


@example(sub.TOKEN_INTROSPECT)
async def _introspect(w: World) -> Example:
    return Example(w.orch, w.tenant, tok.Introspect(token=(await w.token()).access_token))


@example(sub.TOKEN_REVOKE)
async def _revoke_token(w: World) -> Example:
    return Example(w.agent.party, w.tenant, tok.RevokeToken(jti=(await w.token()).jti))


@example(sub.TOKEN_ROTATE_KEY)
async def _rotate_signing_key(w: World) -> Example:
    return Example(w.operator(), w.tenant, tok.RotateSigningKey())


@example(sub.POLICY_SET)
async def _policy_set(w: World) -> Example:
    return Example(w.operator(), w.tenant, tok.SetPolicy(policies=POLICY))


@example(sub.POLICY_GET)
async def _policy_get(w: World) -> Example:
    return Example(w.operator(), w.tenant, tok.GetPolicy())


@example(sub.POLICY_TEST)
async def _policy_test(w: World) -> Example:
    return Example(w.operator(), w.tenant, tok.TestPolicy(
        agent={"id": w.agent.agent_id, "tier": "standard", "purpose": "testing", "data_class": "internal"},
        authorization_details=[ledger()], audience=AUDIENCE))


@example(sub.TOKEN_CONFIG_SET)
async def _config_set(w: World) -> Example:
    return Example(w.operator(), w.tenant, tok.SetTokenConfig(config=TOKEN_CONFIG))


@example(sub.TOKEN_CONFIG_GET)
async def _config_get(w: World) -> Example:
    return Example(w.agent.party, w.tenant, tok.GetTokenConfig())


@example(sub.TOKEN_EXCHANGE)
async def _exchange(w: World) -> Example:
    user_token = w.user_idp.mint("alice", audience=USER_AUDIENCE, scopes=["ledger.read"])
    return Example(w.orch, w.tenant, tok.ExchangeToken(
        subject_token=user_token, subject_token_type="urn:ietf:params:oauth:token-type:id_token",
        actor_agent_id=w.agent.agent_id, audience=AUDIENCE, authorization_details=[ledger()]))


def _unused_idp() -> tok.IdentityProvider:
    """A provider to add and remove: adding one fetches nothing, so it needs no server."""
    issuer = f"https://idp-{secrets.token_hex(4)}.hostile.example"
    return tok.IdentityProvider(issuer=issuer, jwks_uri=f"{issuer}/jwks", audiences=[USER_AUDIENCE])


@example(sub.IDP_ADD)
async def _idp_add(w: World) -> Example:
    return Example(w.operator(), w.tenant, tok.AddIdp(idp=_unused_idp()))


@example(sub.IDP_LIST)
async def _idp_list(w: World) -> Example:
    return Example(w.operator(), w.tenant, tok.ListIdps())


@example(sub.IDP_REMOVE)
async def _idp_remove(w: World) -> Example:
    provider = _unused_idp()
    await w.call(w.operator(), sub.IDP_ADD, tok.AddIdp(idp=provider))
    return Example(w.operator(), w.tenant, tok.RemoveIdp(issuer=provider.issuer))


# -- the HTTP edge, as the gateway relays it ----------------------------------------------------------
def client_assertion(w: World) -> str:
    """RFC 7523 private_key_jwt of the world's agent, for the token endpoint."""
    now = int(time.time())
    me = w.agent.party.sender
    return jose.sign({"iss": me, "sub": me, "aud": gw.token_endpoint(w.issuer()), "iat": now, "exp": now + 60,
                      "jti": secrets.token_urlsafe(16)}, w.agent.key.private, typ=None)


@example(sub.TOKEN_GRANT)
async def _grant(w: World) -> Example:
    return Example(w.service(gw.GATEWAY_SERVICE), w.tenant, gw.TokenGrant(
        grant_type="client_credentials", client_assertion=client_assertion(w), dpop_jkt=w.agent.key.thumbprint,
        authorization_details=[ledger()], audience=AUDIENCE))


def _rs_call(w: World, token: str) -> gw.ResourceServerCall:
    rs = w.resource_server
    return gw.ResourceServerCall(client_id=rs.client_id, client_secret=rs.client_secret, token=token)


@example(sub.TOKEN_RS_INTROSPECT)
async def _rs_introspect(w: World) -> Example:
    return Example(w.service(gw.GATEWAY_SERVICE), w.tenant, _rs_call(w, (await w.token()).access_token))


@example(sub.TOKEN_RS_REVOKE)
async def _rs_revoke(w: World) -> Example:
    return Example(w.service(gw.GATEWAY_SERVICE), w.tenant, _rs_call(w, (await w.token()).access_token))


@example(sub.RS_ADD)
async def _rs_add(w: World) -> Example:
    return Example(w.operator(), w.tenant, gw.AddResourceServer(name=f"rs-{secrets.token_hex(3)}",
                                                                audiences=[AUDIENCE]))


@example(sub.RS_LIST)
async def _rs_list(w: World) -> Example:
    return Example(w.operator(), w.tenant, gw.ListResourceServers())


@example(sub.RS_REMOVE)
async def _rs_remove(w: World) -> Example:
    added = await w.call(w.operator(), sub.RS_ADD, gw.AddResourceServer(name="to-remove", audiences=[AUDIENCE]))
    return Example(w.operator(), w.tenant, gw.RemoveResourceServer(client_id=added.client_id))


# -- delegation --------------------------------------------------------------------------------------
RECORDS_READ = {"type": "records", "locations": ["https://api.hostile.example/records/*"], "actions": ["read"]}


def link_to_peer(w: World) -> list[str]:
    """A fresh chain: the world agent's root, then a new link from it to its peer (narrower)."""
    parent = w.root_link.chain[-1]
    proof = ucan.parse(parent)
    caps = [from_rar({**RECORDS_READ, "locations": [f"https://api.hostile.example/records/{secrets.token_hex(4)}"]})]
    jwt = ucan.issue(w.agent.key.private, w.peer.identity.did, caps, expires=proof.exp or int(time.time()) + 600,
                     not_before=proof.nbf, proofs=[parent], nonce=secrets.token_hex(8))
    return [*w.root_link.chain, jwt]



@example(sub.DELEGATION_GRANT)
async def _grant_delegation(w: World) -> Example:
    return Example(w.agent.party, w.tenant, dlg.GrantDelegation(chain=link_to_peer(w)))


@example(sub.DELEGATION_CHECK)
async def _check(w: World) -> Example:
    return Example(w.agent.party, w.tenant, dlg.CheckChain(chain=list(w.root_link.chain), holder_did=w.agent.identity.did))


@example(sub.DELEGATION_CHAIN)
async def _chain(w: World) -> Example:
    return Example(w.agent.party, w.tenant, dlg.GetChain(cid=w.root_link.cid))


@example(sub.DELEGATION_ROOT)
async def _root(w: World) -> Example:
    return Example(w.agent.party, w.tenant, dlg.GetRoot())


@example(sub.DELEGATION_REVOKE)
async def _revoke_delegation(w: World) -> Example:
    link = await w.call(w.agent.party, sub.DELEGATION_GRANT, dlg.GrantDelegation(chain=link_to_peer(w)))
    record = dlg.RevocationRecord(**ucan.revocation(w.agent.key.private, link.cid))
    return Example(w.agent.party, w.tenant, dlg.RevokeDelegation(cid=link.cid, record=record))


@example(sub.DELEGATION_REVOCATIONS)
async def _revocations(w: World) -> Example:
    return Example(w.agent.party, w.tenant, dlg.ListRevocations())


@example(sub.DELEGATION_GRAPH)
async def _graph(w: World) -> Example:
    return Example(w.operator(), w.tenant, dlg.GetGraph(limit=50))


@example(sub.DELEGATION_CONFIG_SET)
async def _delegation_config_set(w: World) -> Example:
    return Example(w.operator(), w.tenant, dlg.SetDelegationConfig(config=DELEGATION))


@example(sub.DELEGATION_CONFIG_GET)
async def _delegation_config_get(w: World) -> Example:
    return Example(w.operator(), w.tenant, dlg.GetDelegationConfig())


@example(sub.DELEGATION_AUTHORITY)
async def _authority(w: World) -> Example:
    return Example(w.agent.party, w.tenant, dlg.GetAuthority())


@example(sub.DELEGATION_ROTATE_AUTHORITY)
async def _rotate_authority(w: World) -> Example:
    return Example(w.operator(), w.tenant, dlg.RotateAuthority())


# -- what a refusal may write ----------------------------------------------------------------------
@dataclass(frozen=True)
class Allowed:
    """Writes a refused request may cause: decisions recorded as events (and the tables their
    recording and consumers touch), never the refused input itself."""

    events: frozenset[str]
    tables: frozenset[str]
    why: str

    def covers(self, change: str) -> bool:
        """`change`: a table (`schema.table`) or an event subject (`<root>.v1.<tenant>.evt.<noun>.<verb>`)."""
        if ".evt." in change:
            return ".".join(change.split(".")[-2:]) in self.events
        # The audit logs every event, so an allowed event is also an allowed audit entry.
        return change in self.tables or (change.startswith("audit.") and bool(self.events))


ALLOWED_WRITES: dict[str, Allowed] = {
    sub.TOKEN_ISSUE.name: Allowed(
        frozenset({"token.denied"}), frozenset(),
        "a request whose DPoP proof or certificate does not hold is a denial, and denials are audited"),
    sub.TOKEN_EXCHANGE.name: Allowed(
        frozenset({"token.denied"}), frozenset(),
        "an exchange refused for its subject or actor token is a denial, and denials are audited"),
    sub.ATTESTATION_VERIFY.name: Allowed(
        frozenset({"attestation.failed", "credential.revoked", "credential.issued"}),
        frozenset({"attestation.results", "attestation.challenges", "attestation.postures", "attestation.inbox",
                   "issuance.credentials", "issuance.status_lists", "issuance.inbox",
                   "token.postures", "token.inbox", "token.agent_credentials"}),
        "an appraisal that fails is a result: it is stored and announced (attestation.failed), it spends "
        "the single-use challenge, and since the agent's own evidence failed, its posture ends; issuance "
        "then replaces its attested credential and the token worker drops the posture"),
}
