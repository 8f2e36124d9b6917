"""Private reply inboxes: who may read the replies sent to whom.

A request's reply goes to the requester's inbox subject. With nats-py's default `_INBOX.<random>`
every user allowed `_INBOX.>` could read every reply on the bus (tokens, credentials, SVIDs). So
each party connects with its own inbox prefix, and its NATS user may subscribe only below it
(`services/bus_permissions.py` writes those permissions):

    _INBOX.<root>.service.<worker>                     a worker (all its replicas)
    _INBOX.<root>.operator.<name>                      an operator (the deployment admin)
    _INBOX.<root>.tenant.<tenant>.<kind>[.<id>]        an orchestrator, agent or verifier of a tenant

The third token tells the three apart, so no tenant name can collide with a service's inbox. The
party's own id (orchestrator or agent id), where there is one, ends the prefix: a deployment that
gives each agent its own NATS user (decentralised JWT auth) can then pin each to its own inbox.
"""

from __future__ import annotations

from contracts.subjects import check_token

PARTY_KINDS = ("orchestrator", "agent", "verifier")


def service_inbox(root: str, service: str) -> str:
    return f"_INBOX.{check_token(root)}.service.{check_token(service)}"


def operator_inbox(root: str, name: str = "admin") -> str:
    return f"_INBOX.{check_token(root)}.operator.{check_token(name)}"


def party_inbox(root: str, tenant: str, kind: str, party_id: str | None = None) -> str:
    if kind not in PARTY_KINDS:
        raise ValueError(f"not a tenant party kind: {kind!r}")
    prefix = f"_INBOX.{check_token(root)}.tenant.{check_token(tenant)}.{kind}"
    return prefix if party_id is None else f"{prefix}.{check_token(party_id)}"
