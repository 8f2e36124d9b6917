"""A tenant's delegation rules: which base capabilities an agent's root carries, and the depth limit.

Policy (Cedar) decides one request at a time and cannot enumerate what an agent may hold, so the
capabilities a root UCAN grants are configured explicitly: each `BaseCapabilities` entry applies
to the agents of its tiers and purposes (an empty list matches any), and an agent's root carries
the union of the entries that match it. Token issuance still evaluates policy on every token, so a
root never lets an agent do more than policy allows; it bounds what the agent can delegate.
"""

from __future__ import annotations

from collections.abc import Sequence

from contracts import delegation as dlg
from shared import capabilities as caps
from shared import ucan
from shared.errors import InvalidRequest


def check(config: dlg.DelegationConfig) -> None:
    """Refuse rules that could not be issued as a UCAN. Raises `InvalidRequest`."""
    every: list[caps.Capability] = []
    for i, entry in enumerate(config.base):
        every.extend(_parse(entry.capabilities, f"base[{i}]"))
    merged = caps.canonical(every)
    if len(merged) > caps.MAX_CAPABILITIES:
        raise InvalidRequest(f"the base capabilities add up to more than {caps.MAX_CAPABILITIES}")
    try:
        caps.to_ucan(merged)
    except caps.CapabilityError as exc:
        raise InvalidRequest(f"base capabilities cannot be a UCAN: {exc}") from exc


def base_capabilities(config: dlg.DelegationConfig, *, tier: str, purpose: str) -> list[caps.Capability]:
    """The capabilities of an agent's root: the union of every entry matching its tier and purpose."""
    found: list[caps.Capability] = []
    for i, entry in enumerate(config.base):
        if (not entry.tiers or tier in entry.tiers) and (not entry.purposes or purpose in entry.purposes):
            found.extend(_parse(entry.capabilities, f"base[{i}]"))
    # Identical entries from several rules collapse; distinct ones stay alternatives (never merged
    # into one wider capability: `canonical` only joins actions under identical scope and caveats).
    unique = list(dict.fromkeys(caps.canonical(found)))
    return unique


def _parse(details: Sequence[dict], where: str) -> list[caps.Capability]:
    try:
        return [caps.from_rar(d) for d in details]
    except caps.CapabilityError as exc:
        raise InvalidRequest(f"{where}: {exc}") from exc


def rar(capabilities: Sequence[caps.Capability]) -> list[dict]:
    return [caps.to_rar(c) for c in capabilities]


def max_depth(config: dlg.DelegationConfig) -> int:
    return min(config.max_depth, ucan.MAX_CHAIN_LENGTH)
