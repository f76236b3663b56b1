"""Fixtures of the deployment tests: the Docker engine with the project's images built, and the three
service images started against the native stack (each test with its own topics and databases)."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator

import pytest

from cqrs_shared.testing.service_processes import E2E_SECRET, free_port
from tests.deploy.containers import (
    Container,
    Engine,
    EngineUnavailableError,
    build_images,
    connect,
)


@pytest.fixture(scope="session")
def engine() -> Engine:
    """A Docker engine holding freshly built images. Where this machine can neither reach an engine nor
    start one (not root, no dockerd), the image tests are reported skipped with the reason. A private
    engine keeps running afterwards, like the native stack (`scripts/deploy/engine.sh stop`)."""
    try:
        engine = connect()
    except EngineUnavailableError as exc:
        pytest.skip(f"no Docker engine here: {exc}")
    started = time.monotonic()
    build_images(engine)
    print(f"\nimages built (or confirmed from the build cache) in {time.monotonic() - started:.1f} s")
    return engine


@pytest.fixture
def image_env(
    kafka_bootstrap: str, mongodb_uri: str, pg_database: str, topic_prefix: str, unique: str
) -> dict[str, str]:
    """Only what a deployment sets: the containers get nothing else from this process's environment."""
    return {
        "KAFKA_BOOTSTRAP_SERVERS": kafka_bootstrap,
        "MONGODB_URI": mongodb_uri,
        "MONGODB_DATABASE": f"img_{unique}",
        "DATABASE_URL": pg_database,
        "CQRS_TOPIC_PREFIX": topic_prefix,
        "CQRS_AUTH_MODE": "jwt",
        "JWT_SECRET": E2E_SECRET,
        "LOG_FORMAT": "json",
        "QUERY_SVC_CURSOR_SECRET": "image-e2e-cursor-secret-0123456789",
    }


@pytest.fixture
def start_image(engine: Engine, image_env: dict[str, str]) -> Iterator[Callable[..., Container]]:
    """Start a service image on a free loopback port (distinct from the shared stack's services)."""
    started: list[Container] = []

    def start(service: str, **extra_env: str) -> Container:
        port = free_port()
        variable = service.upper().replace("-", "_") + "_PORT"
        container = Container(engine, service, port, {**image_env, variable: str(port), **extra_env})
        started.append(container.start())
        return container

    yield start
    for container in started:
        container.remove()
