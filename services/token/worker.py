"""The token worker: sender-constrained access tokens, policy on every decision, introspection.

`token.issue` checks, in order: the agent is known and active, its signature, the timestamp window
(the runtime does these three for every request), the authorization details (well-formed, of a
registered type, fitting its schema), the audience, the lifetime (capped at the tenant's maximum,
300 s at most), any delegation chain, the data class ceiling, the attestation the tier requires,
then Cedar policy. Every decision, allow or deny, is recorded as an event with its reasons.

Consistency: this worker learns that an agent exited or was revoked from the `agent.exited` event,
milliseconds after registration commits it. Verifiers refuse every token of an exited agent,
whenever it was issued, so a token minted in that window is refused too.
"""

from __future__ import annotations

import asyncio
import hashlib
import time
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import msgspec
from cryptography import x509
from cryptography.hazmat.primitives import serialization

from contracts import attestation as att
from contracts import delegation as dlg
from contracts import issuance as iss
from contracts import registration as reg
from contracts import subjects as sub
from contracts import tokens as tok
from services.token import grants, store
from services.token.exchange import act_depth, authorise_caller, extend_act, require_actor, verify_actor_token
from services.token.idps import IdpTrust, user_grant
from services.token.keys import SigningKeys
from services.token.policy import LEVEL, AgentFacts, CompiledPolicy, compile_policy, decide
from services.token.recorder import Recorder
from services.token.rules import Rules
from shared import capabilities, jose, spiffe
from shared.b64 import b64u_encode
from shared.errors import (
    AgentidError,
    AttestationRequired,
    DelegationInvalid,
    Forbidden,
    InvalidGrant,
    InvalidRequest,
    InvalidScope,
    NotFound,
    PolicyDenied,
)
from shared.ids import new_id
from shared.keys import PublicKey
from shared.outbox import outbox_row
from shared.ratelimit import RateLimiter
from shared.worker import Context, Subscription, Worker

TOKEN_TYP = "at+jwt"


def _now() -> datetime:
    return datetime.now(UTC)


