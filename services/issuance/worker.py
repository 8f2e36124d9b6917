"""The issuance worker: the agent passport (a W3C VC as vc+jwt), issuer DIDs and status lists."""

from __future__ import annotations

import uuid
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import asyncpg

from contracts import artifacts as art
from contracts import attestation as att
from contracts import issuance as iss
from contracts import registration as reg
from contracts import subjects as sub
from contracts import tokens as tok
from services.issuance import store
from services.issuance.issuers import Issuers
from shared import status_list, vc
from shared.canonical import sha256_digest
from shared.artifacts_check import SIGNING_SKEW_S, check_signed_statement, parse_instant
from shared.errors import AgentInactive, Forbidden, InvalidRequest, NotFound
from shared.ids import new_id
from shared.outbox import UnitOfWork
from shared.worker import Context, Subscription, Worker

AGENT_CREDENTIAL = "AgentCredential"


def _now() -> datetime:
    return datetime.now(UTC)


def agent_subject(agent: reg.AgentIdentity) -> dict[str, Any]:
    """What the credential says about the agent (the claims a relying party reads)."""
    tools = [{k: v for k, v in (("name", t.name), ("version", t.version), ("digest", t.digest)) if v is not None}
             for t in sorted(agent.tools, key=lambda t: t.name)]
    model = {k: v for k, v in (("name", agent.model.name), ("version", agent.model.version),
                               ("digest", agent.model.digest)) if v is not None}
    controller = {k: v for k, v in (("type", agent.controller.type), ("id", agent.controller.id),
                                    ("name", agent.controller.display_name)) if v is not None}
    return {
        "id": agent.did,
        "type": "Agent",
        "agentId": agent.agent_id,
        "spiffeId": agent.spiffe_id,
        "tenant": agent.tenant,
        "orchestrator": f"spiffe://{agent.trust_domain}/orchestrator/{agent.orchestrator_id}",
        "purpose": agent.purpose,
        "controller": controller,
        "model": model,
        # The profile digest covers the sorted tool list, so a changed tool set is detectable.
        "toolProfile": {"tools": tools, "digest": sha256_digest(tools)},
        "policyTier": agent.tier,
        "dataAccessClass": agent.data_class,
        "attested": False,
    }


