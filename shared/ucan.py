"""UCAN 0.10 delegation tokens: issue, parse, verify a chain, revoke.

A UCAN here is a compact JWS (`alg` EdDSA or ES256, `typ` "JWT") whose payload is `ucv` "0.10.0",
`iss` and `aud` (did:key, no fragment), `nbf` (optional), `exp` (int or null, always written),
`nnc`, `fct` (optional), `cap` (`shared.capabilities.to_ucan`) and `prf` (canonical CIDs of the
parent UCANs). Nothing else is accepted in header or payload.

A chain is given root first. The root is issued by a trusted root (the tenant authority, or a user
via token exchange) to the first delegate; each next link is issued by the previous link's
audience. **Depth** is the number of links: the root link has depth 1, so tenant -> A -> B -> C ->
D -> E is five links and depth 5, and `max_depth` bounds how many agents may stand below the root.

`verify_chain` checks, for every link (UCAN 0.10 section 6), and refuses with its own code:

  depth_exceeded   more links than `max_depth`
  untrusted_root   the root link's `iss` is not a trusted root
  wrong_audience   the outermost `aud` is not `audience_did` (the principal presenting the chain,
                   whose own signature the caller has checked, or the verifier itself)
  malformed        a link that does not parse (shape, types, sizes, version, algorithm)
  bad_signature    a link not signed by its `iss` key (or `alg` not that key's algorithm)
  revoked          a link's CID is revoked
  expired          now > exp + leeway, for any link
  not_yet_valid    now + leeway < nbf, for any link
  broken_link      a parent's `aud` is not its child's `iss`, or the child's `prf` lacks the parent CID
  time_not_nested  a child's [nbf, exp] is not inside its parent's (exact, no leeway)
  widened          a child's capabilities are not attenuated from its parent's

Not checked here: replay of the outermost token (the spec's "unseen CID"), which needs state; use
`VerifiedChain.cids[-1]` against a seen-store where a chain is invoked rather than presented.
"""

from __future__ import annotations

import base64
import hashlib
import re
from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import dataclass, field
from functools import lru_cache
from itertools import pairwise
from typing import Any

from shared import jose
from shared.b64 import Base64Error, b64u_decode, b64u_encode
from shared.capabilities import (
    Capability,
    CapabilityError,
    attenuated,
    from_ucan,
    to_ucan,
)
from shared.keys import InvalidKey, PrivateKey, PublicKey

__all__ = [
    "ALGORITHMS",
    "CODES",
    "DEFAULT_LEEWAY",
    "MAX_CHAIN_LENGTH",
    "MAX_LEEWAY",
    "MAX_NONCE_LENGTH",
    "MAX_PROOFS",
    "MAX_UCAN_BYTES",
    "UCAN_VERSION",
    "DelegationError",
    "Ucan",
    "VerifiedChain",
    "cid",
    "issue",
    "parse",
    "revocation",
    "verify_chain",
    "verify_revocation",
]

UCAN_VERSION = "0.10.0"
ALGORITHMS: tuple[str, ...] = ("EdDSA", "ES256")  # asymmetric only; never `none`, never HMAC
TYP = "JWT"
MAX_UCAN_BYTES = jose.MAX_TOKEN_BYTES
MAX_PROOFS = 8
MAX_CHAIN_LENGTH = 16  # the largest max_depth a verifier may ask for
MAX_NONCE_LENGTH = 128
MAX_DID_LENGTH = 128
DEFAULT_LEEWAY = 60  # seconds, as UCAN 0.10 section 3.2.3 recommends
MAX_LEEWAY = 300
MAX_TIMESTAMP = 253_402_300_799

CODES = frozenset(
    {
        "bad_signature",
        "expired",
        "not_yet_valid",
        "time_not_nested",
        "broken_link",
        "widened",
        "depth_exceeded",
        "untrusted_root",
        "revoked",
        "malformed",
        "wrong_audience",
        "not_in_chain",  # verify_revocation: the revoker is not an issuer in the revoked token's chain
    }
)

