"""Run the three services as real processes, each test with its own topics, databases and ports."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest

from cqrs_shared.auth import mint_token

E2E_SECRET = "e2e-secret-0123456789abcdef0123456789abcdef"
ISSUER = AUDIENCE = "cqrs-platform"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class ServiceProcess:
    module: str
    port: int
    env: dict[str, str]
    log_path: Path
    process: subprocess.Popen[bytes] | None = field(default=None, init=False)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> ServiceProcess:
        with self.log_path.open("ab") as log:
            # The child keeps its own copy of the descriptor; ours can close at once.
            self.process = subprocess.Popen(  # noqa: S603  # fixed argv
                [sys.executable, "-m", self.module], env=self.env, stdout=log, stderr=subprocess.STDOUT
            )
        return self

    def wait_ready(self, timeout: float = 60.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            assert self.process is not None
            if self.process.poll() is not None:
                raise AssertionError(f"{self.module} exited with {self.process.returncode}:\n{self.tail()}")
            try:
                if httpx.get(f"{self.url}/readyz", timeout=2).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.2)
        raise AssertionError(f"{self.module} not ready after {timeout}s:\n{self.tail()}")

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 30.0) -> int | None:
        if self.process is None or self.process.poll() is not None:
            return self.process.returncode if self.process else None
        self.process.send_signal(sig)
        try:
            return self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            self.process.kill()
            return self.process.wait(10)

    def tail(self, lines: int = 30) -> str:
        return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])


@dataclass
class Stack:
    command: ServiceProcess
    projector: ServiceProcess
    query: ServiceProcess
    topic_prefix: str
    mongodb_database: str
    database_url: str

    def token(self, *roles: str) -> str:
        return "Bearer " + mint_token(E2E_SECRET, subject="e2e", roles=list(roles), issuer=ISSUER, audience=AUDIENCE)


@pytest.fixture
def service_env(kafka_bootstrap: str, mongodb_uri: str, pg_database: str, topic_prefix: str, unique: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("COMMAND_SVC_", "PROJECTOR_SVC_", "QUERY_SVC_"))}
    env.update(
        KAFKA_BOOTSTRAP_SERVERS=kafka_bootstrap,
        MONGODB_URI=mongodb_uri,
        MONGODB_DATABASE=f"e2e_{unique}",
        DATABASE_URL=pg_database,
        CQRS_TOPIC_PREFIX=topic_prefix,
        CQRS_AUTH_MODE="jwt",
        JWT_SECRET=E2E_SECRET,
        LOG_FORMAT="json",
        LOG_LEVEL="INFO",
        COMMAND_SVC_RELAY_SCAN_INTERVAL_SECONDS="0.5",
    )
    return env


@pytest.fixture
def start_service(service_env: dict[str, str], tmp_path: Path) -> Iterator[Callable[..., ServiceProcess]]:
    started: list[ServiceProcess] = []

    def start(module: str, port_variable: str, **extra_env: str) -> ServiceProcess:
        port = free_port()
        env = {**service_env, port_variable: str(port), **extra_env}
        service = ServiceProcess(module, port, env, tmp_path / f"{module}-{len(started)}.log").start()
        started.append(service)
        return service

    yield start
    for service in started:
        service.stop()


@pytest.fixture
async def stack(start_service: Callable[..., ServiceProcess], service_env: dict[str, str]) -> AsyncIterator[Stack]:
    projector = start_service("projector_svc", "PROJECTOR_SVC_PORT")
    command = start_service("command_svc", "COMMAND_SVC_PORT")
    query = start_service("query_svc", "QUERY_SVC_PORT")
    for service in (projector, command, query):
        service.wait_ready()
    yield Stack(
        command, projector, query, service_env["CQRS_TOPIC_PREFIX"], service_env["MONGODB_DATABASE"],
        service_env["DATABASE_URL"],
    )