class TokenWorker(Worker):
    name = "token"
    schema = "token"
    migrations = Path(__file__).parent / "migrations"
    uses_directory = True

    def routes(self) -> Mapping[sub.Route[Any, Any], Any]:
        return {
            sub.TOKEN_ISSUE: self.issue,
            sub.TOKEN_JWKS: self.jwks,
            sub.TOKEN_INTROSPECT: self.introspect,
            sub.TOKEN_REVOKE: self.revoke,
            sub.TOKEN_ROTATE_KEY: self.rotate_key,
            sub.POLICY_SET: self.set_policy,
            sub.POLICY_GET: self.get_policy,
            sub.POLICY_TEST: self.test_policy,
            sub.TOKEN_CONFIG_SET: self.set_config,
            sub.TOKEN_CONFIG_GET: self.get_config,
            sub.TOKEN_EXCHANGE: self.exchange,
            sub.IDP_ADD: self.add_idp,
            sub.IDP_LIST: self.list_idps,
            sub.IDP_REMOVE: self.remove_idp,
            **grants.routes(self),  # the HTTP edge: token endpoint, resource-server registry
        }

    def subscriptions(self) -> Sequence[Subscription]:
        return [
            Subscription("token-credentials", {sub.CREDENTIAL_ISSUED: self.on_credential_issued}),
            Subscription("token-attestation", {sub.ATTESTATION_VERIFIED: self.on_attested,
                                               sub.ATTESTATION_FAILED: self.on_attestation_failed}),
            Subscription("token-delegations", {sub.DELEGATION_REVOKED: self.on_delegation_revoked}),
        ]

    async def on_start(self) -> None:
        if self.keyring.kek is None:
            raise RuntimeError("the keyring has no key-encryption key: token cannot seal signing keys")
        self.keys = SigningKeys(self.keyring.kek)
        self.recorder = Recorder(self.outbox)
        self._policies: dict[str, CompiledPolicy | None] = {}
        self._rules: dict[str, Rules] = {}
        self._bundles: dict[str, tuple[float, list[x509.Certificate]]] = {}
        self._limits = RateLimiter()
        self.idps = IdpTrust(self.pool, insecure_hosts=self.settings.idp_insecure_hosts,
                             refetch_interval_s=self.settings.idp_refetch_interval_s)
        # Every replica drops what it cached when a tenant's policy, rules or key change. These
        # events only ever cause a reload from the database, so they need no authentication here.
        root = self.bus.root
        for topic, forget in ((sub.POLICY_UPDATED, self._policies), (sub.TOKEN_CONFIG_UPDATED, self._rules)):
            await self.bus.nc.subscribe(topic.pattern(root), cb=self._forgetter(forget))
        await self.bus.nc.subscribe(sub.SIGNING_KEY_ROTATED.pattern(root), cb=self._forget_key)
        await self.bus.nc.subscribe(sub.IDP_CHANGED.pattern(root), cb=self._forget_idps)

    @staticmethod
    def _forgetter(cache: dict[str, Any]) -> Any:
        async def forget(msg: Any) -> None:
            cache.pop(msg.subject.split(".")[2], None)
        return forget

    async def _forget_key(self, msg: Any) -> None:
        self.keys.forget(msg.subject.split(".")[2])

    async def _forget_idps(self, msg: Any) -> None:
        self.idps.forget(msg.subject.split(".")[2])

    async def background(self, stop: asyncio.Event) -> None:
        await self.recorder.run(stop)

    def issuer(self, tenant: str) -> str:
        return f"{self.settings.base_url()}/tenants/{tenant}"

    # -- tenant state ----------------------------------------------------------------------------
    async def rules(self, tenant: str) -> Rules:
        rules = self._rules.get(tenant)
        if rules is None:
            row = await store.current_config(self.pool, tenant)
            rules = Rules(msgspec.convert(row["config"], tok.TokenConfig), row["version"]) if row else Rules(tok.TokenConfig())
            self._rules[tenant] = rules
        return rules

    async def policy(self, tenant: str) -> CompiledPolicy | None:
        if tenant not in self._policies:
            row = await store.current_policy(self.pool, tenant)
            self._policies[tenant] = compile_policy(row["policies"], row["schema"], row["version"]) if row else None
        return self._policies[tenant]

    async def facts(self, tenant: str, agent_id: str) -> AgentFacts:
        row = await store.agent_facts(self.pool, self.schema, agent_id, _now())
        if row is None and await self.directory.ensure_agent(tenant, agent_id):
            row = await store.agent_facts(self.pool, self.schema, agent_id, _now())
        if row is None or row["tenant"] != tenant:
            raise NotFound("agent not known here")
        attrs = dict(row["attributes"])
        return AgentFacts(
            agent_id=agent_id, spiffe_id=row["sender"], did=attrs.get("did", ""), tenant=tenant,
            orchestrator_id=row["orchestrator_id"] or "", tier=attrs.get("tier", ""), purpose=attrs.get("purpose", ""),
            data_class=attrs.get("data_class", ""), model=attrs.get("model", {}), tools=tuple(attrs.get("tools", [])),
            attestations=tuple(row["postures"] or ()), credential_id=row["credential_id"], key_id=row["key_id"],
            public_jwk=dict(row["public_jwk"]),
            active=bool(row["active"]), parent_agent_id=attrs.get("parent_agent_id"))

    # -- issuing ---------------------------------------------------------------------------------
    async def issue(self, req: tok.IssueToken, ctx: Context, *, cnf: dict[str, str] | None = None) -> tok.IssuedToken:
        """`cnf`: a binding already proven elsewhere (the HTTP token endpoint's DPoP proof)."""
        agent = await self.facts(ctx.tenant, ctx.sender.subject_id)
        try:
            rules = await self.rules(ctx.tenant)
            self._rate_limit(agent, rules)
            caps = rules.details(req.authorization_details)
            rules.audience(req.audience)
            lifetime = rules.lifetime(req.lifetime_s)
            self._data_class_ceiling(agent, caps)
            if agent.tier in rules.config.attestation_required_tiers and not agent.attested:
                raise AttestationRequired(f"tier {agent.tier} requires a live attestation")
            cnf = cnf or await self._binding(req, ctx, agent)
            delegation = await self._delegation(req, ctx, agent, caps)
            depth = delegation["depth"] if delegation else 0
            decision = decide(await self.policy(ctx.tenant), agent, caps, audience=req.audience, lifetime=lifetime,
                              delegation_depth=depth)
            if not decision.allowed:
                raise PolicyDenied(decision.reason, {"determining_policies": decision.determining_policies})
        except AgentidError as exc:
            if not exc.retryable:
                await self._record_denial(ctx, agent, req.audience, exc)
            raise
        return await self._mint(ctx.tenant, agent, caps, req.audience, lifetime, cnf, decision.determining_policies,
                                delegation=delegation)

    def _rate_limit(self, agent: AgentFacts, rules: Rules) -> None:
        """Before any other work, so a flood costs a dictionary lookup; refusals are not recorded
        as denials for the same reason (they would flood the audit log instead)."""
        per_agent, per_orchestrator = rules.config.agent_tokens_per_s, rules.config.orchestrator_tokens_per_s
        self._limits.take(f"agent:{agent.agent_id}", rate_per_s=per_agent, burst=2 * per_agent, what="tokens")
        if agent.orchestrator_id:
            self._limits.take(f"orchestrator:{agent.orchestrator_id}", rate_per_s=per_orchestrator,
                              burst=2 * per_orchestrator, what="tokens for this orchestrator's agents")

    async def _delegation(self, req: tok.IssueToken, ctx: Context, agent: AgentFacts,
                          caps: Sequence[capabilities.Capability]) -> dict[str, Any] | None:
        """A delegated request: the chain is checked by the delegation worker (every link, its
        revocation state, the tenant's depth limit) and the token may name only what the leaf grants."""
        if req.delegation is None and req.delegation_cid is None:
            return None
        if req.delegation is not None and req.delegation_cid is not None:
            raise InvalidRequest("send the chain or its leaf CID, not both")
        check = await self.bus.request(sub.DELEGATION_CHECK, ctx.tenant, dlg.CheckChain(
            chain=req.delegation, leaf_cid=req.delegation_cid, holder_did=agent.did))
        if not capabilities.covered(caps, capabilities.parse_authorization_details(check.capabilities)):
            raise DelegationInvalid("the details go beyond what the delegation grants", {"reason": "widened"})
        # `chain`: the links' CIDs, root first (verifiers refuse the token when any is revoked).
        return {"depth": check.depth, "chain": check.cids, "root": check.root, "path": check.path,
                "agent_ids": check.agent_ids, "max_depth": check.max_depth}

    @staticmethod
    def _data_class_ceiling(agent: AgentFacts, caps: Sequence[capabilities.Capability]) -> None:
        """Never above the agent's own data access class, whatever a policy says."""
        ceiling = LEVEL.get(agent.data_class, -1)
        for cap in caps:
            if cap.data_class is not None and LEVEL[cap.data_class] > ceiling:
                raise PolicyDenied(f"data class {cap.data_class} is above the agent's ({agent.data_class})",
                                   {"determining_policies": ["data-class-ceiling"]})

    async def _binding(self, req: tok.IssueToken, ctx: Context, agent: AgentFacts) -> dict[str, str]:
        """Exactly one confirmation member: the agent key's thumbprint (DPoP), or its SVID's (mTLS)."""
        if req.dpop_proof is not None and req.x509_svid_pem is not None:
            raise InvalidRequest("ask for DPoP or mTLS binding, not both")
        if req.x509_svid_pem is not None:
            return {"x5t#S256": await self._svid_thumbprint(req.x509_svid_pem, ctx, agent)}
        if req.dpop_proof is not None:
            raise InvalidRequest("binding to a separate DPoP key is not available on the bus; use the agent key")
        return {"jkt": ctx.sender.key.thumbprint}

    async def _svid_thumbprint(self, pem: str, ctx: Context, agent: AgentFacts) -> str:
        try:
            cert = x509.load_pem_x509_certificate(pem.encode())
        except ValueError as exc:
            raise InvalidRequest("x509_svid_pem is not a certificate") from exc
        try:
            authenticated = spiffe.verify_x509_svid([cert], await self._bundle(ctx.tenant))
        except spiffe.SpiffeError as exc:
            raise InvalidRequest(f"not a valid SVID of this tenant: {exc}") from exc
        if authenticated != agent.spiffe_id or PublicKey(cert.public_key()) != ctx.sender.key:  # type: ignore[arg-type]
            raise Forbidden("the SVID is another agent's, or certifies another key")
        return b64u_encode(hashlib.sha256(cert.public_bytes(serialization.Encoding.DER)).digest())

    async def _bundle(self, tenant: str) -> list[x509.Certificate]:
        hit = self._bundles.get(tenant)
        if hit is None or hit[0] < time.monotonic():
            bundle = await self.bus.request(sub.GET_BUNDLE, tenant, reg.GetBundle())
            hit = (time.monotonic() + 60, spiffe.bundle_authorities(bundle.jwks)[0])
            self._bundles[tenant] = hit
        return hit[1]

    async def _mint(self, tenant: str, agent: AgentFacts, caps: Sequence[capabilities.Capability], audience: str,
                    lifetime: int, cnf: dict[str, str], policies: list[str], *, act: dict[str, Any] | None = None,
                    delegation: dict[str, Any] | None = None, user: str | None = None,
                    extra: dict[str, Any] | None = None) -> tok.IssuedToken:
        kid, key = await self.keys.active(self.pool, tenant)
        now = int(time.time())
        jti = new_id()
        details = [capabilities.to_rar(c) for c in caps]
        claims: dict[str, Any] = {
            "iss": self.issuer(tenant), "sub": user or agent.spiffe_id, "aud": audience, "iat": now, "nbf": now,
            "exp": now + lifetime, "jti": jti, "client_id": agent.spiffe_id, "authorization_details": details,
            "cnf": cnf, "agent_did": agent.did, "tenant": tenant,
        }
        if agent.credential_id:
            claims["credential_id"] = agent.credential_id
        if act is not None:
            claims["act"] = act
        if delegation is not None:
            claims["delegation"] = delegation
        claims.update(extra or {})
        token = jose.sign(claims, key, typ=TOKEN_TYP, kid=kid)
        iat, exp = datetime.fromtimestamp(now, UTC), datetime.fromtimestamp(now + lifetime, UTC)
        row = (jti, tenant, agent.agent_id, claims["sub"], audience, iat, exp, cnf, details, act, delegation, user)
        event = tok.TokenIssued(jti=jti, agent_id=agent.agent_id, sub=claims["sub"], audience=audience, expires_at=exp,
                                authorization_details=details, determining_policies=policies, act=act,
                                delegation=delegation, user=user)
        await self.recorder.record(row, outbox_row(self.bus, sub.TOKEN_ISSUED, tenant, event))
        return tok.IssuedToken(access_token=token, token_type="DPoP" if "jkt" in cnf else "N_A", expires_in=lifetime,
                               expires_at=exp, jti=jti, authorization_details=details)

    async def _record_denial(self, ctx: Context, agent: AgentFacts, audience: str | None, exc: AgentidError,
                             user: str | None = None) -> None:
        policies = list((exc.detail or {}).get("determining_policies", []))
        event = tok.TokenDenied(agent_id=agent.agent_id, sub=agent.spiffe_id, audience=audience,
                                code=exc.code.value, reason=exc.message[:1000], determining_policies=policies, user=user)
        await self.recorder.record(None, outbox_row(self.bus, sub.TOKEN_DENIED, ctx.tenant, event))

    # -- keys, introspection, revocation ---------------------------------------------------------
    async def jwks(self, req: tok.GetJwks, ctx: Context) -> tok.Jwks:
        await self.keys.active(self.pool, ctx.tenant)  # a tenant's key exists once asked for
        return tok.Jwks(keys=await self.keys.jwks(self.pool, ctx.tenant))

    async def rotate_key(self, req: tok.RotateSigningKey, ctx: Context) -> tok.Jwks:
        async with self.unit_of_work(ctx) as uow:
            kid = await self.keys.rotate(uow.conn, ctx.tenant)
            await uow.emit(sub.SIGNING_KEY_ROTATED, ctx.tenant, tok.SigningKeyRotated(kid=kid, at=_now()))
        self.keys.forget(ctx.tenant)
        return tok.Jwks(keys=await self.keys.jwks(self.pool, ctx.tenant))

    async def _own_token(self, token: str, tenant: str) -> tuple[dict[str, Any], Any] | None:
        """Claims and index row of a live token we issued for this tenant, or None: bad signature,
        another issuer, expired, revoked, or its agent no longer active."""
        keys = {k["kid"]: PublicKey.from_jwk({m: k[m] for m in ("kty", "crv", "x", "y") if m in k})
                for k in await self.keys.jwks(self.pool, tenant)}
        try:
            header, _, _ = jose.split(token)
            key = keys.get(header.get("kid", ""))
            if key is None:
                return None
            _, claims = jose.verify(token, key, algorithms=("EdDSA", "Ed25519"), typ=TOKEN_TYP,
                                    issuer=self.issuer(tenant), require=("exp", "jti", "sub"), leeway=0)
        except jose.JoseError:
            return None
        row = await store.token(self.pool, tenant, claims["jti"])
        if row is None or row["revoked_at"] is not None or not await store.agent_active(self.pool, row["agent_id"]):
            return None
        if row["delegation"] and await store.any_link_revoked(self.pool, list(row["delegation"].get("chain", []))):
            return None
        return claims, row

    async def introspect(self, req: tok.Introspect, ctx: Context) -> tok.Introspection:
        """Active only if the signature, issuer and time hold, and neither the token nor its agent
        (nor anything it was derived from) has been revoked."""
        found = await self._own_token(req.token, ctx.tenant)
        if found is None:
            return tok.Introspection(active=False)
        claims, _ = found
        return tok.Introspection(active=True, claims={**claims, "active": True, "token_type": "DPoP" if "jkt" in claims["cnf"] else "N_A",
                                                       "username": claims.get("sub")})

    async def revoke(self, req: tok.RevokeToken, ctx: Context) -> tok.RevokedToken:
        async with self.unit_of_work(ctx) as uow:
            row = await store.token(uow.conn, ctx.tenant, req.jti, for_update=True)
            if row is None:
                raise NotFound("no such token")
            if ctx.sender.kind == "agent" and ctx.sender.subject_id != row["agent_id"]:
                raise Forbidden("an agent may revoke only its own tokens")
            if ctx.sender.kind == "orchestrator":
                owner = await self.directory.get(uow.conn, row["agent_id"])
                if owner is None or owner["orchestrator_id"] != ctx.sender.subject_id:
                    raise Forbidden("an orchestrator may revoke only its agents' tokens")
            if row["revoked_at"] is None:
                await store.revoke_token(uow.conn, req.jti, req.reason)
                await uow.emit(sub.TOKEN_REVOKED, ctx.tenant, tok.TokenRevoked(
                    jti=req.jti, sub=row["sub"], exp=int(row["exp"].timestamp()), reason=req.reason))
        return tok.RevokedToken(jti=req.jti, revoked=True)

    # -- policy and configuration ----------------------------------------------------------------
    async def set_policy(self, req: tok.SetPolicy, ctx: Context) -> tok.PolicyRecord:
        compiled = compile_policy(req.policies, req.schema)  # refuses before anything is stored
        async with self.unit_of_work(ctx) as uow:
            version = await store.insert_policy(uow.conn, ctx.tenant, req.policies, req.schema, compiled.sha256,
                                                sorted(compiled.ids.values()))
            await uow.emit(sub.POLICY_UPDATED, ctx.tenant, tok.PolicyUpdated(version=version, sha256=compiled.sha256,
                                                                            at=_now()))
        self._policies.pop(ctx.tenant, None)
        return tok.PolicyRecord(version=version, sha256=compiled.sha256, policy_ids=sorted(compiled.ids.values()),
                                updated_at=_now())

    async def get_policy(self, req: tok.GetPolicy, ctx: Context) -> tok.PolicyDocument:
        row = await store.current_policy(self.pool, ctx.tenant)
        if row is None:
            raise NotFound("no policy set: every request is denied")
        return tok.PolicyDocument(version=row["version"], policies=row["policies"], schema=row["schema"])

    async def test_policy(self, req: tok.TestPolicy, ctx: Context) -> tok.PolicyDecision:
        a = req.agent
        agent = AgentFacts(
            agent_id=str(a.get("id", "agt_test")), spiffe_id=str(a.get("spiffe_id", "spiffe://test/agent/agt_test")),
            did=str(a.get("did", "")), tenant=ctx.tenant, orchestrator_id=str(a.get("orchestrator_id", "orc_test")),
            tier=str(a.get("tier", "")), purpose=str(a.get("purpose", "")), data_class=str(a.get("data_class", "")),
            model=dict(a.get("model", {})), tools=tuple(a.get("tools", [])),
            attestations=("tee",) if a.get("attested") else ())
        try:
            caps = (await self.rules(ctx.tenant)).details(req.authorization_details)
            self._data_class_ceiling(agent, caps)
        except AgentidError as exc:
            return tok.PolicyDecision(decision="deny", determining_policies=list((exc.detail or {}).get(
                "determining_policies", [])), reason=exc.message)
        decision = decide(await self.policy(ctx.tenant), agent, caps, audience=req.audience, lifetime=req.lifetime_s,
                          delegation_depth=req.delegation_depth, user=req.user)
        return tok.PolicyDecision(decision="allow" if decision.allowed else "deny",
                                  determining_policies=decision.determining_policies, errors=decision.errors,
                                  reason=decision.reason)

    async def set_config(self, req: tok.SetTokenConfig, ctx: Context) -> tok.TokenConfigRecord:
        Rules(req.config)  # schemas compile, or the request is refused
        async with self.unit_of_work(ctx) as uow:
            version = await store.insert_config(uow.conn, ctx.tenant, msgspec.to_builtins(req.config))
            await uow.emit(sub.TOKEN_CONFIG_UPDATED, ctx.tenant, tok.TokenConfigUpdated(version=version, at=_now()))
        self._rules.pop(ctx.tenant, None)
        return tok.TokenConfigRecord(version=version, config=req.config)

    async def get_config(self, req: tok.GetTokenConfig, ctx: Context) -> tok.TokenConfigRecord:
        rules = await self.rules(ctx.tenant)
        return tok.TokenConfigRecord(version=rules.version, config=rules.config)

    # -- on behalf of a user (RFC 8693) ---------------------------------------------------------
    async def exchange(self, req: tok.ExchangeToken, ctx: Context) -> tok.IssuedToken:
        require_actor(req)
        actor = await self.facts(ctx.tenant, self._actor_id(req))
        user: str | None = None
        try:
            rules = await self.rules(ctx.tenant)
            self._rate_limit(actor, rules)
            if req.actor_token is not None:
                await verify_actor_token(req.actor_token, actor, audience=self.issuer(ctx.tenant), replay=self.replay,
                                         max_skew_s=self.settings.max_skew_s)
            caps = rules.details(req.authorization_details)
            rules.audience(req.audience)
            subject = await self._subject(req.subject_token, ctx.tenant)
            user = subject["sub"]
            authorise_caller(ctx, actor, reexchange=subject["reexchange"], holder_jkt=subject["holder"])
            may_act = subject.get("may_act")
            if may_act is not None and (not isinstance(may_act, dict) or may_act.get("sub") not in (actor.spiffe_id, actor.did)):
                raise InvalidGrant("the user's token says another actor may act for them")
            act = extend_act(actor, subject["act"])
            if act_depth(act) > rules.config.max_delegation_depth:
                raise InvalidRequest(f"act chain deeper than the tenant's limit ({rules.config.max_delegation_depth})")
            if not capabilities.covered(caps, subject["grant"]):
                raise InvalidScope("the details go beyond what the user granted" if not subject["reexchange"]
                                   else "a re-exchange may only narrow the details")
            lifetime = min(rules.lifetime(req.lifetime_s), int(subject["exp"] - time.time()))
            if lifetime <= 0:
                raise InvalidGrant("the subject token has expired")
            self._data_class_ceiling(actor, caps)
            if actor.tier in rules.config.attestation_required_tiers and not actor.attested:
                raise AttestationRequired(f"tier {actor.tier} requires a live attestation")
            decision = decide(await self.policy(ctx.tenant), actor, caps, audience=req.audience, lifetime=lifetime,
                              delegation_depth=act_depth(act), user={"id": user, "groups": subject["groups"]})
            if not decision.allowed:
                raise PolicyDenied(decision.reason, {"determining_policies": decision.determining_policies})
        except AgentidError as exc:
            if not exc.retryable:
                await self._record_denial(ctx, actor, req.audience, exc, user=user)
            raise
        return await self._mint(ctx.tenant, actor, caps, req.audience, lifetime, {"jkt": actor.key_id},
                                decision.determining_policies, act=act, user=user,
                                extra={"subject_issuer": subject["issuer"]})

    @staticmethod
    def _actor_id(req: tok.ExchangeToken) -> str:
        if req.actor_agent_id is not None:
            return req.actor_agent_id
        try:
            sub_ = str(jose.split(req.actor_token or "")[1].get("sub", ""))
        except jose.JoseError as exc:
            raise InvalidGrant("actor token is malformed") from exc
        return sub_.rsplit("/agent/", 1)[-1] if "/agent/" in sub_ else "unknown"

    async def _subject(self, token: str, tenant: str) -> dict[str, Any]:
        """What the subject token vouches for. Our own on-behalf-of token (a re-exchange), or a
        user token from a trusted identity provider; the token itself goes no further than here."""
        try:
            issuer = jose.split(token)[1].get("iss")
        except jose.JoseError as exc:
            raise InvalidGrant("subject token is malformed") from exc
        if issuer == self.issuer(tenant):
            found = await self._own_token(token, tenant)
            if found is None or "act" not in found[0]:
                raise InvalidGrant("subject token is not a live on-behalf-of token of this tenant")
            claims = found[0]
            return {"reexchange": True, "sub": claims["sub"], "groups": [], "exp": claims["exp"],
                    "act": claims["act"], "holder": claims["cnf"].get("jkt"), "issuer": claims.get("subject_issuer"),
                    "grant": capabilities.parse_authorization_details(claims["authorization_details"])}
        claims, idp = await self.idps.verify(tenant, token)
        user = claims.get("sub")
        # OpenID Connect: a case-sensitive string of at most 255 ASCII characters. Anything else
        # is refused here, before it could reach a token, an event or the audit log.
        if not isinstance(user, str) or not 1 <= len(user) <= 255 or not user.isascii() or not user.isprintable():
            raise InvalidGrant("the user's token has no usable sub (a string of at most 255 characters)")
        groups = claims.get(idp.groups_claim, [])
        return {"reexchange": False, "sub": user, "exp": claims["exp"], "act": None, "holder": None,
                "groups": [g for g in groups if isinstance(g, str) and len(g) <= 256][:256]
                          if isinstance(groups, list) else [],
                "issuer": idp.issuer, "may_act": claims.get("may_act"), "grant": user_grant(claims, idp)}

    async def add_idp(self, req: tok.AddIdp, ctx: Context) -> tok.IdpList:
        self.idps.check_urls(req.idp)
        for details in (*req.idp.scope_grants.values(), *req.idp.group_grants.values()):
            (await self.rules(ctx.tenant)).details(details)  # grants must be valid details of registered types
        async with self.unit_of_work(ctx) as uow:
            await uow.conn.execute(
                "INSERT INTO token.idps(tenant, issuer, config) VALUES ($1, $2, $3)"
                " ON CONFLICT (tenant, issuer) DO UPDATE SET config = EXCLUDED.config, added_at = now()",
                ctx.tenant, req.idp.issuer, msgspec.to_builtins(req.idp))
            await uow.emit(sub.IDP_CHANGED, ctx.tenant, tok.IdpChanged(issuer=req.idp.issuer, change="added", at=_now()))
        self.idps.forget(ctx.tenant)
        return await self.list_idps(tok.ListIdps(), ctx)

    async def list_idps(self, req: tok.ListIdps, ctx: Context) -> tok.IdpList:
        return tok.IdpList(idps=list((await self.idps.providers(ctx.tenant)).values()))

    async def remove_idp(self, req: tok.RemoveIdp, ctx: Context) -> tok.IdpList:
        async with self.unit_of_work(ctx) as uow:
            removed = await uow.conn.fetchval("DELETE FROM token.idps WHERE tenant = $1 AND issuer = $2 RETURNING 1",
                                              ctx.tenant, req.issuer)
            if not removed:
                raise NotFound("no such identity provider")
            await uow.emit(sub.IDP_CHANGED, ctx.tenant, tok.IdpChanged(issuer=req.issuer, change="removed", at=_now()))
        self.idps.forget(ctx.tenant)
        return await self.list_idps(tok.ListIdps(), ctx)

    # -- events ----------------------------------------------------------------------------------
    async def on_delegation_revoked(self, event: dlg.DelegationRevoked, ctx: Context) -> None:
        async with self.unit_of_work(ctx) as uow:
            await store.revoke_links(uow.conn, list(event.cids))

    async def on_attested(self, event: att.AttestationVerified, ctx: Context) -> None:
        async with self.unit_of_work(ctx) as uow:
            agent = await self.directory.get(uow.conn, event.agent_id)
            # Evidence bound to another key never gives this agent a posture.
            if agent is None or agent["key_id"] != event.key_thumbprint or agent["tenant"] != ctx.tenant:
                return
            await store.set_posture(uow.conn, ctx.tenant, event.agent_id, event.posture, event.result_id,
                                    event.verified_at, event.expires_at)

    async def on_attestation_failed(self, event: att.AttestationFailed, ctx: Context) -> None:
        if not event.posture_ended:
            return
        async with self.unit_of_work(ctx) as uow:
            await store.end_posture(uow.conn, event.agent_id, event.posture, event.at)

    async def on_credential_issued(self, event: iss.CredentialIssued, ctx: Context) -> None:
        async with self.unit_of_work(ctx) as uow:
            await store.set_credential(uow.conn, ctx.tenant, event.agent_id, event.credential_id)
