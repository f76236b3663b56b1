"""Database outages on demand, for tests: a private PostgreSQL server and a TCP proxy to cut.

- `PrivatePostgres`: a throwaway cluster (initdb into a temporary directory, its own port, trust
  auth) that a test may stop, crash and start again, which a shared server others are testing
  against must never be. The postmaster is a child of the test (through `runuser` when the test
  runs as root, since PostgreSQL refuses to), so a killed one is reaped and its port and lock file
  are free for the next start.
- `TcpProxy`: forwards loopback connections to a server. `cut()` drops every connection and stops
  listening, `stall()` stops passing bytes on (half-open TCP: nothing is refused, nothing answers),
  both until `restore()`; `hold_eof` delays passing on the server's close after its last bytes,
  which opens the window in which a client has read a server's FATAL but not yet its EOF.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import signal
import tempfile
from pathlib import Path
from typing import Literal

import asyncpg

from query_svc.testing import free_port

BIN_DIR = Path("/usr/lib/postgresql/15/bin")
_OS_USER = "postgres"
_STOP_SIGNALS = {"smart": signal.SIGTERM, "fast": signal.SIGINT, "immediate": signal.SIGQUIT}
StopMode = Literal["smart", "fast", "immediate"]


def _as_server_user(*argv: str) -> list[str]:
    return ["runuser", "-u", _OS_USER, "--", *argv] if os.geteuid() == 0 else list(argv)


class PrivatePostgres:
    """One PostgreSQL cluster of the test's own on 127.0.0.1; `dsn` names its `postgres` database."""

    def __init__(self, bin_dir: Path = BIN_DIR) -> None:
        self._bin = bin_dir
        self.port = free_port()
        self.directory = Path(tempfile.mkdtemp(prefix="query-svc-pg-"))
        self._data = self.directory / "data"
        self._process: asyncio.subprocess.Process | None = None

    @property
    def dsn(self) -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/postgres"

    async def init(self) -> None:
        if os.geteuid() == 0:
            shutil.chown(self.directory, _OS_USER)
        await _run(
            *_as_server_user(
                str(self._bin / "initdb"), "-D", str(self._data), "-A", "trust", "-U", "postgres"
            ),
            "--no-sync",
        )

    @property
    def running(self) -> bool:
        return self._process is not None and self._process.returncode is None

    async def start(self) -> None:
        """Start the postmaster and return once it accepts connections."""
        log = self.directory / "postgres.log"
        with log.open("ab") as output:
            self._process = await asyncio.create_subprocess_exec(
                *_as_server_user(
                    str(self._bin / "postgres"),
                    *("-D", str(self._data), "-p", str(self.port), "-k", str(self.directory)),
                    *("-c", "listen_addresses=127.0.0.1", "-c", "fsync=off", "-c", "max_connections=50"),
                ),
                stdout=output,
                stderr=output,
                start_new_session=True,
            )
        await self.wait_accepting()

    async def wait_accepting(self, *, seconds: float = 30.0) -> None:
        """Return once the server accepts sessions (after a start, or a crash and its recovery)."""
        async with asyncio.timeout(seconds):
            while True:
                if not self.running:
                    raise RuntimeError(f"postgres is not running; see {self.directory / 'postgres.log'}")
                try:
                    connection = await asyncpg.connect(self.dsn, timeout=2)
                except (OSError, asyncpg.CannotConnectNowError, asyncpg.PostgresConnectionError):
                    await asyncio.sleep(0.05)
                else:
                    await connection.close()
                    return

    async def stop(self, mode: StopMode = "fast") -> None:
        """Shut the server down (`fast`: sessions are terminated with 57P01) and wait for its exit."""
        await self._signal_and_wait(_STOP_SIGNALS[mode])

    async def kill(self) -> None:
        """SIGKILL the postmaster, as the OOM killer would; its backends notice and exit."""
        backends = _children(self.postmaster_pid())
        await self._signal_and_wait(signal.SIGKILL)
        # Orphaned backends hold the shared memory a new postmaster checks for; they exit on
        # noticing the postmaster's death, within moments.
        async with asyncio.timeout(30):
            while any(map(_alive, backends)):  # noqa: ASYNC110  # /proc offers no event to wait on
                await asyncio.sleep(0.05)

    def postmaster_pid(self) -> int:
        return int((self._data / "postmaster.pid").read_text().split("\n", 1)[0])

    async def _signal_and_wait(self, signum: signal.Signals) -> None:
        if self._process is None or self._process.returncode is not None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.kill(self.postmaster_pid(), signum)
        await self._process.wait()

    async def destroy(self) -> None:
        await self.stop("immediate")
        shutil.rmtree(self.directory, ignore_errors=True)


