"""Delegation: UCAN 0.10 chains between agents, recorded as a graph, checked and revoked.

A chain is a list of UCAN JWTs, root first. The root link is issued by a trusted root (the
tenant's delegation authority, a did:key the delegation worker holds) to an agent; each next link
is issued by the previous link's audience and names its parent's CID in `prf`.

**Depth** is the number of links: the root link has depth 1, so tenant -> A -> B -> C -> D -> E
is depth 5. The tenant's `DelegationConfig.max_depth` (default 5) bounds it when a link is
granted and whenever a chain is checked; tokens carry the depth so verifiers enforce it too.

A refusal is the `delegation_invalid` error with `detail = {"reason": <reason>}`, one reason per
refusal: the `shared.ucan` codes (bad_signature, expired, not_yet_valid, time_not_nested,
broken_link, widened, depth_exceeded, untrusted_root, revoked, malformed, wrong_audience,
not_in_chain) and three of the graph's own:

  not_recorded    a link of the chain (other than the one being granted) was never granted here
  unknown_agent   a principal below the root is not an agent of this tenant
  agent_inactive  an agent on the chain has exited, been revoked or expired
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

import msgspec

from contracts.types import Id, Jws, Key, Name, Natural, Struct, Text, Token, Uri, anchored

# Canonical UCAN CID: CIDv1, raw codec, sha2-256, base32 lower-case ("bafkrei...").
Cid = Annotated[str, msgspec.Meta(pattern=anchored(r"b[a-z2-7]{58}"))]
# A did:key (multibase base58btc); UCAN principals here are always did:key, without fragment.
Did = Annotated[str, msgspec.Meta(pattern=anchored(r"did:key:z[1-9A-HJ-NP-Za-km-z]{1,120}"))]
Detail = Annotated[dict[Key, Any], msgspec.Meta(max_length=16)]  # one RFC 9396 authorization detail
Details = Annotated[list[Detail], msgspec.Meta(max_length=32)]
Depth = Annotated[int, msgspec.Meta(ge=1, le=16)]  # links in a chain (ucan.MAX_CHAIN_LENGTH)
Chain = Annotated[list[Jws], msgspec.Meta(min_length=1, max_length=16)]  # root first
# Seconds since the epoch, as in UCAN `nbf` / `exp`; None for `exp` means "never".
Epoch = Annotated[int, msgspec.Meta(ge=0, le=253_402_300_799)]
Cids = Annotated[list[Cid], msgspec.Meta(max_length=10_000)]  # a cascade, as a reply lists it
Path = Annotated[list[Did], msgspec.Meta(max_length=17)]  # the root issuer, then each audience

REASONS = (
    "bad_signature", "expired", "not_yet_valid", "time_not_nested", "broken_link", "widened",
    "depth_exceeded", "untrusted_root", "revoked", "malformed", "wrong_audience", "not_in_chain",
    "not_recorded", "unknown_agent", "agent_inactive",
)

LinkStatus = Literal["active", "revoked"]
# A revocation event carries at most this many CIDs; a larger cascade is split into parts.
MAX_CIDS_PER_EVENT = 500


# -- configuration (operators) ---------------------------------------------------------------------
class BaseCapabilities(Struct, kw_only=True):
    """Capabilities the tenant authority grants at registration to every agent that matches: of one
    of `tiers` (any tier when empty) and of one of `purposes` (any purpose when empty)."""

    tiers: Annotated[list[Token], msgspec.Meta(max_length=32)] = []
    purposes: Annotated[list[Name], msgspec.Meta(max_length=64)] = []
    capabilities: Annotated[list[Detail], msgspec.Meta(min_length=1, max_length=32)]


class DelegationConfig(Struct, kw_only=True):
    """A tenant's delegation rules. An agent's root capabilities are the union of every matching
    `base` entry (at most 32 capabilities in all); an agent matching none gets no root."""

    max_depth: Annotated[int, msgspec.Meta(ge=1, le=16)] = 5
    base: Annotated[list[BaseCapabilities], msgspec.Meta(max_length=64)] = []


class SetDelegationConfig(Struct, kw_only=True):
    config: DelegationConfig


class GetDelegationConfig(Struct, kw_only=True):
    pass


class DelegationConfigRecord(Struct, kw_only=True):
    version: Natural  # 0: never set (the defaults)
    config: DelegationConfig


class GetAuthority(Struct, kw_only=True):
    pass


class RotateAuthority(Struct, kw_only=True):
    reason: Text = "scheduled rotation"


class AuthorityRecord(Struct, kw_only=True):
    """The tenant's delegation authority: the DID new roots are issued from, and every root DID a
    verifier should trust now (retired authorities stay while roots they issued may be valid)."""

    did: Did
    trusted_roots: Annotated[list[Did], msgspec.Meta(max_length=256)]  # one per authority key still trusted


# -- links -----------------------------------------------------------------------------------------
class GrantDelegation(Struct, kw_only=True):
    """Record a new link. `chain` is the whole chain, root first; its last UCAN is the new link,
    signed by the sending agent (or submitted by an operator); every earlier link must already be
    recorded here. Granting a recorded link again returns its record (idempotent by CID)."""

    chain: Chain


class GetChain(Struct, kw_only=True):
    cid: Cid


class GetRoot(Struct, kw_only=True):
    """An agent's root UCAN (the calling agent's when `agent_id` is None; operators name one).
    Issued on first request if registration has not led to one yet and the config grants any."""

    agent_id: Id | None = None


class DelegationRecord(Struct, kw_only=True):
    """One recorded link and the chain that proves it (root first, ending with this link)."""

    cid: Cid
    parent: Cid | None = None
    depth: Depth
    issuer_did: Did
    audience_did: Did
    issuer_agent_id: Id | None = None  # None: a root, issued by the tenant authority
    audience_agent_id: Id
    capabilities: Details  # RFC 9396 objects (shared.capabilities.to_rar)
    not_before: Epoch | None = None
    expires: Epoch | None = None
    status: LinkStatus
    granted_at: datetime
    revoked_at: datetime | None = None
    chain: Chain


# -- checking (the token worker, agents) -------------------------------------------------------------
class CheckChain(Struct, kw_only=True):
    """Is this chain valid now for `holder_did`? Give the JWTs (root first) or the leaf's CID (the
    recorded chain is used). An agent may check only chains it holds."""

    chain: Chain | None = None
    leaf_cid: Cid | None = None
    holder_did: Did


class ChainCheck(Struct, kw_only=True):
    depth: Depth
    max_depth: Depth  # the tenant's limit the chain was checked against
    root: Did
    holder: Did
    capabilities: Details  # the holder's: the leaf's, RFC 9396 objects
    cids: Annotated[list[Cid], msgspec.Meta(max_length=16)]  # root first
    path: Path  # root issuer, then every audience down to the holder
    agent_ids: Annotated[list[Id], msgspec.Meta(max_length=16)]  # the agents on the path below the root, holder last
    not_before: Epoch | None = None
    expires: Epoch | None = None


# -- revocation ------------------------------------------------------------------------------------
class RevocationRecord(Struct, kw_only=True):
    """UCAN 0.10 section 6.6: `challenge` = base64url(sign(iss key, "REVOKE:" + revoke))."""

    iss: Did
    revoke: Cid
    challenge: Annotated[str, msgspec.Meta(pattern=anchored(r"[A-Za-z0-9_-]{86}"))]


class RevokeDelegation(Struct, kw_only=True):
    """Revoke link `cid` and everything below it. Anyone may submit a `record` signed by the
    link's issuer or an ancestor's issuer; an operator may revoke without one (the tenant
    authority, the chain's root issuer, then signs the record)."""

    cid: Cid
    record: RevocationRecord | None = None
    reason: Text = "revoked"


class DelegationRevocation(Struct, kw_only=True):
    cid: Cid
    cids: Cids  # every CID that became invalid now: the link, then its descendants
    already_revoked: bool = False


class ListRevocations(Struct, kw_only=True):
    after: Natural = 0  # cursor: the last `seq` already seen
    limit: Annotated[int, msgspec.Meta(ge=1, le=500)] = 100


class RevocationEntry(Struct, kw_only=True):
    """One revoked CID. `cause` is the link whose revocation invalidated it (itself when it was
    revoked directly); `record` is the signed UCAN revocation, on direct revocations only."""

    seq: Natural
    cid: Cid
    cause: Cid
    record: RevocationRecord | None = None
    by: Uri
    reason: Text
    at: datetime


class RevocationList(Struct, kw_only=True):
    revocations: Annotated[list[RevocationEntry], msgspec.Meta(max_length=500)]  # ListRevocations.limit
    next_after: Natural | None = None


# -- the graph -------------------------------------------------------------------------------------
class GetGraph(Struct, kw_only=True):
    """The tenant's delegation graph, or (`agent_id`) the part of it on chains through one agent."""

    agent_id: Id | None = None
    include_revoked: bool = True
    limit: Annotated[int, msgspec.Meta(ge=1, le=2000)] = 500


class GraphNode(Struct, kw_only=True):
    did: Did
    kind: Literal["authority", "agent", "external"]
    agent_id: Id | None = None
    label: Text = ""


class GraphEdge(Struct, kw_only=True):
    cid: Cid
    parent: Cid | None = None
    issuer: Did
    audience: Did
    depth: Depth
    capabilities: Details
    expires: Epoch | None = None
    status: LinkStatus


class DelegationGraph(Struct, kw_only=True):
    nodes: Annotated[list[GraphNode], msgspec.Meta(max_length=4001)]  # each edge's two ends, and the authority
    edges: Annotated[list[GraphEdge], msgspec.Meta(max_length=2000)]  # GetGraph.limit
    truncated: bool = False


# -- events ----------------------------------------------------------------------------------------
class DelegationGranted(Struct, kw_only=True):
    cid: Cid
    parent: Cid | None = None
    issuer_did: Did
    audience_did: Did
    issuer_agent_id: Id | None = None  # None: a root from the tenant authority
    audience_agent_id: Id
    depth: Depth
    capabilities: Details
    not_before: Epoch | None = None
    expires: Epoch | None = None


class DelegationRevoked(Struct, kw_only=True):
    """One revocation: every CID that became invalid (the revoked links and all their descendants).
    Verifiers drop every token whose delegation names one of `cids`. A cascade larger than
    `MAX_CIDS_PER_EVENT` CIDs comes as `parts` events, numbered by `part`."""

    cids: Annotated[list[Cid], msgspec.Meta(max_length=MAX_CIDS_PER_EVENT)]
    direct: Annotated[list[Cid], msgspec.Meta(max_length=MAX_CIDS_PER_EVENT)]  # the links revoked by name (or touching an exited agent)
    by: Uri  # the revoker: a record's iss DID, an operator's SPIFFE ID, or who ended the agent
    reason: Text
    at: datetime
    part: Annotated[int, msgspec.Meta(ge=1, le=2**31)] = 1
    parts: Annotated[int, msgspec.Meta(ge=1, le=2**31)] = 1


class DelegationConfigUpdated(Struct, kw_only=True):
    version: Natural
    max_depth: Depth
    at: datetime
