"""DIDs: did:key documents (Ed25519 and P-256, Multikey) and did:web identifiers and documents.

did:key needs no network: the key is the identifier. did:web names a document served over HTTPS
(`did:web:host%3Aport:path:segments` -> `https://host:port/path/segments/did.json`), so its keys
can rotate while the identifier stays.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any
from urllib.parse import quote, unquote

from shared.keys import PublicKey

DID_CONTEXT = "https://www.w3.org/ns/did/v1"
MULTIKEY_CONTEXT = "https://w3id.org/security/multikey/v1"
JWK_CONTEXT = "https://w3id.org/security/suites/jws-2020/v1"


class DidError(ValueError):
    """A DID we cannot use: malformed, unsupported method, or a document that does not fit it."""


def key_vm_id(key: PublicKey) -> str:
    """The verification method of a did:key: `did:key:z...#z...`."""
    did = key.did
    return f"{did}#{did[len('did:key:'):]}"


def did_key_document(key: PublicKey) -> dict[str, Any]:
    did = key.did
    vm = key_vm_id(key)
    return {
        "@context": [DID_CONTEXT, MULTIKEY_CONTEXT],
        "id": did,
        "verificationMethod": [{"id": vm, "type": "Multikey", "controller": did,
                                "publicKeyMultibase": did[len("did:key:"):]}],
        "authentication": [vm], "assertionMethod": [vm],
        "capabilityInvocation": [vm], "capabilityDelegation": [vm],
    }


def did_web(host: str, *path: str) -> str:
    """`did:web:<host, port as %3A>:<path...>`."""
    return "did:web:" + ":".join([quote(host, safe=".-"), *(quote(p, safe="._-") for p in path)])


def did_web_url(did: str) -> str:
    """The HTTPS URL of a did:web document (did:web spec, section 3.2)."""
    if not did.startswith("did:web:"):
        raise DidError("not a did:web")
    parts = did[len("did:web:"):].split("#", 1)[0].split(":")
    if not parts[0] or any(not p for p in parts):
        raise DidError("did:web has an empty segment")
    host = unquote(parts[0])
    if "/" in host or "@" in host:
        raise DidError("did:web host is malformed")
    path = "/".join(unquote(p) for p in parts[1:])
    return f"https://{host}/{path}/did.json" if path else f"https://{host}/.well-known/did.json"


def did_web_document(did: str, keys: Iterable[tuple[str, PublicKey]]) -> dict[str, Any]:
    """A did:web document listing each (kid, key) as a JsonWebKey verification method."""
    methods = [{"id": f"{did}#{kid}", "type": "JsonWebKey", "controller": did, "publicKeyJwk": key.jwk(kid=kid)}
               for kid, key in keys]
    ids = [m["id"] for m in methods]
    return {"@context": [DID_CONTEXT, JWK_CONTEXT], "id": did, "verificationMethod": methods,
            "assertionMethod": ids, "authentication": ids}


def assertion_key(document: dict[str, Any], did: str, vm_id: str) -> PublicKey:
    """The key of verification method `vm_id`, only if the document is `did`'s and lists it for
    assertions (issuing credentials)."""
    if document.get("id") != did:
        raise DidError("DID document is for another DID")
    refs = document.get("assertionMethod") or []
    if vm_id not in [r if isinstance(r, str) else r.get("id") for r in refs]:
        raise DidError("verification method is not an assertion method")
    for method in document.get("verificationMethod") or []:
        if method.get("id") != vm_id or method.get("controller") != did:
            continue
        if "publicKeyJwk" in method:
            return PublicKey.from_jwk({k: v for k, v in method["publicKeyJwk"].items()
                                       if k in ("kty", "crv", "x", "y")})
        if "publicKeyMultibase" in method:
            return PublicKey.from_did("did:key:" + method["publicKeyMultibase"])
    raise DidError("verification method not found in the document")
