"""A TCP proxy the test controls: it relays connections to one upstream port until it is cut.

`cut()` aborts every relayed connection (both sides see the connection drop at once, as when a
network link fails) and, until `restore()`, closes each new connection as soon as it is accepted,
so the client's reconnect attempts fail the way they would against a dead link. The listening
port stays the same throughout, so clients need no new address when the link comes back.
"""

from __future__ import annotations

import asyncio
import contextlib

from shared.embedded import free_port

_CHUNK = 64 * 1024


class TcpProxy:
    def __init__(self, upstream_port: int, *, port: int | None = None, host: str = "127.0.0.1") -> None:
        self.host = host
        self.upstream_port = upstream_port
        self.port = port or free_port()
        self.is_cut = False
        self.accepted = 0
        self._server: asyncio.Server | None = None
        self._links: set[tuple[asyncio.Transport, asyncio.Transport]] = set()
        self._tasks: set[asyncio.Task[None]] = set()

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._accept, self.host, self.port)

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
        self._abort_all()
        for task in list(self._tasks):
            task.cancel()
        if self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)
        if self._server is not None:
            await self._server.wait_closed()

    def cut(self) -> None:
        self.is_cut = True
        self._abort_all()

    def restore(self) -> None:
        self.is_cut = False

    @property
    def connections(self) -> int:
        return len(self._links)

    def _abort_all(self) -> None:
        for a, b in list(self._links):
            a.abort()
            b.abort()
        self._links.clear()

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._tasks.add(task)
        try:
            await self._relay(reader, writer)
        finally:
            self._tasks.discard(task)

    async def _relay(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        client = writer.transport
        if self.is_cut:
            client.abort()
            return
        try:
            up_reader, up_writer = await asyncio.open_connection(self.host, self.upstream_port)
        except OSError:
            client.abort()  # the upstream is down: the client sees it as we do
            return
        if self.is_cut:  # cut while we were connecting
            client.abort()
            up_writer.transport.abort()
            return
        self.accepted += 1
        link = (client, up_writer.transport)  # type: ignore[assignment]
        self._links.add(link)  # type: ignore[arg-type]
        try:
            await asyncio.gather(_pipe(reader, up_writer), _pipe(up_reader, writer))
        finally:
            self._links.discard(link)  # type: ignore[arg-type]
            client.abort()
            up_writer.transport.abort()


async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    """Copy until either side closes; then close the other direction too."""
    try:
        while data := await reader.read(_CHUNK):
            writer.write(data)
            await writer.drain()
    except (OSError, asyncio.IncompleteReadError):
        pass
    finally:
        with contextlib.suppress(OSError, RuntimeError):
            writer.transport.abort()