class IssuanceWorker(Worker):
    name = "issuance"
    schema = "issuance"
    migrations = Path(__file__).parent / "migrations"
    uses_directory = True

    def routes(self) -> Mapping[sub.Route[Any, Any], Any]:
        return {
            sub.GET_CREDENTIAL: self.get_credential,
            sub.GET_STATUS_LIST: self.get_status_list,
            sub.GET_ISSUER: self.get_issuer,
            sub.REVOKE_CREDENTIAL: self.revoke_credential,
            sub.ROTATE_ISSUER_KEY: self.rotate_key,
            sub.RECORD_ARTIFACT: self.record_artifact,
        }

    def subscriptions(self) -> Sequence[Subscription]:
        # One consumer, so an agent's exit is never applied before its registration.
        return [Subscription("issuance-agents", {
            sub.AGENT_REGISTERED: self.on_agent_registered,
            sub.AGENT_EXITED: self.on_agent_exited,
            sub.ATTESTATION_VERIFIED: self.on_attested,
            sub.ATTESTATION_FAILED: self.on_attestation_failed,
        })]

    async def on_start(self) -> None:
        if self.keyring.kek is None:
            raise RuntimeError("the keyring has no key-encryption key: issuance cannot seal issuer keys")
        self.issuers = Issuers(self.keyring.kek, did_web_host=self.settings.did_web_host)

    def list_url(self, tenant: str, list_id: str) -> str:
        return f"{self.settings.base_url()}/tenants/{tenant}/status-lists/{list_id}"

    # -- issuing ---------------------------------------------------------------------------------
    async def on_agent_registered(self, event: reg.AgentRegistered, ctx: Context) -> None:
        agent = event.agent
        async with self.unit_of_work(ctx) as uow:
            await self.issue(uow, agent.tenant, agent.agent_id, agent_subject(agent),
                             valid_from=agent.created_at, valid_until=agent.expires_at)

    async def issue(self, uow: UnitOfWork, tenant: str, agent_id: str, subject: dict[str, Any], *,
                    valid_from: datetime, valid_until: datetime) -> str:
        key_row, key = await self.issuers.active(uow.conn, tenant)
        listing = await self._open_list(uow.conn, tenant, key_row)
        index = status_list.random_index(listing["entries"])
        while await store.index_taken(uow.conn, listing["id"], index):
            index = status_list.random_index(listing["entries"])
        credential_id = f"urn:uuid:{uuid.uuid4()}"
        claims = vc.credential(
            credential_id=credential_id, issuer=key_row["did"], types=[AGENT_CREDENTIAL], subject=subject,
            valid_from=valid_from, valid_until=valid_until,
            status=vc.status_entry(self.list_url(tenant, listing["id"]), index))
        vc_jwt = vc.sign(claims, key, key_row["vm_id"])
        await store.insert_credential(
            uow.conn, id=credential_id, tenant=tenant, agent_id=agent_id, issuer_key_id=key_row["id"],
            status_list_id=listing["id"], status_index=index, vc_jwt=vc_jwt, subject=subject,
            valid_from=valid_from, valid_until=valid_until, attested=bool(subject.get("attested")))
        await store.count_use(uow.conn, listing["id"])
        await uow.emit(sub.CREDENTIAL_ISSUED, tenant, iss.CredentialIssued(
            credential_id=credential_id, agent_id=agent_id, issuer=key_row["did"], status_list_id=listing["id"],
            status_index=index, valid_until=valid_until, attested=bool(subject.get("attested"))))
        return credential_id

    async def _open_list(self, conn: asyncpg.Connection, tenant: str, key_row: asyncpg.Record) -> asyncpg.Record:
        listing = await store.open_list(conn, key_row["id"])
        if listing is None:
            list_id = "sl_" + new_id()
            bits = status_list.empty()
            await store.insert_list(conn, id=list_id, tenant=tenant, issuer_key_id=key_row["id"],
                                    entries=len(bits) * 8, bits=bytes(bits),
                                    vc_jwt=self._sign_list(tenant, list_id, key_row, bits))
            listing = await store.list_for_update(conn, list_id)
        return listing

    def _sign_list(self, tenant: str, list_id: str, key_row: asyncpg.Record, bits: bytes) -> str:
        claims = vc.status_list_credential(list_url=self.list_url(tenant, list_id), issuer=key_row["did"],
                                           encoded_list=status_list.encode(bits), valid_from=_now())
        # Signed by the key that issued the credentials it covers, even after that key is retired.
        return vc.sign(claims, self.issuers.private(key_row), key_row["vm_id"])

    # -- revoking --------------------------------------------------------------------------------
    async def on_agent_exited(self, event: reg.AgentExited, ctx: Context) -> None:
        async with self.unit_of_work(ctx) as uow:
            await self._revoke_agent(uow, ctx.tenant, event.agent_id, f"agent {event.status}: {event.reason}")

    # -- attested posture ----------------------------------------------------------------------
    async def on_attested(self, event: att.AttestationVerified, ctx: Context) -> None:
        """A new credential stating the attested posture; the previous one is revoked (superseded)."""
        async with self.unit_of_work(ctx) as uow:
            agent = await self.directory.get(uow.conn, event.agent_id)
            if agent is None or agent["key_id"] != event.key_thumbprint:
                return  # evidence for another key says nothing about this agent
            posture = {"kind": event.kind, "resultId": event.result_id, "verifiedAt": vc.iso(event.verified_at),
                       "expiresAt": vc.iso(event.expires_at)}
            if event.artifacts:
                posture["artifacts"] = list(event.artifacts)
            await self._reissue(uow, ctx.tenant, event.agent_id, event.posture, posture)

    async def on_attestation_failed(self, event: att.AttestationFailed, ctx: Context) -> None:
        if event.posture_ended:
            async with self.unit_of_work(ctx) as uow:
                await self._reissue(uow, ctx.tenant, event.agent_id, event.posture, None)

    async def _reissue(self, uow: UnitOfWork, tenant: str, agent_id: str, kind: str, posture: dict[str, Any] | None) -> None:
        rows = await store.unrevoked_credentials(uow.conn, tenant, agent_id)
        if not rows:
            return  # the agent has exited: nothing to restate
        current = rows[-1]
        subject = dict(current["subject"])
        postures = dict(subject.get("attestation") or {})
        if posture is None:
            if kind not in postures:
                return
            postures.pop(kind)
        else:
            postures[kind] = posture
        subject["attestation"] = postures
        subject["attested"] = "tee" in postures
        await self._revoke_rows(uow, tenant, agent_id, rows, "superseded: attested posture changed")
        await self.issue(uow, tenant, agent_id, subject, valid_from=current["valid_from"],
                         valid_until=current["valid_until"])

    async def _revoke_agent(self, uow: UnitOfWork, tenant: str, agent_id: str, reason: str) -> int:
        rows = await store.unrevoked_credentials(uow.conn, tenant, agent_id)
        return await self._revoke_rows(uow, tenant, agent_id, rows, reason)

    async def _revoke_rows(self, uow: UnitOfWork, tenant: str, agent_id: str, rows: list[asyncpg.Record],
                           reason: str) -> int:
        now = _now()
        for row in rows:
            listing = await store.list_for_update(uow.conn, row["status_list_id"])
            bits = bytearray(listing["bits"])
            status_list.set_bit(bits, row["status_index"])
            key_row = await store.key_by_id(uow.conn, listing["issuer_key_id"])
            await store.update_list(uow.conn, listing["id"], bits=bytes(bits),
                                    vc_jwt=self._sign_list(tenant, listing["id"], key_row, bits), used_delta=0)
            await store.mark_revoked(uow.conn, row["id"], now, reason)
            await uow.emit(sub.CREDENTIAL_REVOKED, tenant, iss.CredentialRevoked(
                credential_id=row["id"], agent_id=agent_id, status_list_id=listing["id"],
                status_index=row["status_index"], reason=reason))
        return len(rows)

    async def revoke_credential(self, req: iss.RevokeCredential, ctx: Context) -> iss.CredentialRecord:
        async with self.unit_of_work(ctx) as uow:
            await self._revoke_agent(uow, ctx.tenant, req.agent_id, req.reason)
        return await self.get_credential(iss.GetCredential(agent_id=req.agent_id), ctx)

    # -- agent-signed artifacts -----------------------------------------------------------------
    async def record_artifact(self, req: art.RecordArtifact, ctx: Context) -> art.ArtifactRecorded:
        """Log an agent's signed statement, after checking it is the agent's, about its current,
        unrevoked credential, and (on behalf of a user) backed by a live token bound to its key."""
        signed = check_signed_statement(req.envelope, ctx.sender.key)
        predicate = signed.statement["predicate"]
        agent_id = ctx.sender.subject_id
        agent = predicate.get("agent", {})
        if agent.get("spiffeId") != ctx.sender.sender or agent.get("did") != ctx.sender.key.did \
                or agent.get("agentId") != agent_id:
            raise InvalidRequest("the statement names another agent than its signer")
        current = await store.current_credential(self.pool, ctx.tenant, agent_id)
        if current is None or current["revoked_at"] is not None:
            raise AgentInactive("the agent has no valid credential to sign with")
        if predicate.get("credentialId") != current["id"]:
            raise InvalidRequest("the statement names another credential than the agent's current one")
        signed_at = parse_instant(predicate.get("signedAt"))
        if abs((signed_at - _now()).total_seconds()) > SIGNING_SKEW_S:
            raise InvalidRequest("signedAt is not now: a signature is logged when it is made")
        user, act, delegation = await self._on_behalf_of(req.on_behalf_of, ctx)
        if predicate.get("onBehalfOf") != user:
            raise InvalidRequest("onBehalfOf does not match the token the agent acted under")
        subject = signed.statement["subject"][0]
        async with self.unit_of_work(ctx) as uow:
            msg_id = await uow.emit(sub.ARTIFACT_SIGNED, ctx.tenant, art.ArtifactSigned(
                agent_id=agent_id, spiffe_id=ctx.sender.sender, did=ctx.sender.key.did, credential_id=current["id"],
                artifact_name=subject["name"], artifact_digest=subject["digest"]["sha256"],
                envelope_digest=signed.envelope_digest, purpose=str(predicate.get("purpose", ""))[:1000], user=user,
                act=act, delegation=delegation, signed_at=signed_at))
        listing = await store.get_list(self.pool, ctx.tenant, current["status_list_id"])
        assert listing is not None
        return art.ArtifactRecorded(event_msg_id=msg_id, envelope_digest=signed.envelope_digest,
                                    credential_id=current["id"], status_list_vc_jwt=listing["vc_jwt"],
                                    credential_vc_jwt=current["vc_jwt"], signed_at=signed_at)

    async def _on_behalf_of(self, token: str | None, ctx: Context) -> tuple[str | None, Any, Any]:
        if token is None:
            return None, None, None
        info = await self.bus.request(sub.TOKEN_INTROSPECT, ctx.tenant, tok.Introspect(token=token))
        claims = info.claims or {}
        act = claims.get("act") or {}
        if not info.active or act.get("sub") != ctx.sender.sender or \
                (claims.get("cnf") or {}).get("jkt") != ctx.sender.key.thumbprint:
            raise Forbidden("on_behalf_of is not a live token of this agent acting for a user")
        return str(claims["sub"]), act, claims.get("delegation")

    # -- reading -----------------------------------------------------------------------------------
    async def get_credential(self, req: iss.GetCredential, ctx: Context) -> iss.CredentialRecord:
        row = await store.current_credential(self.pool, ctx.tenant, req.agent_id)
        if row is None:
            raise NotFound("no credential for this agent (yet)")
        return iss.CredentialRecord(
            credential_id=row["id"], agent_id=row["agent_id"], issuer=row["did"], vc_jwt=row["vc_jwt"],
            status_list_credential=self.list_url(ctx.tenant, row["status_list_id"]), status_index=row["status_index"],
            valid_from=row["valid_from"], valid_until=row["valid_until"], revoked=row["revoked_at"] is not None,
            attested=row["attested"])

    async def get_status_list(self, req: iss.GetStatusList, ctx: Context) -> iss.StatusListRecord:
        row = await store.get_list(self.pool, ctx.tenant, req.list_id)
        if row is None:
            raise NotFound("no such status list")
        key_row = await store.key_by_id(self.pool, row["issuer_key_id"])  # type: ignore[arg-type]
        return iss.StatusListRecord(list_id=row["id"], url=self.list_url(ctx.tenant, row["id"]), issuer=key_row["did"],
                                    vc_jwt=row["vc_jwt"], version=row["version"])

    async def get_issuer(self, req: iss.GetIssuer, ctx: Context) -> iss.IssuerRecord:
        async with self.unit_of_work() as uow:
            await self.issuers.active(uow.conn, ctx.tenant)  # a tenant's issuer exists once asked for
        return await self.issuers.record(self.pool, ctx.tenant)

    async def rotate_key(self, req: iss.RotateIssuerKey, ctx: Context) -> iss.IssuerRecord:
        async with self.unit_of_work(ctx) as uow:
            await store.retire_key(uow.conn, ctx.tenant, _now())
            await self.issuers.create(uow.conn, ctx.tenant)
        return await self.issuers.record(self.pool, ctx.tenant)
