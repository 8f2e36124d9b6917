"""W3C Verifiable Credentials 2.0 secured as JWTs (VC-JOSE-COSE): credentials, status list
credentials and presentations, made and verified.

The JWT claims set is the credential itself (no `vc` claim); the header carries `typ` `vc+jwt`
(`vp+jwt` for presentations) and a `kid` that is a DID URL of the signer's verification method.
`iss`, `sub`, `jti`, `nbf`, `exp` repeat `issuer`, `credentialSubject.id`, `id`, `validFrom`,
`validUntil`, so generic JWT and DID-JWT verifiers read the same facts.

Each refusal has its own `CredentialError.reason`.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Protocol

from shared import jose, status_list
from shared.did import DidError, assertion_key, did_key_document, did_web_url
from shared.keys import InvalidKey, PrivateKey, PublicKey

VC_CONTEXT = "https://www.w3.org/ns/credentials/v2"
VC_TYP = "vc+jwt"
VP_TYP = "vp+jwt"
ALGS = ("EdDSA", "Ed25519", "ES256")
STATUS_ENTRY = "BitstringStatusListEntry"


class CredentialError(ValueError):
    """Why a credential or presentation is refused. `reason` is stable:
    malformed, bad_signature, unknown_issuer, not_yet_valid, expired, revoked, suspended,
    status_unavailable, status_invalid, wrong_audience, wrong_nonce, holder_mismatch."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason


def iso(dt: datetime) -> str:
    return dt.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _parse_time(value: Any, name: str) -> float:
    if not isinstance(value, str):
        raise CredentialError("malformed", f"{name} must be a date-time string")
    try:
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError as exc:
        raise CredentialError("malformed", f"{name} is not a date-time") from exc
    if parsed.tzinfo is None:
        raise CredentialError("malformed", f"{name} needs a time zone")
    return parsed.timestamp()


# -- making ---------------------------------------------------------------------------------------
def credential(*, credential_id: str, issuer: str, types: Sequence[str], subject: Mapping[str, Any],
               valid_from: datetime, valid_until: datetime | None = None,
               status: Mapping[str, Any] | None = None, issued_at: datetime | None = None) -> dict[str, Any]:
    """The credential (= the JWT claims set), with the registered JWT claims that mirror it."""
    claims: dict[str, Any] = {
        "@context": [VC_CONTEXT],
        "id": credential_id,
        "type": ["VerifiableCredential", *types],
        "issuer": issuer,
        "validFrom": iso(valid_from),
        "credentialSubject": dict(subject),
        "iss": issuer,
        "jti": credential_id,
        "iat": int((issued_at or datetime.now(UTC)).timestamp()),
        "nbf": int(valid_from.timestamp()),
    }
    if valid_until is not None:
        claims["validUntil"] = iso(valid_until)
        claims["exp"] = int(valid_until.timestamp())
    if "id" in subject:
        claims["sub"] = subject["id"]
    if status is not None:
        claims["credentialStatus"] = dict(status)
    return claims


def status_entry(list_url: str, index: int, purpose: str = "revocation") -> dict[str, Any]:
    return {"id": f"{list_url}#{index}", "type": STATUS_ENTRY, "statusPurpose": purpose,
            "statusListIndex": str(index), "statusListCredential": list_url}


def status_list_credential(*, list_url: str, issuer: str, encoded_list: str, valid_from: datetime,
                           purpose: str = "revocation", ttl_ms: int = 300_000) -> dict[str, Any]:
    return credential(
        credential_id=list_url, issuer=issuer, types=["BitstringStatusListCredential"],
        subject={"id": f"{list_url}#list", "type": "BitstringStatusList", "statusPurpose": purpose,
                 "encodedList": encoded_list, "ttl": ttl_ms},
        valid_from=valid_from, issued_at=valid_from)


def sign(claims: Mapping[str, Any], key: PrivateKey, kid: str, typ: str = VC_TYP) -> str:
    return jose.sign(claims, key, typ=typ, kid=kid)


def presentation(holder: PrivateKey, credentials: Sequence[str], *, audience: str, nonce: str,
                 lifetime_s: int = 300, now: float | None = None) -> str:
    """A JWT presentation of `credentials` by their holder, bound to the verifier's audience and nonce."""
    did = holder.public.did
    iat = int(time.time() if now is None else now)
    claims = {
        "@context": [VC_CONTEXT],
        "type": ["VerifiablePresentation"],
        "holder": did,
        "verifiableCredential": [{"@context": [VC_CONTEXT], "type": "EnvelopedVerifiableCredential",
                                  "id": f"data:application/vc+jwt,{c}"} for c in credentials],
        "iss": did, "aud": audience, "nonce": nonce, "iat": iat, "exp": iat + lifetime_s,
    }
    return jose.sign(claims, holder, typ=VP_TYP, kid=f"{did}#{did[len('did:key:'):]}")


# -- resolving ------------------------------------------------------------------------------------
class StatusFetcher(Protocol):
    async def __call__(self, url: str) -> str:
        """The status list credential (a vc+jwt) at `url`; raise on any failure."""
        ...


