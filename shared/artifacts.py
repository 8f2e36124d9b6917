"""Agent-signed artifacts: an in-toto Statement v1 naming the artifact by digest, with a predicate
of our own saying which agent signed it, with which credential, for whom, and why.

The statement travels in a DSSE envelope signed with the agent's own key.
"""

from __future__ import annotations

import hashlib
from typing import Any

from shared import dsse
from shared.canonical import canonical_json
from shared.keys import PrivateKey

STATEMENT_TYPE = "https://in-toto.io/Statement/v1"
PAYLOAD_TYPE = "application/vnd.in-toto+json"
PREDICATE_TYPE = "https://agentid.dev/attestation/agent-signature/v1"


def statement(*, name: str, digest_hex: str, predicate: dict[str, Any]) -> dict[str, Any]:
    return {"_type": STATEMENT_TYPE, "subject": [{"name": name, "digest": {"sha256": digest_hex}}],
            "predicateType": PREDICATE_TYPE, "predicate": predicate}


def envelope(key: PrivateKey, stmt: dict[str, Any]) -> dict[str, Any]:
    # The statement is serialised canonically, so its digest is stable for the log entry.
    return dsse.sign(key, PAYLOAD_TYPE, canonical_json(stmt), keyid=key.public.thumbprint)


def envelope_digest(env: dict[str, Any]) -> str:
    """What the log entry binds: SHA-256 over the PAE and every signature, so neither the statement
    nor its signature can be swapped without the entry ceasing to match."""
    payload_type, payload = dsse.open_envelope(env)
    h = hashlib.sha256(dsse.pae(payload_type, payload))
    for sig in env.get("signatures", []):
        h.update(b"\n" + str(sig.get("sig", "")).encode())
    return "sha256:" + h.hexdigest()


def sha256_hex(content: bytes) -> str:
    return hashlib.sha256(content).hexdigest()
