"""Generate the published contracts: a JSON Schema per message and an AsyncAPI 3.0 document.

`agentid contracts export` (or `python -m contracts.export`) rewrites `contracts/schemas/*.json` and
`contracts/asyncapi.json`; `tests/unit/test_contracts.py` fails when the checked-in files are stale.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import msgspec

from contracts import headers as H
from contracts.errors import Error
from contracts.subjects import DEFAULT_ROOT, ROUTES, TOPICS
from contracts.types import MAX_PAYLOAD_BYTES

DEFAULT_DIR = Path(__file__).parent
REF = "#/components/schemas/{name}"


def _message_types() -> list[type]:
    seen: dict[str, type] = {}
    for route in ROUTES:
        seen.setdefault(route.request.__name__, route.request)
        seen.setdefault(route.reply.__name__, route.reply)
    for topic in TOPICS:
        seen.setdefault(topic.event.__name__, topic.event)
    seen["Error"] = Error
    return [seen[k] for k in sorted(seen)]


def json_schemas() -> dict[str, dict[str, Any]]:
    """One standalone JSON Schema (2020-12) per message type."""
    out = {}
    for t in _message_types():
        schema = msgspec.json.schema(t)
        schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
        schema["$id"] = f"https://agentid.dev/contracts/v1/{t.__name__}.json"
        out[t.__name__] = schema
    return out


_ENVELOPE = {
    "type": "object",
    "description": "Every message is signed by its sender (see contracts/headers.py).",
    "required": [H.SENDER, H.KEY_ID, H.TIMESTAMP, H.MSG_ID, H.SIGNATURE],
    "properties": {
        H.SENDER: {"type": "string", "description": "SPIFFE ID or DID of the signer"},
        H.KEY_ID: {"type": "string", "description": "RFC 7638 thumbprint of the signing key"},
        H.TIMESTAMP: {"type": "string", "pattern": "^[0-9]{1,16}$", "description": "unix ms"},
        H.MSG_ID: {"type": "string", "description": "unique per sender; JetStream de-duplicates on it"},
        H.SIGNATURE: {"type": "string", "description": "base64url signature over "
                      "'agentid-msg-v1' LF subject LF sender LF key-id LF msg-id LF timestamp LF sha256(payload)"},
        H.TRACEPARENT: {"type": "string", "description": "W3C trace context"},
        H.ERROR: {"type": "string", "description": "error code, on error replies only"},
    },
}


def asyncapi() -> dict[str, Any]:
    _, components = msgspec.json.schema_components(_message_types(), ref_template=REF)
    channels: dict[str, Any] = {}
    operations: dict[str, Any] = {}
    messages: dict[str, Any] = {
        "Error": {"name": "Error", "contentType": "application/json",
                  "headers": {"$ref": "#/components/schemas/Envelope"},
                  "payload": {"$ref": REF.format(name="Error")}},
    }
    params = {"tenant": {"description": "Tenant id: a safe subject token ^[a-z0-9][a-z0-9_-]{0,62}$"}}

    def message(t: type) -> dict[str, str]:
        messages.setdefault(t.__name__, {
            "name": t.__name__, "contentType": "application/json",
            "headers": {"$ref": "#/components/schemas/Envelope"},
            "payload": {"$ref": REF.format(name=t.__name__)},
        })
        return {"$ref": f"#/components/messages/{t.__name__}"}

    for route in ROUTES:
        cid = route.name
        channels[cid] = {
            "address": route.template(DEFAULT_ROOT), "parameters": params,
            "description": route.summary,
            "messages": {"request": message(route.request)},
        }
        channels[f"{cid}.reply"] = {
            "address": None, "description": f"The requester's inbox, for {route.name} replies.",
            "messages": {"reply": message(route.reply), "error": {"$ref": "#/components/messages/Error"}},
        }
        operations[cid] = {
            "action": "receive", "channel": {"$ref": f"#/channels/{_ptr(cid)}"},
            "summary": route.summary,
            "description": f"Answered by the {route.service} worker (queue group {route.service}). "
                           f"Accepted senders: {', '.join(sorted(route.senders))}.",
            "messages": [{"$ref": f"#/channels/{_ptr(cid)}/messages/request"}],
            "reply": {"channel": {"$ref": f"#/channels/{_ptr(cid + '.reply')}"}},
        }
    for topic in TOPICS:
        cid = f"evt.{topic.name}"
        channels[cid] = {
            "address": topic.template(DEFAULT_ROOT), "parameters": params,
            "description": topic.summary, "messages": {"event": message(topic.event)},
        }
        operations[cid] = {
            "action": "send", "channel": {"$ref": f"#/channels/{_ptr(cid)}"},
            "summary": topic.summary,
            "description": f"Published to JetStream by {topic.owner}.",
            "messages": [{"$ref": f"#/channels/{_ptr(cid)}/messages/event"}],
        }
    components = dict(sorted(components.items()))
    components["Envelope"] = _ENVELOPE
    return {
        "asyncapi": "3.0.0",
        "info": {"title": "agentid bus", "version": "1.0.0",
                 "description": f"Signed NATS messages between agentid parties. Payloads are JSON, at most "
                                f"{MAX_PAYLOAD_BYTES} bytes; unknown fields are refused."},
        "defaultContentType": "application/json",
        "channels": channels,
        "operations": operations,
        "components": {"schemas": components, "messages": dict(sorted(messages.items()))},
    }


def _ptr(name: str) -> str:
    return name.replace("~", "~0").replace("/", "~1")


def render() -> dict[str, bytes]:
    """Relative path -> exact file content."""
    files = {f"schemas/{name}.json": _dump(schema) for name, schema in json_schemas().items()}
    files["asyncapi.json"] = _dump(asyncapi())
    return files


def _dump(doc: Any) -> bytes:
    return (json.dumps(doc, indent=2, sort_keys=True, ensure_ascii=False) + "\n").encode()


def write(directory: Path = DEFAULT_DIR, *, check: bool = False) -> list[str]:
    """Write (or with `check`, only compare) the files; returns the paths that differ."""
    changed = []
    wanted = render()
    for rel, content in wanted.items():
        path = directory / rel
        if not path.exists() or path.read_bytes() != content:
            changed.append(rel)
            if not check:
                path.parent.mkdir(parents=True, exist_ok=True)
                path.write_bytes(content)
    schema_dir = directory / "schemas"
    if schema_dir.exists():
        for stale in schema_dir.glob("*.json"):
            rel = f"schemas/{stale.name}"
            if rel not in wanted:
                changed.append(rel)
                if not check:
                    stale.unlink()
    return changed


if __name__ == "__main__":
    diff = write(check="--check" in sys.argv)
    print("\n".join(diff) or "contracts are current")
    sys.exit(1 if diff and "--check" in sys.argv else 0)
