"""Principals and a chain builder for the delegation tests.

`build(n)` makes tenant -> A -> B -> ... with n links (depth n), every link valid at `NOW`, each
window strictly inside its parent's, each link proving its parent. `overrides` changes one link.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any

from shared import jose, ucan
from shared.b64 import b64u_encode
from shared.capabilities import Amount, Capability
from shared.keys import PrivateKey

NOW = 1_700_000_000
TENANT = PrivateKey.generate()
AGENTS = [PrivateKey.generate("ES256" if i == 2 else "EdDSA") for i in range(8)]  # C signs with P-256
OUTSIDER = PrivateKey.generate()

ROOT_CAPS = [
    Capability("records", "https://api.example.com/records/*", {"read", "write"}, max_uses=10),
    Capability(
        "payment_initiation",
        "https://bank.example.com/payments/*",
        {"pay"},
        identifiers=["acct-1", {"from": 100, "to": 199}],
        constraints={"amount": Amount("100", "EUR")},
    ),
]


def holder(n: int) -> str:
    return AGENTS[n - 1].public.did


def build(
    n: int, caps: Sequence[Capability] = ROOT_CAPS, overrides: Mapping[int, Mapping[str, Any]] | None = None
) -> list[str]:
    principals = [TENANT, *AGENTS]
    tokens: list[str] = []
    for i in range(n):
        kw: dict[str, Any] = {
            "issuer": principals[i],
            "audience": principals[i + 1].public.did,
            "caps": caps,
            "nbf": NOW - 3600 + i,
            "exp": NOW + 3600 - i,
            "proofs": tokens[-1:],
        }
        kw.update((overrides or {}).get(i, {}))
        token = ucan.issue(
            kw["issuer"], kw["audience"], kw["caps"], expires=kw["exp"], not_before=kw["nbf"], proofs=kw["proofs"]
        )
        tokens.append(token)
    return tokens


def verify(chain: Sequence[str], **kw: Any) -> ucan.VerifiedChain:
    args: dict[str, Any] = {"trusted_roots": {TENANT.public.did}, "max_depth": 5, "now": NOW, "revoked": set()}
    args.update(kw)
    if "audience_did" not in args:
        args["audience_did"] = ucan.parse(chain[-1]).aud
    return ucan.verify_chain(list(chain), **args)


def resign(token: str, signer: PrivateKey, **payload_changes: Any) -> str:
    """The same UCAN with some payload fields changed, signed by `signer` (its iss is NOT changed)."""
    _, payload, _ = jose.split(token)
    payload.update(payload_changes)
    return jose.sign(payload, signer, typ="JWT")


def raw_token(header: Mapping[str, Any], payload: Mapping[str, Any], signer: PrivateKey | None = None) -> str:
    """A hand-made compact JWS, for shapes `jose.sign` would not produce."""
    def seg(obj: Mapping[str, Any]) -> str:
        return b64u_encode(json.dumps(obj, separators=(",", ":")).encode())

    signing_input = f"{seg(header)}.{seg(payload)}"
    sig = signer.sign(signing_input.encode()) if signer is not None else b""
    return f"{signing_input}.{b64u_encode(sig)}"


def payload_of(token: str) -> dict[str, Any]:
    return jose.split(token)[1]
