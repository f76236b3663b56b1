"""CPU seconds of a set of processes, from /proc, so a figure can be given per operation.

A run on a shared machine cannot be compared across runs by its wall-clock rates; CPU time spent by
the processes that did the work, divided by the operations done, can. The set is named by role:
the service processes and their children, the load generator, and the infrastructure processes
this machine shows (PostgreSQL always; Kafka and FerretDB when they run in this PID namespace).
The infrastructure is shared with whatever else uses the stack, so its share is an upper bound.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

CLOCK_TICKS = os.sysconf("SC_CLK_TCK")
#: The stack's server programs (scripts/infra), by the name of the program they run.
INFRA_PROGRAMS = ("postgres", "ferretdb", "java")


def cpu_seconds(pids: list[int]) -> float:
    """User + system CPU of `pids` (processes that are gone count nothing)."""
    total = 0
    for pid in pids:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        total += int(fields[11]) + int(fields[12])  # utime, stime
    return total / CLOCK_TICKS


def _cmdlines() -> dict[int, bytes]:
    found = {}
    for proc in Path("/proc").iterdir():
        if proc.name.isdigit():
            try:
                found[int(proc.name)] = (proc / "cmdline").read_bytes()
            except OSError:
                continue
    return found


def _is_server(cmd: bytes, programs: tuple[str, ...]) -> bool:
    # A PostgreSQL backend renames itself ("postgres: cqrs db 127.0.0.1(…) idle"); the JVM counts
    # only when it runs Kafka. Matching the program, not any argument, keeps test runs whose
    # arguments name "kafka" or "postgres" out of the set.
    program = Path(cmd.split(b"\0", 1)[0].split(b" ", 1)[0].decode(errors="replace")).name.rstrip(":")
    name = program.lower()
    if name == "java":
        return "java" in programs and b"kafka" in cmd
    return any(name.startswith(p) for p in programs if p != "java")


def infra_pids(programs: tuple[str, ...] = INFRA_PROGRAMS) -> list[int]:
    """The visible stack server processes (PostgreSQL backends included)."""
    return [pid for pid, cmd in _cmdlines().items() if _is_server(cmd, programs)]


def database_backends(database: str) -> list[int]:
    """PostgreSQL backends serving `database` (their process title is `postgres: <user> <database>
    <client> <state>`): the server's work for one benchmark's connections, without what other
    users of a shared server make it do."""
    found = []
    for pid, cmd in _cmdlines().items():
        title = cmd.split(b"\0", 1)[0].decode(errors="replace").split()
        if len(title) >= 3 and title[0] == "postgres:" and title[2] == database:
            found.append(pid)
    return found


class BackendsCpu:
    """CPU seconds of one database's PostgreSQL backends over a phase, sampled every 0.2 s while
    it runs: a pool opens connections during the phase and closes others, so a set of pids fixed
    at the start (`CpuMeter`) misses them. A backend that appeared counts all its CPU; a backend's
    last 0.2 s before it ends may be missed."""

    def __init__(self, database: str) -> None:
        self._database = database
        self._first: dict[int, float] = {}
        self._last: dict[int, float] = {}
        self._task: asyncio.Task[None] | None = None

    def _sample(self, *, starting: bool) -> None:
        for pid in database_backends(self._database):
            spent = cpu_seconds([pid])
            self._first.setdefault(pid, spent if starting else 0.0)
            self._last[pid] = spent

    async def _poll(self) -> None:
        while True:
            await asyncio.sleep(0.2)
            self._sample(starting=False)

    def start(self) -> None:
        self._sample(starting=True)
        self._task = asyncio.create_task(self._poll())

    async def stop(self) -> float:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        self._sample(starting=False)
        return sum(self._last[pid] - self._first[pid] for pid in self._last)


def store_pids() -> list[int]:
    """FerretDB and PostgreSQL processes: the write store as this machine runs it."""
    return infra_pids(("ferretdb", "postgres"))


def descendants(root: int) -> list[int]:
    """`root` and every process below it."""
    children: dict[int, list[int]] = {}
    for proc in Path("/proc").iterdir():
        if proc.name.isdigit():
            try:
                parent = int((proc / "stat").read_text().rsplit(")", 1)[1].split()[1])
            except (OSError, ValueError, IndexError):
                continue
            children.setdefault(parent, []).append(int(proc.name))
    found, todo = [], [root]
    while todo:
        pid = todo.pop()
        found.append(pid)
        todo.extend(children.get(pid, []))
    return found


#: A role's processes: fixed pids, or a function naming them when a measurement starts (PostgreSQL
#: backends of a pool opened after the role was declared).
Role = list[int] | Callable[[], list[int]]


@dataclass
class CpuMeter:
    """CPU seconds by role between `start()` and `stop()`; each role's pids are fixed at `start()`."""

    roles: Mapping[str, Role]
    _pids: dict[str, list[int]] = field(default_factory=dict)
    _started: dict[str, float] = field(default_factory=dict)

    def start(self) -> None:
        self._pids = {role: pids() if callable(pids) else pids for role, pids in self.roles.items()}
        self._started = {role: cpu_seconds(pids) for role, pids in self._pids.items()}

    def stop(self) -> dict[str, float]:
        """Seconds per role since `start()`, and their `total`."""
        spent = {role: cpu_seconds(pids) - self._started[role] for role, pids in self._pids.items()}
        return {**spent, "total": sum(spent.values())}