# Canonical CID (section 6.5.1): CIDv1, raw codec 0x55, sha2-256, base32 lower-case with `b` prefix.
_CID_PREFIX = bytes([0x01, 0x55, 0x12, 0x20])
# 36 bytes are 288 bits, 58 base32 characters 290: the last character's two low bits are padding
# and must be zero (one CID, one spelling), so it is one of the eight that end in 00.
_CID = re.compile(r"b[a-z2-7]{57}[aeimquy4]")  # used with fullmatch: no trailing "\n"
_HEADER_FIELDS = frozenset({"alg", "typ"})
_PAYLOAD_FIELDS = frozenset({"ucv", "iss", "aud", "nbf", "exp", "nnc", "fct", "cap", "prf"})
_REQUIRED_FIELDS = ("ucv", "iss", "aud", "exp", "cap")


class DelegationError(ValueError):
    """A UCAN or chain that must not be trusted. `code` is one of `CODES`."""

    def __init__(self, code: str, message: str | None = None) -> None:
        if code not in CODES:
            raise ValueError(f"unknown delegation error code {code!r}")
        super().__init__(message or code)
        self.code = code


@dataclass(frozen=True, slots=True)
class Ucan:
    """A parsed (not verified) UCAN."""

    jwt: str = field(repr=False)
    cid: str
    alg: str
    iss: str
    aud: str
    nbf: int | None
    exp: int | None
    nnc: str | None
    fct: Mapping[str, Any] | None = field(compare=False)
    capabilities: tuple[Capability, ...]
    prf: tuple[str, ...]
    signing_input: bytes = field(repr=False, compare=False)
    signature: bytes = field(repr=False, compare=False)


@dataclass(frozen=True, slots=True)
class VerifiedChain:
    """A chain that passed `verify_chain`. The outermost link says what the holder may do."""

    links: tuple[Ucan, ...]

    @property
    def depth(self) -> int:
        return len(self.links)

    @property
    def root(self) -> str:
        """The trusted root issuer."""
        return self.links[0].iss

    @property
    def holder(self) -> str:
        """The outermost audience: the principal the chain delegates to (`audience_did`)."""
        return self.links[-1].aud

    @property
    def capabilities(self) -> tuple[Capability, ...]:
        """The holder's capabilities: the outermost link's, each within every link above."""
        return self.links[-1].capabilities

    @property
    def not_before(self) -> int | None:
        return self.links[-1].nbf

    @property
    def expires(self) -> int | None:
        return self.links[-1].exp

    @property
    def cids(self) -> tuple[str, ...]:
        return tuple(link.cid for link in self.links)

    @property
    def path(self) -> tuple[str, ...]:
        """Every principal, root issuer first, holder last (for audit entries and trace spans)."""
        return (self.links[0].iss, *(link.aud for link in self.links))

    def issuers_up_to(self, cid_: str) -> frozenset[str]:
        """The issuers allowed to revoke link `cid_`: its own issuer and those of its ancestors."""
        for i, link in enumerate(self.links):
            if link.cid == cid_:
                return frozenset(x.iss for x in self.links[: i + 1])
        raise DelegationError("malformed", "that CID is not in this chain")


# -- content address -----------------------------------------------------------------------------------
def cid(jwt: str) -> str:
    """The canonical CID of a UCAN: `b` + base32(0x01 0x55 0x12 0x20 || sha256(JWT bytes)), lower-case."""
    if not isinstance(jwt, str) or not jwt.isascii():
        raise DelegationError("malformed", "a JWT is ASCII text")
    return _cid_of_digest(hashlib.sha256(jwt.encode("ascii")).digest())


def _check_cid(value: object) -> str:
    if not isinstance(value, str) or not _CID.fullmatch(value):
        raise DelegationError("malformed", "not a canonical CID (CIDv1, raw, sha2-256, base32)")
    raw = base64.b32decode(value[1:].upper() + "======")
    if raw[:4] != _CID_PREFIX or len(raw) != 36:
        raise DelegationError("malformed", "not a canonical CID (CIDv1, raw, sha2-256, base32)")
    return value


def _cid_of_digest(digest: bytes) -> str:
    return "b" + base64.b32encode(_CID_PREFIX + digest).decode("ascii").lower().rstrip("=")


