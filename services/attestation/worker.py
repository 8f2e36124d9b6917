"""The attestation worker: challenges, appraisal of evidence, postures and reference values.

Flow (RFC 9334 background-check model, with agentid as the Verifier):

1. `attestation.challenge` (the agent): 32 random bytes, bound to the agent and to the key that
   signed the request, single use, valid `attestation_challenge_ttl_s`.
2. The agent's TEE binds SHA-512(nonce || key thumbprint) into its evidence.
3. `attestation.verify` (the same agent): the challenge is spent in one statement (so it can
   never be spent twice), the evidence is appraised with the verifier of its kind against the
   tenant's reference values, as of now. The result is stored and emitted either way:
   `attestation.verified` (the posture and its expiry) or `attestation.failed` (the reason);
   a refusal also replies with `attestation_failed` whose `detail.reason` is that reason.

Provenance (`sigstore`) takes no challenge: it is bound to the agent through the model and tool
digests its registration names (fetched from registration), and raises the `supply_chain`
posture. Posture expiry = min(evidence end, now + `attestation_posture_max_age_s`, agent end).
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import secrets
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import asyncpg
import msgspec

from contracts import attestation as att
from contracts import registration as reg
from contracts import subjects as sub
from services.attestation import store
from services.attestation.appraisal import (
    Appraiser, UnsafeTestAnchors, covered_artifacts, credential_artifacts, normalised, parse_reference,
    provenance_reference, read_sigstore_root, reference_digest,
)
from services.attestation.verifiers import AppraisalError, AppraisalResult, Binding, Reason, ReferenceValues
from shared.errors import AttestationFailed, Conflict, Forbidden, InvalidRequest, RateLimited
from shared.ids import new_id
from shared.outbox import UnitOfWork
from shared.worker import Context, Worker

log = logging.getLogger(__name__)

NONCE_BYTES = 32
# An agent needs one open challenge at a time; a few allow retries without letting it fill the table.
MAX_OPEN_CHALLENGES = 8
# Spent and expired challenges are kept this long (so a late replay is told `challenge_expired` or
# `challenge_used` rather than `challenge_unknown`), then deleted; results are the lasting record.
CHALLENGE_RETENTION = timedelta(hours=1)
SWEEP_INTERVAL_S = 60.0


def _now() -> datetime:
    return datetime.now(UTC)


def bounded_claims(claims: Mapping[str, Any]) -> dict[str, Any]:
    """Claims for an event: as they are if small, else a summary that names their digest."""
    encoded = msgspec.json.encode(claims)
    if len(encoded) <= att.MAX_EVENT_CLAIMS_BYTES:
        return dict(claims)
    return {"truncated": True, "digest": "sha256:" + hashlib.sha256(encoded).hexdigest()}


class Refusal(Exception):
    """An appraisal refused before or while reading the evidence. With `posture_ended`, the
    agent's own evidence failed and whatever posture of that kind it held is over."""

    def __init__(self, reason: str, message: str, *, posture_ended: bool) -> None:
        super().__init__(f"{reason}: {message}")
        self.reason = reason
        self.message = message
        self.posture_ended = posture_ended


