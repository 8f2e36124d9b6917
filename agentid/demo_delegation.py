"""The demo's delegation step: a chain from the tenant authority to the loan agent to a research
agent, checked, then revoked, with what fails afterwards.

The tenant's rules give loan agents (tier high, purpose loan-decisions) read access to the loan
ledger; the loan agent's root UCAN carries exactly that. It hands one loan file to the research
agent with a UCAN signed by its own key. Two hooks let the token step join in: `mint` turns the
research agent's chain into an access token (report `token`), and `after_revocation` says what
became of that token once the link was revoked (merged into `revoked_after`).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

from agentid import delegation
from agentid.agent import Agent
from contracts import delegation as dlg
from contracts import subjects as sub
from shared.errors import DelegationInvalid

if TYPE_CHECKING:
    from agentid.demo import DemoContext

LEDGER = "https://ledger.bank.example"
LOANS = {"type": "ledger", "locations": [f"{LEDGER}/loans/*"], "actions": ["read"]}
ONE_LOAN = {"type": "ledger", "locations": [f"{LEDGER}/loans/L-1001"], "actions": ["read"]}
DEMO_DELEGATION_CONFIG = dlg.DelegationConfig(max_depth=5, base=[
    dlg.BaseCapabilities(tiers=["high"], purposes=["loan-decisions"], capabilities=[LOANS]),
])

Mint = Callable[[Agent, delegation.Delegation], Awaitable[str]]
AfterRevocation = Callable[[Agent, delegation.Delegation, "str | None"], Awaitable[dict[str, Any]]]


async def delegation_step(ctx: DemoContext, *, mint: Mint | None = None,
                          after_revocation: AfterRevocation | None = None) -> delegation.Delegation:
    """Fill `ctx.report["delegation"]`: `chain` (UCAN JWTs, root first), `token` (with `mint`),
    `revoked_after`. Uses `ctx.agents[0]` (the loan agent) and `ctx.agents[1]` (the research agent)."""
    loan, research = ctx.agents[0], ctx.agents[1]
    tenant = loan.tenant
    rules = await ctx.operator.request(sub.DELEGATION_CONFIG_SET, tenant,
                                       dlg.SetDelegationConfig(config=DEMO_DELEGATION_CONFIG))
    authority = await ctx.operator.request(sub.DELEGATION_AUTHORITY, tenant, dlg.GetAuthority())
    ctx.say(f"Delegation rules v{rules.version}: loan agents may pass on reads of {LOANS['locations'][0]}; "
            f"tenant authority {authority.did}")
    # The demo's agents registered before the rules existed, so the root is issued on first request.
    root = await delegation.root(loan)
    link = await delegation.delegate(loan, research.did, [ONE_LOAN], 300, parent=root)
    checked = await delegation.check(research, link)
    ctx.say(f"{loan.agent_id} delegated read of {ONE_LOAN['locations'][0]} to {research.agent_id} "
            f"(UCAN {link.cid}, depth {checked.depth} of at most {checked.max_depth})")
    report: dict[str, Any] = {"chain": list(link.chain), "cids": checked.cids, "depth": checked.depth,
                              "authority_did": authority.did}
    ctx.report["delegation"] = report
    token = None
    if mint is not None:
        token = await mint(research, link)
        report["token"] = token

    report["revoked_after"] = await _revoke(ctx, loan, research, link)
    if after_revocation is not None:
        report["revoked_after"].update(await after_revocation(research, link, token))
    return link


async def _revoke(ctx: DemoContext, loan: Agent, research: Agent, link: delegation.Delegation) -> dict[str, Any]:
    """The loan agent revokes its link; the revocation event and the refusals that follow."""
    heard = asyncio.Event()

    async def on_revoked(msg: Any) -> None:
        heard.set()

    watch = await ctx.operator.nc.subscribe(sub.DELEGATION_REVOKED.subject(loan.tenant, ctx.operator.root),
                                            cb=on_revoked)
    try:
        started = time.monotonic()
        result = await delegation.revoke(loan, link.cid, reason="demo: task finished")
        await asyncio.wait_for(heard.wait(), 10)
        event_ms = round((time.monotonic() - started) * 1000, 1)
    finally:
        await watch.unsubscribe()
    try:
        await delegation.check(research, link)
        check = "still valid (unexpected)"
    except DelegationInvalid as exc:
        check = (exc.detail or {}).get("reason", exc.code.value)
    ctx.say(f"{loan.agent_id} revoked {link.cid}: evt.delegation.revoked after {event_ms} ms; "
            f"the chain now fails with {check!r}")
    return {"revoked_cids": result.cids, "event_ms": event_ms, "chain_check": check}
