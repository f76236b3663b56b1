"""The store watchdog: notices a write-store client that stopped working, and replaces it.

A database driver can end up in a state where its pooled connections or its server monitoring no
longer carry operations (half-open connections after a network fault, a pool left unusable by
operations cancelled mid-flight), while the server itself answers everyone else. Nothing inside
the process heals that, and every door and the relay would stall behind it.

Every `interval_seconds` the watchdog looks at how the main client's operations went since its
previous round: a client whose operations complete, however slowly, is not stuck (and a ping
would only queue behind that work). A client that completed something but failed at least as
often is not trusted on that evidence: after a long stall one was seen completing an operation
now and then while nearly every checkout timed out, for eleven minutes. Otherwise the watchdog
pings through the main client, and if that fails,
through the store's separate probe client: when the probe fails too, the store itself is down (an
outage, shown by readiness; replacing clients would not help). When only the main client fails,
the client is replaced at once; if the main client still fails while the server answers for
`wedged_after_seconds`, the wedge is reported to the liveness monitor, so `/healthz` fails and the
orchestrator restarts the process.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from enum import Enum
from typing import Protocol

from cqrs_shared.liveness import LivenessMonitor

log = logging.getLogger(__name__)

WEDGE = "write_store_client"


class ReplaceableClient(Protocol):
    def seconds_since_progress(self) -> float:
        """Seconds since an operation last succeeded through the client that serves the commands."""

    def take_outcomes(self) -> tuple[int, int]:
        """Operations (succeeded, failed) through the client that serves the commands since the
        previous call."""

    async def ping(self) -> None:
        """Round trip through the client that serves the commands."""

    async def probe(self) -> None:
        """Round trip through a separate client: does the server answer at all?"""

    async def reconnect(self) -> None:
        """Replace the client that serves the commands."""


class Verdict(Enum):
    HEALTHY = "healthy"
    STORE_DOWN = "store_down"
    CLIENT_REPLACED = "client_replaced"
    WEDGED = "wedged"


@dataclass(frozen=True, slots=True)
class WatchdogSettings:
    interval_seconds: float = 5.0
    #: A backstop above the client's own operation timeout, so the client times out first and
    #: nothing is cancelled inside the driver (cancelling mid-operation is what may break it).
    timeout_seconds: float = 8.0
    wedged_after_seconds: float = 30.0


class StoreWatchdog:
    def __init__(
        self,
        store: ReplaceableClient,
        liveness: LivenessMonitor,
        settings: WatchdogSettings = WatchdogSettings(),
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._store = store
        self._liveness = liveness
        self._settings = settings
        self._clock = clock
        self._failing_since: float | None = None
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="store-watchdog")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None

    async def check(self) -> Verdict:
        """One round: ping, and on failure tell an outage from a broken client and act on it."""
        succeeded, failed = self._store.take_outcomes()
        mostly_failing = failed > 0 and failed >= succeeded
        if not mostly_failing and self._store.seconds_since_progress() < self._settings.interval_seconds:
            self._healthy()
            return Verdict.HEALTHY
        if await self._answers(self._store.ping()):
            self._healthy()
            return Verdict.HEALTHY
        if not await self._answers(self._store.probe()):
            self._healthy()  # the server is down: readiness says so, the client is not to blame
            return Verdict.STORE_DOWN
        now = self._clock()
        if self._failing_since is None:
            self._failing_since = now
        log.warning("the write store answers, but not through this process's client: replacing the client")
        await self._answers(self._store.reconnect())
        if now - self._failing_since >= self._settings.wedged_after_seconds:
            detail = f"the store answers a probe, the client has failed for {now - self._failing_since:.0f} s"
            self._liveness.report_wedge(WEDGE, detail)
            return Verdict.WEDGED
        return Verdict.CLIENT_REPLACED

    def _healthy(self) -> None:
        self._failing_since = None
        self._liveness.clear_wedge(WEDGE)

    async def _answers(self, call: Awaitable[None]) -> bool:
        try:
            async with asyncio.timeout(self._settings.timeout_seconds):
                await call
        except Exception as exc:  # noqa: BLE001  # any failure is a "no"; the verdict says which
            log.debug("store watchdog call failed: %s: %s", type(exc).__name__, exc)
            return False
        return True

    async def _run(self) -> None:
        while True:
            await asyncio.sleep(self._settings.interval_seconds)
            try:
                await self.check()
            except Exception:  # a bug here must not end the watchdog
                log.exception("store watchdog round failed")
