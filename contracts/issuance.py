"""Issuance: agent credentials (W3C VC 2.0 as vc+jwt), issuer DIDs and status lists."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

import msgspec

from contracts.types import Id, JsonObject, Jws, Natural, Struct, Text, Uri


class GetCredential(Struct, kw_only=True):
    agent_id: Id


class CredentialRecord(Struct, kw_only=True):
    credential_id: Uri
    agent_id: Id
    issuer: Uri
    vc_jwt: Jws
    status_list_credential: Uri
    status_index: Natural
    valid_from: datetime
    valid_until: datetime
    revoked: bool
    attested: bool


class GetStatusList(Struct, kw_only=True):
    list_id: Id | None = None  # None: the list now taking new credentials


class StatusListRecord(Struct, kw_only=True):
    list_id: Id
    url: Uri
    issuer: Uri
    vc_jwt: Jws
    version: Natural


class GetIssuer(Struct, kw_only=True):
    pass


class IssuerRecord(Struct, kw_only=True):
    """The tenant's credential issuer. With did:key the DID changes when the key rotates, so
    `dids` lists every issuer DID whose credentials may still be valid."""

    did: Uri
    dids: Annotated[list[Uri], msgspec.Meta(max_length=256)]  # one per issuer key still live
    did_document: JsonObject
    jwks: JsonObject


class RevokeCredential(Struct, kw_only=True):
    agent_id: Id
    reason: Text = "revoked"


class RotateIssuerKey(Struct, kw_only=True):
    reason: Text = "scheduled rotation"


class CredentialIssued(Struct, kw_only=True):
    credential_id: Uri
    agent_id: Id
    issuer: Uri
    status_list_id: Id
    status_index: Natural
    valid_until: datetime
    attested: bool


class CredentialRevoked(Struct, kw_only=True):
    credential_id: Uri
    agent_id: Id
    status_list_id: Id
    status_index: Natural
    reason: Text
