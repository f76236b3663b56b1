"""The one shared LISTEN connection: projector notifications in, hub dispatch out.

It runs beside the reader pool, on a connection of its own to the database the projector writes
(`NOTIFY` does not reach replicas). Loss is detected at once by asyncpg's termination callback
and, for half-open TCP, by a keep-alive query; reconnection backs off up to a few seconds. After
every (re)connect the hub is resynced *after* `LISTEN` took effect, so whatever was committed while
the connection was down is re-checked by every waiter and stream rather than missed.

The connection is this listener's alone, used by its one task: nothing else may run a statement on
it. Every failure of the database or of asyncpg on it (including an `InternalClientError` from a
session the server ended) means reconnecting, never the end of the task.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging

import asyncpg

from cqrs_shared.postgres_connect import PLAIN, ConnectOptions
from query_svc.database import UNAVAILABLE, Connection
from query_svc.hub import ChangeHub
from query_svc.metrics import LISTENER_CONNECTED, LISTENER_RECONNECTS

log = logging.getLogger(__name__)


class ReadOnlyNodeError(Exception):
    """The LISTEN connection reached a replica (a reader, or Aurora's old writer that a stale DNS
    answer still names after a failover): NOTIFY never reaches it, so it is no use."""


_FAILURES: tuple[type[Exception], ...] = (*UNAVAILABLE, asyncpg.PostgresError, ReadOnlyNodeError)


class ProjectionListener:
    """Keeps one `LISTEN <channel>` session alive for the hub until `stop()`."""

    def __init__(
        self,
        dsn: str,
        channel: str,
        hub: ChangeHub,
        *,
        keepalive_seconds: float = 10.0,
        max_backoff_seconds: float = 5.0,
        connect: ConnectOptions = PLAIN,
    ) -> None:
        self._dsn = dsn
        self._connect = connect
        self._channel = channel
        self._hub = hub
        self._keepalive = keepalive_seconds
        self._max_backoff = max_backoff_seconds
        self._task: asyncio.Task[None] | None = None
        self._stopping = asyncio.Event()
        self._sessions = 0
        #: Set while LISTEN is in effect (tests and readiness details wait on it).
        self.connected = asyncio.Event()
        self.backend_pid: int | None = None

    def start(self) -> None:
        self._stopping = asyncio.Event()
        self._task = asyncio.create_task(self._run(), name="projection-listener")

    async def stop(self) -> None:
        """Stop after the current step: a connect in flight is let finish (cancelling asyncpg
        mid-handshake leaves futures failing in the background), then the connection is closed."""
        if self._task is not None:
            self._stopping.set()
            try:
                async with asyncio.timeout(10):
                    await asyncio.shield(self._task)
            except TimeoutError:
                self._task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await self._task
        self._mark_disconnected()

    async def _run(self) -> None:
        delay = 0.1
        while not self._stopping.is_set():
            try:
                connection = await self._connect_to_writer()
            except _FAILURES as exc:
                log.warning(
                    "LISTEN connection failed (%s: %s); retrying in %.1fs", type(exc).__name__, exc, delay
                )
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(delay):
                        await self._stopping.wait()
                delay = min(delay * 2, self._max_backoff)
                continue
            try:
                await self._session(connection)
                delay = 0.1
            except _FAILURES as exc:
                log.warning("LISTEN connection lost: %s: %s", type(exc).__name__, exc)
            finally:
                self._mark_disconnected()
                await _close(connection)

    async def _connect_to_writer(self) -> asyncpg.Connection[asyncpg.Record]:
        """A connection to the primary, or an error to retry after the back-off: a session that
        would listen on a read-only node would hear nothing, silently, until its next failure."""
        connection: asyncpg.Connection[asyncpg.Record] = await asyncpg.connect(
            self._dsn,
            timeout=5,
            server_settings={"application_name": "query-svc-listener"},
            **self._connect.for_dsn(self._dsn),
        )
        try:
            # Not `transaction_read_only`: a read-only role on the primary hears every NOTIFY.
            replica = await connection.fetchval("SELECT pg_is_in_recovery()")
        except BaseException:
            await _close(connection)
            raise
        if replica:
            await _close(connection)
            raise ReadOnlyNodeError(
                "the LISTEN database is a replica (a reader, or the old writer after a failover)"
            )
        return connection

    async def _session(self, connection: asyncpg.Connection[asyncpg.Record]) -> None:
        """LISTEN until the connection is lost (returns or raises) or the listener stops."""
        wake = asyncio.Event()
        connection.add_termination_listener(lambda _connection: wake.set())
        stopping = asyncio.create_task(self._stopping.wait())
        stopping.add_done_callback(lambda _task: wake.set())
        try:
            await connection.add_listener(self._channel, self._on_notification)
            self._established(connection)
            while not (connection.is_closed() or self._stopping.is_set()):
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(self._keepalive):
                        await wake.wait()
                if not wake.is_set():
                    async with asyncio.timeout(self._keepalive):
                        await connection.fetchval("SELECT 1")
        finally:
            stopping.cancel()

    def _established(self, connection: asyncpg.Connection[asyncpg.Record]) -> None:
        self.backend_pid = connection.get_server_pid()
        if self._sessions:
            LISTENER_RECONNECTS.inc()
            log.info("LISTEN %s re-established; resyncing waiters and streams", self._channel)
        self._sessions += 1
        self.connected.set()
        LISTENER_CONNECTED.set(1)
        self._hub.resync()

    def _on_notification(self, _connection: Connection, _pid: int, _channel: str, payload: object) -> None:
        self._hub.dispatch(str(payload))

    def _mark_disconnected(self) -> None:
        self.connected.clear()
        self.backend_pid = None
        LISTENER_CONNECTED.set(0)


async def _close(connection: asyncpg.Connection[asyncpg.Record]) -> None:
    """Close politely if the server still answers, else drop the socket (a lost server never will)."""
    if connection.is_closed():
        return
    try:
        async with asyncio.timeout(2):
            await connection.close()
    except _FAILURES:
        connection.terminate()
    except asyncio.CancelledError:
        connection.terminate()
        raise