# -- issue -----------------------------------------------------------------------------------------------
def issue(
    issuer: PrivateKey,
    audience_did: str,
    capabilities: Sequence[Capability],
    *,
    expires: int | None,
    not_before: int | None = None,
    proofs: Sequence[str] = (),
    nonce: str | None = None,
    facts: Mapping[str, Any] | None = None,
) -> str:
    """Sign a UCAN from `issuer` to `audience_did`. `proofs` are the parent UCAN JWTs; their CIDs go in `prf`.

    `expires` is required: an int, or None to write `"exp": null` (never expires) on purpose.
    Issuing does not check attenuation against the proofs; `verify_chain` does. Raises
    `DelegationError("malformed")` for arguments that would not make a valid UCAN.
    """
    if not isinstance(issuer, PrivateKey):
        raise TypeError("issuer is a PrivateKey")
    _did(audience_did)
    if expires is not None:
        _time(expires, "exp")
    if not_before is not None:
        _time(not_before, "nbf")
        if expires is not None and not_before > expires:
            raise DelegationError("malformed", "nbf is after exp")
    if isinstance(proofs, str) or len(proofs) > MAX_PROOFS:
        raise DelegationError("malformed", f"proofs is a list of at most {MAX_PROOFS} UCAN JWTs")
    try:
        cap = to_ucan(list(capabilities))
    except CapabilityError as exc:
        raise DelegationError("malformed", str(exc)) from exc
    claims: dict[str, Any] = {"ucv": UCAN_VERSION, "iss": issuer.public.did, "aud": audience_did}
    if not_before is not None:
        claims["nbf"] = not_before
    claims["exp"] = expires
    if nonce is not None:
        claims["nnc"] = nonce
    if facts is not None:
        claims["fct"] = dict(facts)
    claims["cap"] = cap
    claims["prf"] = [parse(p).cid for p in proofs]
    token = jose.sign(claims, issuer, typ=TYP)
    parse(token)  # never hand out a token our own verifier would refuse to read
    return token


# -- parse -----------------------------------------------------------------------------------------------
def parse(jwt: str) -> Ucan:
    """Parse a UCAN strictly, without verifying it. Raises `DelegationError("malformed")`."""
    if not isinstance(jwt, str) or not jwt.isascii() or len(jwt) > MAX_UCAN_BYTES:
        raise DelegationError("malformed", f"a UCAN is ASCII, at most {MAX_UCAN_BYTES} bytes")
    try:
        header, payload, signature = jose.split(jwt)
    except jose.JoseError as exc:
        raise DelegationError("malformed", str(exc)) from exc
    except RecursionError as exc:  # deeply nested JSON: the decoder gives up before the size bound
        raise DelegationError("malformed", "JSON nested too deeply") from exc
    if set(header) != _HEADER_FIELDS:
        raise DelegationError("malformed", "the header is exactly alg and typ")
    if header["alg"] not in ALGORITHMS:
        raise DelegationError("malformed", f"alg must be one of {', '.join(ALGORITHMS)}")
    if header["typ"] != TYP:
        raise DelegationError("malformed", 'typ must be "JWT"')
    unknown = set(payload) - _PAYLOAD_FIELDS
    if unknown:
        raise DelegationError("malformed", f"unknown payload fields {sorted(unknown)[:5]}")
    missing = [name for name in _REQUIRED_FIELDS if name not in payload]
    if missing:
        raise DelegationError("malformed", f"missing {', '.join(missing)}")
    if payload["ucv"] != UCAN_VERSION:
        raise DelegationError("malformed", f"ucv must be {UCAN_VERSION}")
    nbf = _time(payload["nbf"], "nbf") if "nbf" in payload else None
    exp = None if payload["exp"] is None else _time(payload["exp"], "exp")
    if nbf is not None and exp is not None and nbf > exp:
        raise DelegationError("malformed", "nbf is after exp")
    nnc = payload.get("nnc")
    if nnc is not None and (not isinstance(nnc, str) or len(nnc) > MAX_NONCE_LENGTH):
        raise DelegationError("malformed", f"nnc is a string of at most {MAX_NONCE_LENGTH} characters")
    fct = payload.get("fct")
    if fct is not None and not isinstance(fct, dict):
        raise DelegationError("malformed", "fct is an object")
    try:
        capabilities = tuple(from_ucan(payload["cap"]))
    except CapabilityError as exc:
        raise DelegationError("malformed", str(exc)) from exc
    prf = payload.get("prf", [])
    if not isinstance(prf, list) or len(prf) > MAX_PROOFS:
        raise DelegationError("malformed", f"prf is a list of at most {MAX_PROOFS} CIDs")
    proofs = tuple(_check_cid(p) for p in prf)
    if len(set(proofs)) != len(proofs):
        raise DelegationError("malformed", "prf lists a CID twice")
    if len(signature) != 64:
        raise DelegationError("malformed", "the signature is 64 bytes")
    return Ucan(
        jwt=jwt,
        cid=cid(jwt),
        alg=header["alg"],
        iss=_did(payload["iss"]),
        aud=_did(payload["aud"]),
        nbf=nbf,
        exp=exp,
        nnc=nnc,
        fct=fct,
        capabilities=capabilities,
        prf=proofs,
        signing_input=jwt.rsplit(".", 1)[0].encode("ascii"),
        signature=signature,
    )


