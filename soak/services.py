"""The three services as supervised processes: started, signalled, and restarted like an orchestrator would.

The supervisor plays Kubernetes' part: a process that exits is started again (an unexpected exit is
recorded), and one whose `/healthz` fails several probes in a row is killed and started again
(recorded too). A process the soak itself paused (SIGSTOP) is never probed for liveness.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import logging
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import httpx

log = logging.getLogger(__name__)

_PR_SET_PDEATHSIG = 1
_RESTART_BACKOFF_S = 1.0


def _die_with_parent() -> None:
    """Runs in the child before exec: the kernel kills it if the soak process dies, so no service
    outlives a crashed or killed soak."""
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)


@dataclass
class Incident:
    """Something the supervisor had to do that no fault asked for."""

    at: float
    service: str
    what: str


@dataclass
class ServiceProcess:
    name: str
    module: str
    port: int
    env: dict[str, str]
    log_path: Path
    process: subprocess.Popen[bytes] | None = field(default=None, init=False)
    paused: bool = field(default=False, init=False)
    #: Set by the fault that is killing the process on purpose: its exit is not an incident.
    expected_exit: bool = field(default=False, init=False)
    starts: int = field(default=0, init=False)
    #: Time of the last start, and whether `/readyz` answered 200 since (liveness probing starts then).
    started_at: float = field(default=0.0, init=False)
    seen_ready: bool = field(default=False, init=False)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> None:
        with self.log_path.open("ab") as service_log:
            self.process = subprocess.Popen(  # noqa: S603  # fixed argv: this interpreter, a module name
                [sys.executable, "-m", self.module],
                env=self.env,
                stdout=service_log,
                stderr=subprocess.STDOUT,
                preexec_fn=_die_with_parent,  # no threads are started before the soak forks
            )
        self.paused = False
        self.expected_exit = False
        self.starts += 1
        self.started_at = time.monotonic()
        self.seen_ready = False

    def exited(self) -> bool:
        return self.process is None or self.process.poll() is not None

    def signal(self, sig: int) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(sig)

    async def kill(self) -> None:
        """SIGKILL and wait until the process is gone (reaped)."""
        self.expected_exit = True
        if self.paused:
            self.paused = False
        self.signal(signal.SIGKILL)
        if self.process is not None:
            await asyncio.to_thread(self.process.wait)

    def pause(self) -> None:
        self.paused = True
        self.signal(signal.SIGSTOP)

    def resume(self) -> None:
        self.signal(signal.SIGCONT)
        self.paused = False

    async def stop(self) -> None:
        """Graceful stop at the end of a run: SIGCONT (if paused), SIGTERM, SIGKILL after 20 s."""
        self.expected_exit = True
        self.resume()
        self.signal(signal.SIGTERM)
        if self.process is not None:
            try:
                await asyncio.to_thread(self.process.wait, 20)
            except subprocess.TimeoutExpired:
                self.signal(signal.SIGKILL)
                await asyncio.to_thread(self.process.wait)

    async def status(self, client: httpx.AsyncClient, path: str) -> int | None:
        """HTTP status of `path`, or None when the process does not answer."""
        try:
            return (await client.get(f"{self.url}{path}", timeout=2.0)).status_code
        except httpx.HTTPError:
            return None


class Supervisor:
    """Restarts exited processes at once, and processes failing `failures` liveness probes in a row."""

    def __init__(self, services: list[ServiceProcess], *, period_s: float, failures: int) -> None:
        self.services = services
        self.incidents: list[Incident] = []
        self._period = period_s
        self._failures = failures
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="supervisor")

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    async def _run(self) -> None:
        failed = dict.fromkeys((s.name for s in self.services), 0)
        last_probe = time.monotonic()
        async with httpx.AsyncClient() as client:
            while True:
                await asyncio.sleep(0.25)
                for service in self.services:
                    self._restart_if_exited(service)
                if time.monotonic() - last_probe < self._period:
                    continue
                last_probe = time.monotonic()
                for service in self.services:
                    failed[service.name] = await self._probe(client, service, failed[service.name])

    def _restart_if_exited(self, service: ServiceProcess) -> None:
        if not service.exited() or service.expected_exit:
            return
        if time.monotonic() - service.started_at < _RESTART_BACKOFF_S:
            return  # a process that dies while starting is not restarted in a tight loop
        code = service.process.returncode if service.process else None
        self._record(service, f"exited unexpectedly with {code}; restarted")
        service.start()

    async def _probe(self, client: httpx.AsyncClient, service: ServiceProcess, failed: int) -> int:
        if service.paused or service.exited():
            return 0
        if not service.seen_ready:
            service.seen_ready = await service.status(client, "/readyz") == 200
            return 0
        if await service.status(client, "/healthz") == 200:
            return 0
        if failed + 1 < self._failures:
            return failed + 1
        self._record(service, f"failed {self._failures} liveness probes; killed and restarted")
        await service.kill()
        service.start()
        return 0

    def _record(self, service: ServiceProcess, what: str) -> None:
        log.warning("%s: %s", service.name, what)
        self.incidents.append(Incident(time.monotonic(), service.name, what))