DocumentFetcher = Callable[[str], Awaitable[Mapping[str, Any]]]


class DidResolver:
    """did:key offline; did:web through `fetch_document(url)` (HTTPS; the SDK supplies one)."""

    def __init__(self, fetch_document: DocumentFetcher | None = None) -> None:
        self._fetch = fetch_document

    async def resolve(self, did: str) -> Mapping[str, Any]:
        if did.startswith("did:key:"):
            try:
                return did_key_document(PublicKey.from_did(did))
            except InvalidKey as exc:
                raise DidError(f"bad did:key: {exc}") from exc
        if did.startswith("did:web:"):
            if self._fetch is None:
                raise DidError("no did:web resolver configured")
            return await self._fetch(did_web_url(did))
        raise DidError("unsupported DID method")


# -- verifying ------------------------------------------------------------------------------------
@dataclass(frozen=True)
class VerifiedCredential:
    claims: dict[str, Any]
    issuer: str
    subject_id: str | None
    status_checked: bool


@dataclass(frozen=True)
class VerifiedPresentation:
    holder: str
    credentials: list[VerifiedCredential] = field(default_factory=list)


def _issuer_of(claims: Mapping[str, Any]) -> str:
    issuer = claims.get("issuer")
    if isinstance(issuer, Mapping):
        issuer = issuer.get("id")
    if not isinstance(issuer, str):
        raise CredentialError("malformed", "issuer is required")
    return issuer


async def verify_credential(
    vc_jwt: str,
    *,
    resolver: DidResolver,
    trusted_issuers: Iterable[str] | None,
    status_fetcher: StatusFetcher | None,
    check_status: bool = True,
    now: float | None = None,
    leeway: float = 60,
) -> VerifiedCredential:
    """Verify signature, issuer, validity window and (unless told not to) revocation status.

    `trusted_issuers` None means "any resolvable issuer" (only for exploration); pass the DIDs you
    trust. A credential with a status entry is refused when its status cannot be fetched
    (`status_unavailable`): status checks fail closed.
    """
    now = time.time() if now is None else now
    claims, issuer = await _verify_jws(vc_jwt, VC_TYP, resolver, trusted_issuers, now, leeway)
    _check_shape(claims, "VerifiableCredential")
    subject = claims.get("credentialSubject")
    if not isinstance(subject, Mapping):
        raise CredentialError("malformed", "credentialSubject must be an object")
    if "sub" in claims and claims["sub"] != subject.get("id"):
        raise CredentialError("malformed", "sub disagrees with credentialSubject.id")
    if "jti" in claims and claims["jti"] != claims.get("id"):
        raise CredentialError("malformed", "jti disagrees with id")
    valid_from = _parse_time(claims["validFrom"], "validFrom") if "validFrom" in claims else None
    valid_until = _parse_time(claims["validUntil"], "validUntil") if "validUntil" in claims else None
    if valid_from is not None and now + leeway < valid_from:
        raise CredentialError("not_yet_valid", "credential is not yet valid")
    if valid_until is not None and now - leeway > valid_until:
        raise CredentialError("expired", "credential has expired")
    checked = False
    if check_status:
        entries = claims.get("credentialStatus") or []
        for entry in entries if isinstance(entries, list) else [entries]:
            await _check_status(entry, issuer, resolver, status_fetcher, now)
            checked = True
    return VerifiedCredential(claims=claims, issuer=issuer,
                              subject_id=subject.get("id") if isinstance(subject.get("id"), str) else None,
                              status_checked=checked)


async def _verify_jws(token: str, typ: str, resolver: DidResolver, trusted: Iterable[str] | None,
                      now: float, leeway: float) -> tuple[dict[str, Any], str]:
    try:
        header, claims, _ = jose.split(token)
    except jose.JoseError as exc:
        raise CredentialError("malformed", str(exc)) from exc
    if header.get("typ") != typ:
        raise CredentialError("malformed", f"typ must be {typ}")
    kid = header.get("kid")
    if not isinstance(kid, str) or "#" not in kid:
        raise CredentialError("malformed", "kid must be a DID URL")
    did = kid.split("#", 1)[0]
    issuer = claims.get("holder") if typ == VP_TYP else _issuer_of(claims)
    if issuer != did or claims.get("iss", did) != did:
        raise CredentialError("malformed" if typ == VC_TYP else "holder_mismatch",
                              "the signing key is not the issuer's")
    if trusted is not None and did not in set(trusted):
        raise CredentialError("unknown_issuer", "issuer is not trusted")
    try:
        key = assertion_key(dict(await resolver.resolve(did)), did, kid) if typ == VC_TYP else PublicKey.from_did(did)
    except (DidError, InvalidKey) as exc:
        raise CredentialError("unknown_issuer", f"issuer key not resolvable: {exc}") from exc
    except Exception as exc:  # a DID document we could not fetch
        raise CredentialError("unknown_issuer", "issuer DID could not be resolved") from exc
    try:
        jose.verify(token, key, algorithms=ALGS, typ=typ, require=(), leeway=leeway, now=lambda: now)
    except jose.JoseError as exc:
        reason = {"bad_signature": "bad_signature", "expired": "expired",
                  "not_yet_valid": "not_yet_valid"}.get(exc.reason, "malformed")
        raise CredentialError(reason, f"{typ} rejected: {exc.reason}") from exc
    if "vc" in claims or "vp" in claims:
        raise CredentialError("malformed", "vc/vp claims are not allowed in VC-JOSE")
    return claims, did