def _did(value: object) -> str:
    """A did:key in its one canonical spelling. Fragments are refused: a did:key has one key."""
    if not isinstance(value, str) or len(value) > MAX_DID_LENGTH or "#" in value:
        raise DelegationError("malformed", "a principal is a did:key without fragment")
    _key_of(value)
    return value


# Principals repeat along a chain and across chains; resolving a did:key (pure-Python base58) is
# the largest part of parsing, and a PublicKey is immutable, so a bounded cache is safe.
@lru_cache(maxsize=1024)
def _key_of(did: str) -> PublicKey:
    try:
        key = PublicKey.from_did(did)
    except InvalidKey as exc:
        raise DelegationError("malformed", f"not a usable did:key: {exc}") from exc
    # from_did tolerates some other spellings (e.g. trailing whitespace): accept only the canonical one.
    if key.did != did:
        raise DelegationError("malformed", "did:key is not in canonical form")
    return key


def _time(value: object, name: str) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or not 0 <= value <= MAX_TIMESTAMP:
        raise DelegationError("malformed", f"{name} is an integer number of seconds, 0..{MAX_TIMESTAMP}")
    return value


# -- verify ----------------------------------------------------------------------------------------------
def verify_chain(
    chain: Sequence[str],
    *,
    audience_did: str,
    trusted_roots: Collection[str],
    max_depth: int,
    now: float,
    revoked: Callable[[str], bool] | Collection[str],
    leeway: float = DEFAULT_LEEWAY,
) -> VerifiedChain:
    """Verify a delegation chain, root first, held by `audience_did`, at time `now` (epoch seconds).

    `revoked` is a set of revoked CIDs or a predicate on a CID. Raises `DelegationError(code)`;
    the codes and the order of the checks are in the module docstring (cheap checks first, so a
    chain that is not for us costs no signature verification).
    """
    if isinstance(chain, str) or not isinstance(chain, Sequence) or not chain:
        raise DelegationError("malformed", "a chain is a non-empty list of UCAN JWTs, root first")
    if not isinstance(max_depth, int) or not 1 <= max_depth <= MAX_CHAIN_LENGTH:
        raise ValueError(f"max_depth is 1..{MAX_CHAIN_LENGTH}")
    if not 0 <= leeway <= MAX_LEEWAY:
        raise ValueError(f"leeway is 0..{MAX_LEEWAY} seconds")
    # A bare string is a Collection too: as `revoked` it would revoke nothing, as `trusted_roots`
    # it would match substrings. Both fail open, so both are refused.
    _not_a_string(trusted_roots, "trusted_roots")
    _not_a_string(revoked, "revoked")
    is_revoked = revoked if callable(revoked) else frozenset(revoked).__contains__
    # Counted before parsing: a long chain is refused without parsing or verifying any of it.
    if len(chain) > max_depth:
        raise DelegationError("depth_exceeded", f"{len(chain)} links, at most {max_depth} allowed")
    links = tuple(parse(token) for token in chain)
    if links[0].iss not in trusted_roots:
        raise DelegationError("untrusted_root", "the root issuer is not trusted here")
    if links[-1].aud != audience_did:
        raise DelegationError("wrong_audience", "the outermost UCAN is not addressed to this verifier")
    for link in links:
        _verify_signature(link)
    for link in links:
        if is_revoked(link.cid):
            raise DelegationError("revoked", f"link {link.cid} is revoked")
    for link in links:
        if link.exp is not None and now > link.exp + leeway:
            raise DelegationError("expired", f"link {link.cid} has expired")
        if link.nbf is not None and now + leeway < link.nbf:
            raise DelegationError("not_yet_valid", f"link {link.cid} is not valid yet")
    for parent, child in pairwise(links):
        _check_link(parent, child)
    return VerifiedChain(links)


