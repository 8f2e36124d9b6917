"""The gateway worker: the HTTP edge, stateless, any number of replicas behind one public URL.

It owns no schema and opens no database: every request becomes a signed bus request from the
`gateway` service identity (from the keyring), and the answer its HTTP response. What replicas
must agree on lives outside them: DPoP proof ids in a NATS KV bucket (created with the proofs'
`iat` window as its `max_age`), DPoP nonces derived with HKDF from the deployment's
key-encryption key, which every replica's keyring holds. Client-assertion ids are spent by the
token worker, in its own shared replay guard.

The listening socket is bound before the worker reports ready, so `agentid up` and the tests can
send requests the moment the stack is up. Signals stay with the runner: on stop, the server stops
accepting, finishes what is in flight (within the grace period) and the bus drains.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
from collections.abc import Iterator

import uvicorn
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from services.gateway.app import build_app
from services.gateway.edge import Edge, Tenants
from shared.bus import Bus
from shared.bus.inbox import service_inbox
from shared.dpop import (
    REPLAY_TTL_S,
    DpopNonces,
    KvReplayCache,
    MemoryReplayCache,
    ReplayCache,
)
from shared.worker import Worker

log = logging.getLogger(__name__)

MAX_HEADER_BYTES = 16 * 1024  # request line and headers together; a DPoP proof is at most 4 KiB
KEEP_ALIVE_S = 5
NONCE_INFO = b"agentid gateway dpop nonce v1"


def nonce_secret(kek: bytes) -> bytes:
    """The DPoP nonce key, derived from the key-encryption key: replicas agree without talking,
    and the KEK itself never keys anything but encryption."""
    return HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=NONCE_INFO).derive(kek)


class _Server(uvicorn.Server):
    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        # The runner owns SIGTERM and Ctrl-C for every worker of the process.
        yield


class GatewayWorker(Worker):
    name = "gateway"
    schema = "gateway"  # unused: the gateway keeps no state

    async def run(self, stop: asyncio.Event) -> None:
        s = self.settings
        self.bus = await Bus.connect(
            self.nats_url, name="agentid-gateway", signer=self.keyring.signer("service", self.name),
            registry=self.keyring.registry(), root=s.nats_prefix, max_skew_ms=int(s.max_skew_s * 1000),
            nkey_seed=s.nkey_seed, inbox_prefix=service_inbox(s.nats_prefix, self.name))
        try:
            edge = Edge(settings=s, bus=self.bus, replay=await self._replay_cache(),
                        nonces=self._nonces(), tenants=Tenants(self.bus))
            await self._serve_http(edge, stop)
        finally:
            await self.bus.drain()

    async def _replay_cache(self) -> ReplayCache:
        if self.settings.replay_backend == "memory":
            return MemoryReplayCache()  # one replica only
        return KvReplayCache(await self.bus.key_value("gateway_dpop", ttl_s=REPLAY_TTL_S))

    def _nonces(self) -> DpopNonces | None:
        if not self.settings.gateway_dpop_nonce:
            return None
        if self.keyring.kek is None:
            raise RuntimeError("DPoP nonces need the keyring's key-encryption key")
        return DpopNonces(nonce_secret(self.keyring.kek))

    async def _serve_http(self, edge: Edge, stop: asyncio.Event) -> None:
        s = self.settings
        if s.http_port is None:
            raise RuntimeError("the gateway needs AGENTID_HTTP_PORT (the stack chooses one)")
        config = uvicorn.Config(
            build_app(edge), host=s.http_host, port=s.http_port, lifespan="off", log_config=None,
            log_level="warning", access_log=False, server_header=False, proxy_headers=False,
            h11_max_incomplete_event_size=MAX_HEADER_BYTES, timeout_keep_alive=KEEP_ALIVE_S,
            limit_concurrency=s.concurrency * 16, timeout_graceful_shutdown=max(1, int(s.shutdown_grace_s)))
        server = _Server(config)
        sock = self._listen(s.http_host, s.http_port)
        serving = asyncio.create_task(server.serve(sockets=[sock]))
        self.ready.set()
        log.info("gateway listening on %s:%d, public URL %s", s.http_host, s.http_port, edge.base)
        stopping = asyncio.create_task(stop.wait())
        try:
            await asyncio.wait({serving, stopping}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            stopping.cancel()
            server.should_exit = True
            try:
                await serving
            finally:
                sock.close()
        if not stop.is_set():  # the server ended by itself: let the runner restart the worker
            raise RuntimeError("the HTTP server stopped")

    @staticmethod
    def _listen(host: str, port: int) -> socket.socket:
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        sock = socket.socket(family, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
            sock.listen(1024)
        except OSError:
            sock.close()
            raise
        sock.setblocking(False)
        return sock