class AttestationWorker(Worker):
    name = "attestation"
    schema = "attestation"
    migrations = Path(__file__).parent / "migrations"
    uses_directory = True

    def routes(self) -> Mapping[sub.Route[Any, Any], Any]:
        return {
            sub.ATTESTATION_CHALLENGE: self.challenge,
            sub.ATTESTATION_VERIFY: self.verify,
            sub.ATTESTATION_POSTURE: self.posture,
            sub.SET_REFERENCE_VALUES: self.set_reference,
            sub.LIST_REFERENCE_VALUES: self.list_reference,
        }

    async def on_start(self) -> None:
        # A configured but unreadable or malformed trusted root stops the worker: it must not
        # quietly run without the provenance checks its operator asked for.
        self._sigstore_root = read_sigstore_root(self.settings.attestation_sigstore_trusted_root)
        self.appraiser = Appraiser(sigstore_trusted_root=self._sigstore_root)

    def use_unsafe_test_anchors(self, anchors: UnsafeTestAnchors | None) -> None:
        """FOR TEST SUITES ONLY: appraise with test roots instead of the pinned vendor roots
        (None restores them). Not reachable from configuration or from the bus."""
        if anchors is not None:
            log.warning("attestation: UNSAFE test trust anchors in force; evidence from test keys verifies")
        self.appraiser = Appraiser(sigstore_trusted_root=self._sigstore_root, unsafe_test_anchors=anchors)

    async def background(self, stop: asyncio.Event) -> None:
        while not stop.is_set():
            try:
                await store.delete_stale_challenges(self.pool, _now() - CHALLENGE_RETENTION)
            except Exception as exc:  # an outage pauses the sweep; the next one catches up
                log.warning("challenge sweep failed: %s", type(exc).__name__)
            try:
                await asyncio.wait_for(stop.wait(), timeout=SWEEP_INTERVAL_S)
            except asyncio.TimeoutError:
                pass

    # -- challenge -------------------------------------------------------------------------------
    async def challenge(self, req: att.RequestChallenge, ctx: Context) -> att.Challenge:
        agent_id, key_id = ctx.sender.subject_id, ctx.sender.key_id
        now = _now()
        nonce = secrets.token_bytes(NONCE_BYTES)
        challenge_id = "chl_" + new_id()
        expires_at = now + timedelta(seconds=self.settings.attestation_challenge_ttl_s)
        async with self.unit_of_work(ctx) as uow:
            # A soft bound: two concurrent requests may both pass, which is harmless.
            if await store.open_challenges(uow.conn, ctx.tenant, agent_id, now) >= MAX_OPEN_CHALLENGES:
                raise RateLimited(f"at most {MAX_OPEN_CHALLENGES} open challenges per agent")
            await store.insert_challenge(uow.conn, id=challenge_id, tenant=ctx.tenant, agent_id=agent_id,
                                         key_id=key_id, nonce=nonce, created_at=now, expires_at=expires_at)
        return att.Challenge(
            challenge_id=challenge_id, agent_id=agent_id, nonce=nonce.hex(), key_thumbprint=key_id,
            binding=Binding(nonce, key_id).digest().hex(), expires_at=expires_at)

    # -- verify ----------------------------------------------------------------------------------
    async def verify(self, req: att.VerifyEvidence, ctx: Context) -> att.AttestationResult:
        posture = att.posture_of(req.kind)
        if posture == "tee" and req.challenge_id is None:
            raise InvalidRequest(f"{req.kind} evidence is appraised against a challenge: challenge_id is required")
        if posture == "supply_chain" and req.challenge_id is not None:
            raise InvalidRequest("provenance is not bound to a challenge: omit challenge_id")
        agent_id, key_id = ctx.sender.subject_id, ctx.sender.key_id
        now = _now()
        agent_row = await self.directory.get(self.pool, agent_id)
        ref_row = await store.current_reference(self.pool, ctx.tenant)
        # Everything slow (a registration lookup, the cryptography) happens before the unit of work,
        # which then only spends the challenge and records the outcome.
        binding: Binding | None = None
        result: AppraisalResult | Refusal
        try:
            if posture == "tee":
                binding = await self._binding(ctx, req, now)
            reference = self._reference(ref_row)
            if posture == "supply_chain":
                reference = provenance_reference(reference, await self._artifacts(ctx, agent_id))
            result = await asyncio.to_thread(
                self.appraiser.appraise, req.kind, req.evidence, reference=reference, binding=binding, as_of=now)
        except AppraisalError as exc:
            # The agent's own evidence (or provenance) did not pass: whatever it held is over.
            result = Refusal(exc.reason.value, exc.message, posture_ended=True)
        except Refusal as exc:
            result = exc

        result_id = "att_" + new_id()
        version = ref_row["version"] if ref_row is not None else None
        async with self.unit_of_work(ctx) as uow:
            if binding is not None:
                # Single use whatever the outcome, spent in one statement: of two concurrent
                # verifies of one challenge, exactly one gets the nonce.
                spent = await store.consume_challenge(uow.conn, tenant=ctx.tenant, challenge_id=req.challenge_id or "",
                                                      agent_id=agent_id, key_id=key_id, now=now)
                if spent is None and not isinstance(result, Refusal):
                    result = Refusal(att.CHALLENGE_USED, "the challenge was spent meanwhile", posture_ended=False)
            if isinstance(result, Refusal):
                await self._refused(uow, ctx, req, result_id, result, version, now)
            else:
                record = await self._verified(uow, ctx, req, result_id, result, version, agent_row, now)
        if isinstance(result, Refusal):
            raise AttestationFailed(result.message[:1000], detail={
                "reason": result.reason, "result_id": result_id, "kind": req.kind})
        return record

    async def _binding(self, ctx: Context, req: att.VerifyEvidence, now: datetime) -> Binding:
        """The challenge's binding, or a Refusal naming why it cannot be used."""
        row = await store.get_challenge(self.pool, ctx.tenant, req.challenge_id or "")
        if row is None:
            raise Refusal(att.CHALLENGE_UNKNOWN, "no such challenge", posture_ended=False)
        if row["agent_id"] != ctx.sender.subject_id or row["key_id"] != ctx.sender.key_id:
            raise Refusal(att.CHALLENGE_NOT_YOURS, "the challenge was issued to another agent", posture_ended=False)
        if row["used_at"] is not None:
            raise Refusal(att.CHALLENGE_USED, "the challenge was already used", posture_ended=False)
        if row["expires_at"] <= now:
            raise Refusal(att.CHALLENGE_EXPIRED, "the challenge has expired", posture_ended=False)
        return Binding(bytes(row["nonce"]), row["key_id"])

    @staticmethod
    def _reference(row: asyncpg.Record | None) -> ReferenceValues:
        if row is None:
            raise AppraisalError(Reason.NOT_CONFIGURED, "the tenant has no attestation reference values")
        return parse_reference(row["document"])

    async def _artifacts(self, ctx: Context, agent_id: str) -> dict[str, str]:
        """The digests the agent's registration names (the source its credential is issued from)."""
        agent = await self.bus.request(sub.GET_AGENT, ctx.tenant, reg.GetAgent(agent_id=agent_id))
        return credential_artifacts(agent.model.digest, [(t.name, t.digest) for t in agent.tools])

    async def _verified(self, uow: UnitOfWork, ctx: Context, req: att.VerifyEvidence, result_id: str,
                        result: AppraisalResult, version: int | None, agent_row: asyncpg.Record | None,
                        now: datetime) -> att.AttestationResult:
        posture = att.posture_of(req.kind)
        ends = [now + timedelta(seconds=self.settings.attestation_posture_max_age_s)]
        ends += [t for t in (result.expires_at, agent_row["expires_at"] if agent_row else None) if t is not None]
        expires_at = min(ends)
        artifacts = covered_artifacts(result) if posture == "supply_chain" else []
        agent_id, key_id = ctx.sender.subject_id, ctx.sender.key_id
        assert version is not None  # appraisal without reference values is refused
        await store.insert_result(
            uow.conn, id=result_id, tenant=ctx.tenant, agent_id=agent_id, kind=req.kind, posture=posture,
            verified=True, key_id=key_id, created_at=now, evidence=req.evidence, claims=result.claims,
            artifacts=artifacts, challenge_id=req.challenge_id, reference_version=version, expires_at=expires_at)
        await store.hold_posture(uow.conn, tenant=ctx.tenant, agent_id=agent_id, posture=posture,
                                 result_id=result_id, kind=req.kind, artifacts=artifacts, verified_at=now,
                                 expires_at=expires_at)
        await uow.emit(sub.ATTESTATION_VERIFIED, ctx.tenant, att.AttestationVerified(
            result_id=result_id, agent_id=agent_id, kind=req.kind, posture=posture, key_thumbprint=key_id,
            claims=bounded_claims(result.claims), artifacts=artifacts, reference_version=version,
            verified_at=now, expires_at=expires_at))
        return att.AttestationResult(
            result_id=result_id, agent_id=agent_id, kind=req.kind, posture=posture, verified=True,
            claims=result.claims, artifacts=artifacts, key_thumbprint=key_id, reference_version=version,
            verified_at=now, expires_at=expires_at)

    async def _refused(self, uow: UnitOfWork, ctx: Context, req: att.VerifyEvidence, result_id: str,
                       refusal: Refusal, version: int | None, now: datetime) -> None:
        posture = att.posture_of(req.kind)
        agent_id = ctx.sender.subject_id
        message = refusal.message[:1000]
        await store.insert_result(
            uow.conn, id=result_id, tenant=ctx.tenant, agent_id=agent_id, kind=req.kind, posture=posture,
            verified=False, key_id=ctx.sender.key_id, created_at=now, evidence=req.evidence, reason=refusal.reason,
            message=message, challenge_id=req.challenge_id, reference_version=version)
        if refusal.posture_ended:
            await store.end_posture(uow.conn, tenant=ctx.tenant, agent_id=agent_id, posture=posture, before=now)
        await uow.emit(sub.ATTESTATION_FAILED, ctx.tenant, att.AttestationFailed(
            result_id=result_id, agent_id=agent_id, kind=req.kind, posture=posture, reason=refusal.reason,
            message=message, challenge_id=req.challenge_id, posture_ended=refusal.posture_ended, at=now))

    # -- posture ---------------------------------------------------------------------------------
    async def posture(self, req: att.GetPosture, ctx: Context) -> att.Posture:
        sender = ctx.sender
        if sender.kind == "agent" and sender.subject_id != req.agent_id:
            raise Forbidden("an agent may read only its own posture")
        if sender.kind == "orchestrator":
            row = await self.directory.get(self.pool, req.agent_id)
            if row is None or row["tenant"] != ctx.tenant or row["orchestrator_id"] != sender.subject_id:
                raise Forbidden("an orchestrator may read only its own agents' posture")
        now = _now()
        held = {r["posture"]: att.PostureEntry(
            result_id=r["result_id"], kind=r["kind"], verified_at=r["verified_at"], expires_at=r["expires_at"],
            artifacts=list(r["artifacts"])) for r in await store.postures(self.pool, ctx.tenant, req.agent_id, now)}
        return att.Posture(agent_id=req.agent_id, tee=held.get("tee"), supply_chain=held.get("supply_chain"),
                           as_of=now)

    # -- reference values ------------------------------------------------------------------------
    async def set_reference(self, req: att.SetReferenceValues, ctx: Context) -> att.ReferenceValuesRecord:
        try:
            document = normalised(parse_reference(req.document))
        except ValueError as exc:
            raise InvalidRequest(f"reference values: {exc}"[:1000]) from exc
        digest = reference_digest(document)
        now = _now()
        async with self.unit_of_work(ctx) as uow:
            await store.lock_reference(uow.conn, ctx.tenant)
            current = await store.current_reference(uow.conn, ctx.tenant)
            version = current["version"] if current is not None else 0
            if req.expected_version is not None and req.expected_version != version:
                raise Conflict(f"reference values are at version {version}, not {req.expected_version}")
            row = await store.insert_reference(uow.conn, tenant=ctx.tenant, version=version + 1, document=document,
                                               digest=digest, set_by=ctx.sender.sender, set_at=now)
            await uow.emit(sub.REFERENCE_VALUES_UPDATED, ctx.tenant, att.ReferenceValuesUpdated(
                tenant=ctx.tenant, version=version + 1, digest=digest, set_by=ctx.sender.sender, at=now))
        return _record(row)

    async def list_reference(self, req: att.ListReferenceValues, ctx: Context) -> att.ReferenceValuesList:
        current = await store.current_reference(self.pool, ctx.tenant)
        versions = await store.reference_versions(self.pool, ctx.tenant, req.limit)
        return att.ReferenceValuesList(
            current=_record(current) if current is not None else None,
            versions=[att.ReferenceValuesVersion(version=r["version"], digest=r["digest"], set_by=r["set_by"],
                                                 set_at=r["set_at"]) for r in versions])


def _record(row: asyncpg.Record) -> att.ReferenceValuesRecord:
    return att.ReferenceValuesRecord(tenant=row["tenant"], version=row["version"], document=row["document"],
                                     digest=row["digest"], set_by=row["set_by"], set_at=row["set_at"])


__all__ = ["AttestationWorker", "UnsafeTestAnchors", "bounded_claims"]