def _not_a_string(value: object, name: str) -> None:
    if isinstance(value, str | bytes):
        raise TypeError(f"{name} is a collection of strings, not one string")


def _verify_signature(link: Ucan) -> None:
    key = _key_of(link.iss)  # parse() already proved it resolves
    # The key decides the algorithm; a token naming another one is not signed by this key.
    if link.alg != key.alg or not key.verify(link.signature, link.signing_input):
        raise DelegationError("bad_signature", f"link {link.cid} is not signed by its issuer")


def _check_link(parent: Ucan, child: Ucan) -> None:
    if parent.aud != child.iss:
        raise DelegationError("broken_link", "a parent's audience is not its child's issuer")
    if parent.cid not in child.prf:
        raise DelegationError("broken_link", "a child does not name its parent in prf")
    # Time bounds nest exactly (section 6.1): a missing nbf is the epoch, a null exp is forever.
    if (parent.nbf or 0) > (child.nbf or 0) or (
        parent.exp is not None and (child.exp is None or child.exp > parent.exp)
    ):
        raise DelegationError("time_not_nested", "a child's time bounds are not inside its parent's")
    if not attenuated(list(child.capabilities), list(parent.capabilities)):
        raise DelegationError("widened", f"link {child.cid} claims more than its parent grants")


# -- revocation (section 6.6) ----------------------------------------------------------------------------
def revocation(issuer_key: PrivateKey, revoked_cid: str) -> dict[str, str]:
    """A revocation record: `{"iss", "revoke", "challenge": b64u(sign("REVOKE:" + cid))}`."""
    if not isinstance(issuer_key, PrivateKey):
        raise TypeError("issuer_key is a PrivateKey")
    _check_cid(revoked_cid)
    challenge = issuer_key.sign(f"REVOKE:{revoked_cid}".encode("ascii"))
    return {"iss": issuer_key.public.did, "revoke": revoked_cid, "challenge": b64u_encode(challenge)}


def verify_revocation(record: Mapping[str, Any], chain_issuers: Collection[str]) -> str:
    """Check a revocation record; return the revoked CID.

    `chain_issuers` are the issuers of the revoked UCAN and of its ancestors
    (`VerifiedChain.issuers_up_to(cid)`): only they may revoke it. Raises `DelegationError` with
    `malformed`, `not_in_chain` or `bad_signature`.
    """
    _not_a_string(chain_issuers, "chain_issuers")
    if not isinstance(record, Mapping) or set(record) != {"iss", "revoke", "challenge"}:
        raise DelegationError("malformed", "a revocation is exactly iss, revoke and challenge")
    issuer = _did(record["iss"])
    revoked_cid = _check_cid(record["revoke"])
    try:
        challenge = b64u_decode(record["challenge"]) if isinstance(record["challenge"], str) else b""
    except Base64Error:
        challenge = b""
    if len(challenge) != 64:
        raise DelegationError("malformed", "challenge is an unpadded base64url signature")
    if issuer not in chain_issuers:
        raise DelegationError("not_in_chain", "only an issuer in the revoked UCAN's chain may revoke it")
    if not _key_of(issuer).verify(challenge, f"REVOKE:{revoked_cid}".encode("ascii")):
        raise DelegationError("bad_signature", "the challenge is not signed by iss")
    return revoked_cid