def _check_shape(claims: Mapping[str, Any], kind: str) -> None:
    context = claims.get("@context")
    if not isinstance(context, list) or not context or context[0] != VC_CONTEXT:
        raise CredentialError("malformed", "the first @context must be the VC 2.0 context")
    types = claims.get("type")
    if not isinstance(types, list) or kind not in types:
        raise CredentialError("malformed", f"type must include {kind}")


async def _check_status(entry: Any, issuer: str, resolver: DidResolver, fetch: StatusFetcher | None,
                        now: float) -> None:
    if not isinstance(entry, Mapping) or entry.get("type") != STATUS_ENTRY:
        raise CredentialError("malformed", "unsupported credentialStatus entry")
    url, purpose, index_text = entry.get("statusListCredential"), entry.get("statusPurpose"), entry.get("statusListIndex")
    if not isinstance(url, str) or purpose not in ("revocation", "suspension") or not isinstance(index_text, str) \
            or not index_text.isdigit():
        raise CredentialError("malformed", "status entry needs a list URL, a purpose and a decimal index")
    if fetch is None:
        raise CredentialError("status_unavailable", "no status fetcher: cannot check revocation")
    try:
        list_jwt = await fetch(url)
    except Exception as exc:
        raise CredentialError("status_unavailable", "STATUS_RETRIEVAL_ERROR") from exc
    try:
        verified = await verify_credential(list_jwt, resolver=resolver, trusted_issuers=[issuer],
                                           status_fetcher=None, check_status=False, now=now)
    except CredentialError as exc:
        raise CredentialError("status_invalid", f"STATUS_VERIFICATION_ERROR: {exc.reason}") from exc
    subject = verified.claims["credentialSubject"]
    if "BitstringStatusListCredential" not in verified.claims["type"] or verified.claims.get("id") != url \
            or subject.get("type") != "BitstringStatusList" or subject.get("statusPurpose") != purpose:
        raise CredentialError("status_invalid", "STATUS_VERIFICATION_ERROR: not the list this entry names")
    try:
        bits = status_list.decode(subject.get("encodedList"))
        revoked = status_list.get_bit(bits, int(index_text))
    except status_list.StatusListError as exc:
        raise CredentialError("status_invalid", exc.reason) from exc
    if revoked:
        raise CredentialError("revoked" if purpose == "revocation" else "suspended", f"credential is {purpose[:-3]}ed")


async def verify_presentation(
    vp_jwt: str,
    *,
    audience: str,
    nonce: str,
    resolver: DidResolver,
    trusted_issuers: Iterable[str] | None,
    status_fetcher: StatusFetcher | None,
    now: float | None = None,
    leeway: float = 30,
) -> VerifiedPresentation:
    """A presentation signed by its holder's did:key, for this verifier's audience and nonce, whose
    credentials all verify and are all about the holder (holder binding)."""
    now = time.time() if now is None else now
    claims, holder = await _verify_jws(vp_jwt, VP_TYP, resolver, None, now, leeway)
    _check_shape(claims, "VerifiablePresentation")
    if claims.get("aud") != audience and not (isinstance(claims.get("aud"), list) and audience in claims["aud"]):
        raise CredentialError("wrong_audience", "presentation is for another verifier")
    if claims.get("nonce") != nonce:
        raise CredentialError("wrong_nonce", "presentation does not carry this verifier's nonce")
    if "exp" not in claims or "iat" not in claims:
        raise CredentialError("malformed", "presentation needs iat and exp")
    enveloped = claims.get("verifiableCredential")
    if not isinstance(enveloped, list) or not enveloped:
        raise CredentialError("malformed", "presentation carries no credential")
    results = []
    for item in enveloped:
        vc_id = item.get("id") if isinstance(item, Mapping) else None
        prefix = "data:application/vc+jwt,"
        if not isinstance(vc_id, str) or not vc_id.startswith(prefix) or item.get("type") != "EnvelopedVerifiableCredential":
            raise CredentialError("malformed", "credentials are enveloped vc+jwt data URLs")
        verified = await verify_credential(vc_id[len(prefix):], resolver=resolver, trusted_issuers=trusted_issuers,
                                           status_fetcher=status_fetcher, now=now)
        if verified.subject_id != holder:
            raise CredentialError("holder_mismatch", "a credential is about someone other than the holder")
        results.append(verified)
    return VerifiedPresentation(holder=holder, credentials=results)
