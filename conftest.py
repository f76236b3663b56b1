"""Fixtures shared by every test: where the real servers are, and isolation between tests.

Addresses come from the environment (`make test` exports them after `make up`). Where they are
unset and a Docker engine answers, testcontainers starts the servers instead. Where neither, a test
that needs a server fails with instructions; it is never silently skipped.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any

import pytest

HOW_TO_START = (
    "is not set and no Docker engine answers. Start the local stack with `make up` "
    '(or `scripts/infra/stack.sh up`) and export its addresses with `eval "$(scripts/infra/stack.sh env)"`, '
    "or run the tests through `make test`, which does both."
)


def _docker_answers() -> bool:
    docker = shutil.which("docker")
    if docker is None:
        return False
    try:
        return subprocess.run([docker, "info"], capture_output=True, timeout=10, check=False).returncode == 0  # noqa: S603  # fixed argv
    except (OSError, subprocess.TimeoutExpired):
        return False


def _address(variable: str, start_container: Callable[[], str]) -> str:
    value = os.environ.get(variable)
    if value:
        return value
    if _docker_answers():
        return start_container()
    pytest.fail(f"{variable} {HOW_TO_START}", pytrace=False)


_containers: list[Any] = []


def _keep(container: Any) -> Any:
    _containers.append(container)
    return container


@pytest.fixture(scope="session")
def kafka_bootstrap() -> str:
    def start() -> str:
        from testcontainers.kafka import KafkaContainer

        container = _keep(KafkaContainer().with_kraft().start())
        return str(container.get_bootstrap_server())

    return _address("KAFKA_BOOTSTRAP_SERVERS", start)


@pytest.fixture(scope="session")
def mongodb_uri() -> str:
    def start() -> str:
        from testcontainers.mongodb import MongoDbContainer

        return str(_keep(MongoDbContainer("mongo:7").start()).get_connection_url())

    return _address("MONGODB_URI", start)


@pytest.fixture(scope="session")
def database_url() -> str:
    def start() -> str:
        from testcontainers.postgres import PostgresContainer

        container = _keep(PostgresContainer("postgres:16", driver=None).start())
        return str(container.get_connection_url())

    return _address("DATABASE_URL", start)


@pytest.fixture(scope="session")
def dynamodb_endpoint() -> str:
    def start() -> str:
        from testcontainers.core.container import DockerContainer
        from testcontainers.core.waiting_utils import wait_for_logs

        container = DockerContainer("motoserver/moto:5.1.0").with_exposed_ports(5000).start()
        _keep(container)
        wait_for_logs(container, "Running on")
        return f"http://{container.get_container_host_ip()}:{container.get_exposed_port(5000)}"

    return _address("DYNAMODB_ENDPOINT_URL", start)


@pytest.fixture(scope="session", autouse=True)
def _stop_containers() -> Iterator[None]:
    yield
    for container in _containers:
        container.stop()


@pytest.fixture
def unique() -> str:
    """A short unique token for topic prefixes, database and collection names."""
    return uuid.uuid4().hex[:10]


@pytest.fixture
def topic_prefix(unique: str) -> str:
    return f"t{unique}."


@pytest.fixture
async def pg_database(database_url: str, unique: str) -> AsyncIterator[str]:
    """A fresh, empty PostgreSQL database for one test; its DSN. Dropped afterwards."""
    from cqrs_shared.testing.postgres import fresh_database

    async with fresh_database(database_url, f"t_{unique}") as dsn:
        yield dsn
