"""Database outages on demand, for tests: a private PostgreSQL server and a TCP proxy to cut.

- `PrivatePostgres`: a throwaway cluster (initdb into a temporary directory, its own port, trust
  auth) that a test may stop, crash and start again, which a shared server others are testing
  against must never be. The postmaster is a child of the test (through `runuser` when the test
  runs as root, since PostgreSQL refuses to), so a killed one is reaped and its port and lock file
  are free for the next start.
- `TcpProxy` (from `cqrs_shared.testing.tcp_proxy`, re-exported): a link to cut or stall.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import signal
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import Literal

import asyncpg

from cqrs_shared.testing.tcp_proxy import TcpProxy, free_port

__all__ = ["PrivatePostgres", "TcpProxy"]

BIN_DIR = Path("/usr/lib/postgresql/15/bin")
_OS_USER = "postgres"
_STOP_SIGNALS = {"smart": signal.SIGTERM, "fast": signal.SIGINT, "immediate": signal.SIGQUIT}
StopMode = Literal["smart", "fast", "immediate"]


def _as_server_user(*argv: str) -> list[str]:
    return ["runuser", "-u", _OS_USER, "--", *argv] if os.geteuid() == 0 else list(argv)


class PrivatePostgres:
    """One PostgreSQL cluster of the test's own on 127.0.0.1; `dsn` names its `postgres` database."""

    def __init__(self, bin_dir: Path = BIN_DIR, *, settings: Mapping[str, str] | None = None) -> None:
        self._bin = bin_dir
        #: Extra server settings (`-c name=value`), e.g. TLS files or an `hba_file` of the test's.
        self._settings = dict(settings or {})
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

    async def init_standby_of(self, primary: PrivatePostgres) -> None:
        """Instead of `init`: a hot standby streaming from `primary` (running), a read-only
        replica until promoted (`SELECT pg_promote()`), as a failover does to a reader."""
        if os.geteuid() == 0:
            shutil.chown(self.directory, _OS_USER)
        await _run(
            *_as_server_user(
                str(self._bin / "pg_basebackup"),
                *("-D", str(self._data), "-R", "-h", "127.0.0.1", "-p", str(primary.port), "-U", "postgres"),
            ),
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
                    *(arg for name, value in self._settings.items() for arg in ("-c", f"{name}={value}")),
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
