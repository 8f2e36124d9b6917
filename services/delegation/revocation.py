"""Revocation: a link and everything below it, in one transaction, told in one event.

Who may revoke (UCAN 0.10 section 6.6): the issuer of the link or of any ancestor, by a signed
revocation record; an operator, for whom the chain's root issuer (the tenant authority) signs the
record; and registration, implicitly, when an agent exits (every link to or from it). The cascade
follows the recorded graph: every unrevoked descendant is revoked with the link. Revocations are
append-only. Consistency: `delegation.check` reads the store, so a chain is refused from the
moment the revocation commits; verifiers hear of it from `evt.delegation.revoked` (relayed from
the outbox as soon as the transaction commits) and drop every token naming one of its CIDs.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import UTC, datetime

import asyncpg

from contracts import delegation as dlg
from contracts import subjects as sub
from services.delegation import store
from services.delegation.authority import Authorities
from shared import ucan
from shared.outbox import UnitOfWork


async def authority_record(conn: asyncpg.Connection, authorities: Authorities, tenant: str,
                           row: asyncpg.Record) -> dict[str, str] | None:
    """A revocation record for link `row`, signed by its chain's root issuer when that is one of the
    tenant's authorities (the root issuer is an ancestor issuer of every link, so it may revoke)."""
    key = await authorities.by_did(conn, tenant, row["root_did"])
    return None if key is None else ucan.revocation(key, row["cid"])


async def cascade(uow: UnitOfWork, tenant: str, direct: Sequence[str], records: Mapping[str, dict[str, str] | None],
                  *, by: str, reason: str) -> list[str]:
    """Revoke the links `direct` and every unrevoked link below them; emit `delegation.revoked`.

    The caller holds the tenant's graph lock exclusively. Returns the CIDs revoked now, root-most
    first (empty when everything was revoked already: then nothing is written or emitted).
    """
    rows = await store.unrevoked_descendants(uow.conn, tenant, direct)
    rows.sort(key=lambda r: (r["depth"], r["cid"]))
    if not rows:
        return []
    cids = [r["cid"] for r in rows]
    await store.insert_revocations(uow.conn, tenant, [
        (r["cid"], r["cause"], records.get(r["cid"]) if r["cid"] == r["cause"] else None, by, reason) for r in rows])
    at = datetime.now(UTC)
    await store.mark_revoked(uow.conn, tenant, cids, at)
    named = set(direct)
    size = dlg.MAX_CIDS_PER_EVENT
    parts = (len(cids) + size - 1) // size
    for i in range(parts):
        chunk = cids[i * size:(i + 1) * size]
        await uow.emit(sub.DELEGATION_REVOKED, tenant, dlg.DelegationRevoked(
            cids=chunk, direct=[c for c in chunk if c in named], by=by, reason=reason, at=at,
            part=i + 1, parts=parts))
    return cids
