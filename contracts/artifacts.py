"""Agent-signed artifacts: recording a DSSE envelope in the transparency log."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

import msgspec

from contracts.types import Digest, Id, JsonObject, Jws, Key, Name, Struct, Text, Uri

Sha256 = Annotated[str, msgspec.Meta(pattern=r"^(?:[0-9a-f]{64})$(?!\n)")]


class RecordArtifact(Struct, kw_only=True):
    """An agent asks for its signed statement to be logged. `on_behalf_of`: the on-behalf-of token
    it acted under (checked, never stored; only its user and chain are recorded)."""

    envelope: Annotated[dict[Key, Any], msgspec.Meta(max_length=3)]
    on_behalf_of: Jws | None = None


class ArtifactRecorded(Struct, kw_only=True):
    event_msg_id: Id            # the artifact.signed event: find its log entry by this
    envelope_digest: Digest
    credential_id: Uri
    status_list_vc_jwt: Jws     # the credential's status list as it was when the signature was logged
    credential_vc_jwt: Jws
    signed_at: datetime


class ArtifactSigned(Struct, kw_only=True):
    agent_id: Id
    spiffe_id: Uri
    did: Uri
    credential_id: Uri
    artifact_name: Name
    artifact_digest: Sha256
    envelope_digest: Digest
    purpose: Text
    user: Text | None = None
    act: JsonObject | None = None
    delegation: JsonObject | None = None
    signed_at: datetime
