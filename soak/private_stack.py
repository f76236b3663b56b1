"""The soak's own Kafka, PostgreSQL and FerretDB: the project's infra scripts on private ports and state.

Each run gets a directory under `.stack/soak/<run>` as `STACK_DIR` and free ports, so restarting these
servers never touches the developer stack (or another soak). Jars and binaries come from the cache
directory (`STACK_CACHE_DIR`, the developer stack's), never fetched or built again.

A run that dies without tearing down leaves its directory with the owner's pid in `owner.pid`;
the next run stops those servers (through the same scripts) and deletes the directory.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import shutil
import signal
import socket
import time
from dataclasses import dataclass
from pathlib import Path

from soak.config import REPO_ROOT

log = logging.getLogger(__name__)

SCRIPTS = REPO_ROOT / "scripts" / "infra"
COMPONENTS = ("postgres", "ferretdb", "kafka")
HOST = "127.0.0.1"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind((HOST, 0))
        return int(sock.getsockname()[1])


@dataclass(frozen=True)
class Ports:
    postgres: int
    kafka: int
    kafka_controller: int
    ferretdb: int

    @classmethod
    def pick(cls) -> Ports:
        return cls(free_port(), free_port(), free_port(), free_port())


class InfraError(RuntimeError):
    """An infra script failed; the message carries the tail of its output."""


class PrivateStack:
    def __init__(self, state_dir: Path, cache_dir: Path, ports: Ports, log_path: Path) -> None:
        self.state_dir = state_dir
        self.cache_dir = cache_dir
        self.ports = ports
        self._log_path = log_path

    @property
    def kafka_bootstrap(self) -> str:
        return f"{HOST}:{self.ports.kafka}"

    @property
    def mongodb_uri(self) -> str:
        return f"mongodb://{HOST}:{self.ports.ferretdb}/"

    def postgres_dsn(self, database: str = "cqrs") -> str:
        return f"postgresql://cqrs:cqrs@{HOST}:{self.ports.postgres}/{database}"

    def script_env(self) -> dict[str, str]:
        return {
            **os.environ,
            "STACK_DIR": str(self.state_dir),
            "STACK_CACHE_DIR": str(self.cache_dir),
            "STACK_PG_PORT": str(self.ports.postgres),
            "STACK_KAFKA_PORT": str(self.ports.kafka),
            "STACK_KAFKA_CONTROLLER_PORT": str(self.ports.kafka_controller),
            "STACK_FERRETDB_PORT": str(self.ports.ferretdb),
            # A soak broker holds a few topics; the machine also runs the developer stack.
            "KAFKA_HEAP_OPTS": "-Xms256m -Xmx768m",
        }

    # --- lifecycle --------------------------------------------------------------------------------

    async def up(self) -> None:
        self.state_dir.mkdir(parents=True, exist_ok=True)
        (self.state_dir / "owner.pid").write_text(str(os.getpid()))
        (self.state_dir / "ports.json").write_text(json.dumps(self.ports.__dict__))

        async def postgres_then_ferretdb() -> None:
            await self.run("postgres", "up")
            await self.run("ferretdb", "up")

        await asyncio.gather(postgres_then_ferretdb(), self.run("kafka", "up"))

    async def down(self) -> None:
        for component in ("ferretdb", "kafka", "postgres"):
            try:
                await self.run(component, "down")
            except InfraError as exc:
                log.warning("could not stop %s: %s", component, exc)

    def remove(self) -> None:
        shutil.rmtree(self.state_dir, ignore_errors=True)

    async def run(self, component: str, verb: str) -> None:
        """`scripts/infra/<component>.sh <verb>` against this stack; output appended to the stack log."""
        started = time.monotonic()
        process = await asyncio.create_subprocess_exec(
            "bash",
            str(SCRIPTS / f"{component}.sh"),
            verb,
            env=self.script_env(),
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT,
        )
        output, _ = await process.communicate()
        text = output.decode(errors="replace")
        with self._log_path.open("a") as stack_log:
            stack_log.write(f"--- {component} {verb} ({time.monotonic() - started:.1f} s)\n{text}")
        if process.returncode != 0:
            tail = "\n".join(text.splitlines()[-15:])
            raise InfraError(f"{component}.sh {verb} exited with {process.returncode}:\n{tail}")

    # --- faults -----------------------------------------------------------------------------------

    def pids(self, component: str) -> list[int]:
        """The component's processes: Kafka's JVM, FerretDB, or the postmaster and its backends."""
        if component == "postgres":
            pidfile = self.state_dir / "postgres" / "data" / "postmaster.pid"
        else:
            pidfile = self.state_dir / component / f"{component}.pid"
        try:
            main = int(pidfile.read_text().split()[0])
        except (OSError, ValueError, IndexError):
            return []
        return [main, *_children(main)] if component == "postgres" else [main]

    async def crash(self, component: str) -> None:
        """SIGKILL every process of the component at once (a power cut), and wait until they are gone.

        PostgreSQL's backends die with the postmaster: a surviving backend would keep the shared
        memory and the next start would refuse to run.
        """
        pids = self.pids(component)
        if not pids:
            raise InfraError(f"{component}: no running process to kill")
        for pid in pids:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        deadline = time.monotonic() + 15
        while any(_exists(pid) for pid in pids):
            if time.monotonic() > deadline:
                raise InfraError(f"{component}: processes {pids} survived SIGKILL")
            await asyncio.sleep(0.05)

    async def restart(self, component: str, *, graceful: bool, down_s: float = 0.0) -> None:
        """Stop (gracefully or by SIGKILL), stay down `down_s` seconds, start again."""
        if graceful:
            await self.run(component, "down")
        else:
            await self.crash(component)
        await asyncio.sleep(down_s)
        await self.run(component, "up")


def _children(parent: int) -> list[int]:
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        with contextlib.suppress(OSError, ValueError, IndexError):
            # The command name (field 2) may contain spaces; the fields after its ')' do not.
            fields = stat.read_text().rsplit(")", 1)[1].split()
            if int(fields[1]) == parent:
                found.append(int(stat.parent.name))
    return found


def _exists(pid: int) -> bool:
    """Alive or not yet reaped: a zombie still holds its pid file's promise for `pg_ctl status`."""
    return Path(f"/proc/{pid}").exists()


def _abandoned(state_root: Path) -> list[Path]:
    found = []
    for owner in sorted(state_root.glob("*/owner.pid")):
        with contextlib.suppress(ValueError, OSError):
            if _exists(int(owner.read_text())):
                continue
        found.append(owner.parent)
    return found


async def clean_abandoned(state_root: Path, cache_dir: Path) -> list[Path]:
    """Stop and delete the private stacks of soak runs whose process no longer exists."""
    cleaned = []
    for state_dir in _abandoned(state_root):
        try:
            ports = Ports(**json.loads((state_dir / "ports.json").read_text()))
        except (OSError, ValueError, TypeError):
            ports = None
        if ports is not None:
            stack = PrivateStack(state_dir, cache_dir, ports, state_dir.parent / "abandoned.log")
            await stack.down()
        shutil.rmtree(state_dir, ignore_errors=True)
        cleaned.append(state_dir)
    return cleaned
