"""Run the three services as real processes, each test with its own topics, databases and ports."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from cqrs_shared.testing.service_processes import E2E_SECRET, ServiceProcess, free_port
from tests.e2e.harness import Stack


@pytest.fixture
def service_env(
    kafka_bootstrap: str, mongodb_uri: str, pg_database: str, topic_prefix: str, unique: str
) -> dict[str, str]:
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("COMMAND_SVC_", "PROJECTOR_SVC_", "QUERY_SVC_"))
    }
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
        QUERY_SVC_CURSOR_SECRET="e2e-cursor-secret-0123456789",
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
def stack(start_service: Callable[..., ServiceProcess], service_env: dict[str, str]) -> Stack:
    projector = start_service("projector_svc", "PROJECTOR_SVC_PORT")
    command = start_service("command_svc", "COMMAND_SVC_PORT")
    query = start_service("query_svc", "QUERY_SVC_PORT")
    for service in (projector, command, query):
        service.wait_ready()
    return Stack(
        command,
        projector,
        query,
        service_env["CQRS_TOPIC_PREFIX"],
        service_env["MONGODB_DATABASE"],
        service_env["DATABASE_URL"],
    )
