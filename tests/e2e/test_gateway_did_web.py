"""did:web issuers resolve through the gateway: with AGENTID_DID_WEB_HOST naming the gateway's host,
a tenant's issuer is `did:web:<host>:tenants:<tenant>` and its document is served at the path the
did:web method maps it to. A stack of its own (registration, issuance, gateway) on its own database,
since the issuer method is a deployment setting."""

from __future__ import annotations

import contextlib
import secrets
from collections.abc import AsyncIterator
from urllib.parse import urlsplit

import httpx
import pytest
from nats.js.errors import NotFoundError

from contracts import issuance as iss
from contracts import registration as reg
from contracts import subjects as sub
from services.stack import Stack
from shared.bus import Bus
from shared.bus.client import stream_name
from shared.config import Settings
from shared.did import did_web_url
from shared.embedded import free_port
from shared.keyring import Keyring
from tests.helpers import scratch_database

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
async def did_web_stack(servers: tuple[str, str], tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Stack]:
    nats_url, admin_url = servers
    async with scratch_database(admin_url, "agentid_didweb_") as database_url:
        port = free_port()
        settings = Settings(nats_url=nats_url, database_url=database_url,
                            data_dir=tmp_path_factory.mktemp("didweb"), nats_prefix=f"agentid_dw{secrets.token_hex(4)}",
                            http_port=port, did_web_host=f"127.0.0.1:{port}", outbox_poll_s=0.2, shutdown_grace_s=2)
        Keyring.generate().save(settings.keyring_path)
        stack = Stack(settings, workers=["registration", "issuance", "gateway"])
        try:
            async with stack:
                yield stack
        finally:
            operator = await Bus.connect(nats_url, name="didweb-cleanup", signer=None,
                                         registry=stack.keyring.registry(), root=settings.nats_prefix)
            for bucket in (stream_name(settings.nats_prefix), f"KV_{settings.nats_prefix}_replay",
                           f"KV_{settings.nats_prefix}_gateway_dpop"):
                with contextlib.suppress(NotFoundError):
                    await operator.js.delete_stream(bucket)
            await operator.drain()


async def test_the_issuer_did_web_document_is_served_where_the_did_points(did_web_stack: Stack) -> None:
    s = did_web_stack.settings
    operator = await Bus.connect(s.nats_url or "", name="didweb-operator",
                                 signer=did_web_stack.keyring.signer("operator", "admin"),
                                 registry=did_web_stack.keyring.registry(), root=s.nats_prefix)
    try:
        tenant = f"t{secrets.token_hex(5)}"
        await operator.request(sub.CREATE_TENANT, tenant, reg.CreateTenant())
        issuer = await operator.request(sub.GET_ISSUER, tenant, iss.GetIssuer())
    finally:
        await operator.drain()
    assert issuer.did == f"did:web:127.0.0.1%3A{s.http_port}:tenants:{tenant}"
    # The did:web method says https; the gateway on loopback speaks plain HTTP (TLS is the proxy's).
    url = did_web_url(issuer.did)
    assert url == f"https://127.0.0.1:{s.http_port}/tenants/{tenant}/did.json"
    async with httpx.AsyncClient() as http:
        resp = await http.get(f"http://{urlsplit(url).netloc}{urlsplit(url).path}")
    assert resp.status_code == 200 and resp.headers["content-type"] == "application/did+json"
    document = resp.json()
    assert document["id"] == issuer.did and document == issuer.did_document
    assert document["assertionMethod"]