def _state(pid: int) -> tuple[str, int] | None:
    """A process's state letter and parent, or None once it is gone."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(") ", 1)[1].split()
    except (OSError, IndexError):
        return None
    return fields[0], int(fields[1])


def _alive(pid: int) -> bool:
    state = _state(pid)
    return state is not None and state[0] != "Z"


def _children(parent: int) -> list[int]:
    return [
        int(proc.name)
        for proc in Path("/proc").iterdir()
        if proc.name.isdigit() and (state := _state(int(proc.name))) is not None and state[1] == parent
    ]


async def _run(*argv: str) -> None:
    process = await asyncio.create_subprocess_exec(
        *argv, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT
    )
    output, _ = await process.communicate()
    if process.returncode:
        raise RuntimeError(f"{argv[0]} failed ({process.returncode}): {output.decode(errors='replace')}")


class TcpProxy:
    """Forwards `127.0.0.1:port` to `upstream_port`, with faults the test controls."""

    def __init__(self, upstream_port: int, *, hold_eof: float = 0.0) -> None:
        self.upstream_port = upstream_port
        self.port = free_port()
        #: Seconds between the server closing a connection and the proxy closing it to the client.
        self.hold_eof = hold_eof
        self._server: asyncio.Server | None = None
        self._links: set[asyncio.Future[None]] = set()
        self._transports: set[asyncio.WriteTransport] = set()
        self._cutting = asyncio.Event()
        self._flowing = asyncio.Event()
        self._flowing.set()
        #: Connections whose server side has closed while the proxy holds back the EOF.
        self.holding = 0

    def dsn(self, dsn: str) -> str:
        """`dsn` (a PostgreSQL URL on 127.0.0.1:upstream_port) routed through the proxy."""
        return dsn.replace(f":{self.upstream_port}/", f":{self.port}/")

    async def start(self) -> None:
        self._cutting.clear()
        self._server = await asyncio.start_server(self._accept, "127.0.0.1", self.port)

    async def cut(self) -> None:
        """Stop listening (connections are refused) and reset every connection open now."""
        self._cutting.set()
        self._flowing.set()  # a stalled pump finds its sink aborted and ends
        if self._server is not None:
            self._server.close()
            self._server = None
        for transport in list(self._transports):
            transport.abort()
        await asyncio.gather(*self._links, return_exceptions=True)

    def stall(self) -> None:
        """Stop passing bytes on, in both directions and on new connections, until `restore()`."""
        self._flowing.clear()

    async def restore(self) -> None:
        """Listen again after a cut, and pass bytes on again after a stall."""
        self._flowing.set()
        if self._server is None:
            await self.start()

    async def close(self) -> None:
        await self.cut()

    async def _accept(self, client_reader: asyncio.StreamReader, client_writer: asyncio.StreamWriter) -> None:
        done = asyncio.get_running_loop().create_future()
        self._links.add(done)
        try:
            await self._link(client_reader, client_writer)
        finally:
            self._links.discard(done)
            done.set_result(None)

    async def _link(self, client_reader: asyncio.StreamReader, client_writer: asyncio.StreamWriter) -> None:
        self._transports.add(client_writer.transport)
        try:
            upstream_reader, upstream_writer = await asyncio.open_connection("127.0.0.1", self.upstream_port)
        except OSError:
            self._transports.discard(client_writer.transport)
            client_writer.transport.abort()
            return
        self._transports.add(upstream_writer.transport)
        try:
            await asyncio.gather(
                self._pump(client_reader, upstream_writer, from_server=False),
                self._pump(upstream_reader, client_writer, from_server=True),
            )
        finally:
            for writer in (client_writer, upstream_writer):
                self._transports.discard(writer.transport)
                writer.transport.abort()

    async def _pump(
        self, reader: asyncio.StreamReader, sink: asyncio.StreamWriter, *, from_server: bool
    ) -> None:
        with contextlib.suppress(OSError):
            while data := await reader.read(65536):
                await self._flowing.wait()
                sink.write(data)
                await sink.drain()
        if from_server and self.hold_eof:
            self.holding += 1
            try:
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(self.hold_eof):
                        await self._cutting.wait()
            finally:
                self.holding -= 1
        sink.close()
