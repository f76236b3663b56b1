"""Liveness: is this process still making progress, or should the orchestrator restart it?

Readiness (`/readyz`) asks whether the dependencies answer; liveness (`/healthz`) asks whether this
process can still do its job if they do. A process whose consumer loop hangs on an await that never
returns, or whose database client stopped sending operations while the database answers others, is
alive in the operating system's sense and useless in every other: only a restart cures it.

Each long-running loop registers a `Heartbeat` and beats whenever it completes a turn, whether the
turn did work, found nothing to do, or failed on a dependency and will retry (a loop that keeps
failing on an outage is turning, and readiness reports the outage). Other watchdogs report a
`Wedge` (for example a client that fails while a fresh client to the same server succeeds).
`/healthz` fails while any heartbeat has been silent longer than its bound or any wedge is reported.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field

Clock = Callable[[], float]


@dataclass
class Heartbeat:
    """One loop's proof of life. `beat()` after every completed turn; cheap enough for hot loops."""

    name: str
    max_silence_seconds: float
    clock: Clock = time.monotonic
    last: float = field(default=0.0)

    def __post_init__(self) -> None:
        self.last = self.clock()

    def beat(self) -> None:
        self.last = self.clock()

    def silence(self) -> float:
        return self.clock() - self.last


class LivenessMonitor:
    """The heartbeats and wedge reports of one process; `problems()` is what `/healthz` shows."""

    def __init__(self, clock: Clock = time.monotonic) -> None:
        self._clock = clock
        self._heartbeats: dict[str, Heartbeat] = {}
        self._wedges: dict[str, str] = {}

    def heartbeat(self, name: str, max_silence_seconds: float) -> Heartbeat:
        """Register (or re-register, after a restart of the loop) the heartbeat of loop `name`."""
        beat = Heartbeat(name, max_silence_seconds, self._clock)
        self._heartbeats[name] = beat
        return beat

    def retire(self, name: str) -> None:
        """The loop stopped on purpose (shutdown): its silence is no longer a problem."""
        self._heartbeats.pop(name, None)

    def report_wedge(self, name: str, detail: str) -> None:
        self._wedges[name] = detail

    def clear_wedge(self, name: str) -> None:
        self._wedges.pop(name, None)

    def problems(self) -> dict[str, str]:
        found = {
            name: f"no progress for {beat.silence():.1f} s (bound {beat.max_silence_seconds:g} s)"
            for name, beat in self._heartbeats.items()
            if beat.silence() > beat.max_silence_seconds
        }
        found.update(self._wedges)
        return found
