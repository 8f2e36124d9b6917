"""`Agent`: an agent runtime's session, signed with the agent's own key.

It keeps the agent's X.509-SVID fresh in the background (renewing with a fresh proof of
possession before expiry), mints JWT-SVIDs on request, and ends the agent's life when asked.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

from agentid import dpop
from agentid.deployment import Deployment
from agentid.keys import AgentKey
from contracts import issuance as iss
from contracts import registration as reg
from contracts import subjects as sub
from contracts import tokens as tok
from shared import vc
from shared.bus import Bus, Signer
from shared.bus.inbox import party_inbox
from shared.canonical import canonical_json
from shared.errors import AgentidError, AgentInactive, NotFound

log = logging.getLogger(__name__)


class Agent:
    def __init__(self, bus: Bus, key: AgentKey, identity: reg.AgentIdentity) -> None:
        self.bus = bus
        self.key = key
        self.identity = identity
        self.svid: reg.X509Svid | None = identity.svid
        self.renewed = asyncio.Event()  # set after every background renewal
        self._tokens: dict[bytes, tok.IssuedToken] = {}
        self._renewal: asyncio.Task[None] | None = None

    @classmethod
    async def connect(cls, identity: reg.AgentIdentity, key: AgentKey, *, deployment: Deployment | None = None,
                      renew: bool = True, renew_margin_s: float | None = None) -> Agent:
        """Connect as `identity` (returned by spawn) with its key. With `renew`, the SVID is renewed
        in the background `renew_margin_s` before it expires (default: a third of its lifetime)."""
        if key.thumbprint != identity.key_id:
            raise ValueError("this key is not the agent's key")
        deployment = deployment or Deployment.load()
        bus = await Bus.connect(deployment.nats_url, name=f"agent-{identity.agent_id}",
                                signer=Signer(identity.spiffe_id, key.private), registry=deployment.services(),
                                root=deployment.nats_prefix, nkey_seed=deployment.nats_nkey_seed,
                                inbox_prefix=party_inbox(deployment.nats_prefix, identity.tenant, "agent",
                                                         identity.agent_id))
        agent = cls(bus, key, identity)
        if renew:
            agent.start_renewal(renew_margin_s)
        return agent

    @property
    def agent_id(self) -> str:
        return self.identity.agent_id

    @property
    def spiffe_id(self) -> str:
        return self.identity.spiffe_id

    @property
    def did(self) -> str:
        return self.identity.did

    @property
    def tenant(self) -> str:
        return self.identity.tenant

    async def __aenter__(self) -> Agent:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def close(self) -> None:
        if self._renewal is not None:
            self._renewal.cancel()
            try:
                await self._renewal
            except asyncio.CancelledError:
                pass
        await self.bus.drain()

    # -- workload identity ---------------------------------------------------------------------
    async def renew_svid(self) -> reg.X509Svid:
        """A fresh X.509-SVID, against a fresh proof made with this agent's key."""
        proof = self.key.renew_proof(agent_id=self.agent_id, tenant=self.tenant)
        self.svid = await self.bus.request(sub.RENEW_SVID, self.tenant, reg.RenewSvid(agent_id=self.agent_id, proof=proof))
        return self.svid

    def start_renewal(self, margin_s: float | None = None) -> None:
        if self._renewal is None:
            self._renewal = asyncio.create_task(self._renew_forever(margin_s))

    async def _renew_forever(self, margin_s: float | None) -> None:
        retry = 1.0
        while True:
            svid = self.svid
            if svid is not None:
                lifetime = (svid.not_after - svid.not_before).total_seconds()
                margin = lifetime / 3 if margin_s is None else margin_s
                due = (svid.not_after - datetime.now(UTC)).total_seconds() - margin
                if due > 0:
                    await asyncio.sleep(due)
            try:
                await self.renew_svid()
                retry = 1.0
                self.renewed.set()
            except AgentInactive:
                log.info("agent %s is no longer active: renewal stops", self.agent_id)
                return
            except AgentidError as exc:
                log.warning("SVID renewal failed (%s); retrying in %.0fs", exc.code.value, retry)
                await asyncio.sleep(retry)
                retry = min(retry * 2, 60.0)

    async def jwt_svid(self, audience: str | list[str], *, lifetime_s: int = 300) -> str:
        """A JWT-SVID for `audience` (required), at most 5 minutes."""
        auds = [audience] if isinstance(audience, str) else list(audience)
        svid = await self.bus.request(sub.ISSUE_JWT_SVID, self.tenant,
                                      reg.IssueJwtSvid(audience=auds, lifetime_s=lifetime_s))
        return svid.token

    async def credential(self, *, timeout: float = 10.0) -> iss.CredentialRecord:
        """This agent's credential (vc+jwt). Issuance follows registration by an event; if it has not
        happened yet, wait for the `credential.issued` event (up to `timeout`)."""
        issued = asyncio.Event()

        async def on_issued(msg: Any) -> None:
            issued.set()

        watch = await self.bus.nc.subscribe(sub.CREDENTIAL_ISSUED.subject(self.tenant, self.bus.root), cb=on_issued)
        try:
            loop = asyncio.get_running_loop()
            deadline = loop.time() + timeout
            while True:
                try:
                    return await self.bus.request(sub.GET_CREDENTIAL, self.tenant, iss.GetCredential(agent_id=self.agent_id))
                except NotFound:
                    issued.clear()
                    remaining = deadline - loop.time()
                    if remaining <= 0:
                        raise
                    try:
                        await asyncio.wait_for(issued.wait(), remaining)
                    except asyncio.TimeoutError:
                        pass
        finally:
            await watch.unsubscribe()

    async def present(self, *, audience: str, nonce: str, credentials: list[str] | None = None) -> str:
        """A presentation of this agent's credential to one verifier, bound to its nonce."""
        vcs = credentials or [(await self.credential()).vc_jwt]
        return vc.presentation(self.key.private, vcs, audience=audience, nonce=nonce)

    async def token(self, authorization_details: Sequence[Mapping[str, Any]], audience: str, *,
                    lifetime_s: int | None = None, delegation: Sequence[str] | None = None,
                    delegation_cid: str | None = None, x509_svid_pem: str | None = None,
                    refresh_margin_s: float = 30.0) -> tok.IssuedToken:
        """An access token for exactly these authorization details and this audience, bound to this
        agent's key (DPoP), or to its SVID with `x509_svid_pem`. Reused until `refresh_margin_s`
        before it expires."""
        key = canonical_json([list(authorization_details), audience, lifetime_s, list(delegation or ()), delegation_cid,
                              x509_svid_pem])
        cached = self._tokens.get(key)
        if cached is not None and (cached.expires_at - datetime.now(UTC)).total_seconds() > refresh_margin_s:
            return cached
        issued = await self.bus.request(sub.TOKEN_ISSUE, self.tenant, tok.IssueToken(
            authorization_details=[dict(d) for d in authorization_details], audience=audience, lifetime_s=lifetime_s,
            delegation=list(delegation) if delegation else None, delegation_cid=delegation_cid,
            x509_svid_pem=x509_svid_pem))
        if len(self._tokens) > 256:
            self._tokens.clear()
        self._tokens[key] = issued
        return issued

    # -- delegation -----------------------------------------------------------------------------
    async def delegate(self, to: str, capabilities: Sequence[Any], expires: Any, *, parent: str | None = None) -> Any:
        """Hand a narrower slice of what this agent holds to another agent (its DID): a UCAN signed
        with this agent's own key, proved by its parent chain, recorded by the delegation worker."""
        from agentid import delegation

        return await delegation.delegate(self, to, capabilities, expires, parent=parent)

    async def delegation_root(self) -> Any:
        """The root UCAN the tenant authority issued this agent (its base capabilities)."""
        from agentid import delegation

        return await delegation.root(self)

    async def revoke_delegation(self, cid: str) -> Any:
        from agentid import delegation

        return await delegation.revoke(self, cid)

    async def sign(self, content: bytes, media_type: str, *, purpose: str, name: str = "artifact",
                   on_behalf_of: str | None = None, wait_logged: bool = True) -> Any:
        """Sign an artifact with this agent's key; the signature is logged, and the returned bundle
        (with the log's inclusion proof) verifies offline with `agentid.artifacts.verify`."""
        from agentid import artifacts

        return await artifacts.sign(self, content, media_type, name=name, purpose=purpose,
                                    on_behalf_of=on_behalf_of, wait_logged=wait_logged)

    def dpop_proof(self, method: str, url: str, token: str | None = None, *, nonce: str | None = None) -> str:
        """A DPoP proof (RFC 9449) made with this agent's key for one HTTP request."""
        return dpop.dpop_proof(self.key, method, url, token, nonce=nonce)

    def http_auth(self, authorization_details: Sequence[Mapping[str, Any]], audience: str) -> dpop.DpopAuth:
        """An httpx auth that sends `Authorization: DPoP <token>` and a fresh `DPoP` proof per request,
        with a token for these details (fetched and renewed as needed)."""
        async def current() -> str:
            return (await self.token(authorization_details, audience)).access_token
        return dpop.DpopAuth(self.key, current)

    async def hand_on(self, token: str, sub_agent_id: str, authorization_details: Sequence[Mapping[str, Any]],
                      audience: str, *, lifetime_s: int | None = None) -> tok.IssuedToken:
        """Hand work for the same user to a sub-agent: exchange the on-behalf-of token this agent
        holds for one bound to the sub-agent's key, with the `act` chain extended, never widened."""
        return await self.bus.request(sub.TOKEN_EXCHANGE, self.tenant, tok.ExchangeToken(
            subject_token=token, subject_token_type="urn:ietf:params:oauth:token-type:access_token",
            actor_agent_id=sub_agent_id, audience=audience,
            authorization_details=[dict(d) for d in authorization_details], lifetime_s=lifetime_s))

    async def bundle(self) -> reg.TrustBundle:
        return await self.bus.request(sub.GET_BUNDLE, self.tenant, reg.GetBundle())

    async def exit(self, reason: str = "exited") -> reg.AgentIdentity:
        """End this agent's life (and its sub-agents')."""
        self.identity = await self.bus.request(sub.EXIT_AGENT, self.tenant,
                                               reg.ExitAgent(agent_id=self.agent_id, reason=reason))
        return self.identity
