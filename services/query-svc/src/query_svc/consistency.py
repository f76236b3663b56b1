"""Read-your-writes: wait until the projector has applied a consistency token, woken by NOTIFY.

A waiter registers with the hub *before* its first check, so a notification committed between
the check and the wait still wakes it. It then sleeps on its event, not on a timer: one
notification, one re-check. The only timed re-checks happen after a notification has *announced*
the wanted version, in the build schema the reader's `read.*` views show, while the reader does not
show it yet: the reader is a replica a few milliseconds behind the primary the notification came
from, so it re-checks with a short, doubling pause. A rebuild's announcements (another schema) only
wake a re-check; they are no proof for the active build, so they never start timed re-checks.
Every wait ends by its deadline; the caller answers with what it has then.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from dataclasses import dataclass
from typing import Literal

from cqrs_shared.consistency import ConsistencyToken
from cqrs_shared.tracing import span
from query_svc.database import Reader
from query_svc.declarations import Projection
from query_svc.hub import ChangeHub
from query_svc.metrics import TOKEN_WAIT_SECONDS, TOKEN_WAITS
from query_svc.positions import AppliedVersion, applied_version

Outcome = Literal["immediate", "woken", "timeout"]
_REPLICA_PAUSE_MAX = 0.1


@dataclass(frozen=True, slots=True)
class WaitResult:
    """How a wait ended; `checks` counts reads of the applied version (no polling: small)."""

    outcome: Outcome
    applied: int
    checks: int
    seconds: float

    @property
    def reached(self) -> bool:
        return self.outcome != "timeout"


class ConsistencyWaiter:
    """Waits for tokens on behalf of requests; holds no connection while it sleeps."""

    def __init__(self, hub: ChangeHub, reader: Reader, *, replica_pause: float = 0.005) -> None:
        self._hub = hub
        self._reader = reader
        self._replica_pause = replica_pause

    async def _applied(self, projection: Projection, token: ConsistencyToken) -> AppliedVersion:
        async with self._reader.connection() as connection:
            return await applied_version(connection, projection, (token.aggregate_type, token.aggregate_id))

    async def wait(self, projection: Projection, token: ConsistencyToken, bound: float) -> WaitResult:
        """Return once `token` is applied or `bound` seconds have passed, whichever is first."""
        attributes = {
            "cqrs.projection": projection.name,
            "cqrs.aggregate_type": token.aggregate_type,
            "cqrs.aggregate_id": token.aggregate_id,
            "cqrs.version": token.version,
        }
        with span("wait for consistency token", attributes=attributes) as waiting:
            result = await self._wait(projection, token, bound)
            waiting.set_attribute("cqrs.wait.outcome", result.outcome)
        TOKEN_WAITS.labels(result.outcome).inc()
        TOKEN_WAIT_SECONDS.observe(result.seconds)
        return result

    async def _wait(self, projection: Projection, token: ConsistencyToken, bound: float) -> WaitResult:
        started = time.monotonic()
        deadline = started + bound
        pause = self._replica_pause
        with self._hub.watch(
            projection.name, token.aggregate_type, token.aggregate_id, token.version
        ) as waiter:
            while True:
                # Cleared before the check: a notification arriving during it keeps the event set.
                waiter.event.clear()
                applied, schema = await self._applied(projection, token)
                waiter.checks += 1
                remaining = deadline - time.monotonic()
                if applied >= token.version or remaining <= 0:
                    break
                if waiter.announced_in(schema) >= token.version:
                    await asyncio.sleep(min(pause, remaining))
                    pause = min(pause * 2, _REPLICA_PAUSE_MAX)
                    continue
                # On timeout: one last check at the deadline, then answer.
                waiter.parked = True
                try:
                    with contextlib.suppress(TimeoutError):
                        async with asyncio.timeout(remaining):
                            await waiter.event.wait()
                finally:
                    waiter.parked = False
        checks = waiter.checks
        outcome: Outcome = "timeout" if applied < token.version else "immediate" if checks == 1 else "woken"
        return WaitResult(outcome, applied, checks, time.monotonic() - started)

    async def visible(self, projection: Projection, aggregate: tuple[str, str, int], bound: float) -> bool:
        """Whether the reader shows `aggregate` at `(type, id, version)` within `bound` s (for streams)."""
        token = ConsistencyToken(*aggregate)
        return (await self._wait(projection, token, bound)).reached
