"""Fixtures for CLI tests that need projector replicas, Kafka topics and a database."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

import pytest
from typer.testing import CliRunner, Result

from cqrs_cli.main import app
from projector_svc.settings import ProjectorSettings
from projector_svc.testing.fixtures import feed, pool, settings, start_projector, topics

__all__ = ["cqrs", "feed", "pool", "settings", "start_projector", "topics"]


@pytest.fixture
def cqrs(settings: ProjectorSettings, monkeypatch: pytest.MonkeyPatch) -> Callable[..., Awaitable[Result]]:
    """Run `cqrs <args>` against this test's topics and database; returns typer's result."""
    monkeypatch.setenv("DATABASE_URL", settings.database_url.get_secret_value())
    monkeypatch.setenv("KAFKA_BOOTSTRAP_SERVERS", settings.kafka_bootstrap_servers)
    monkeypatch.setenv("CQRS_TOPIC_PREFIX", settings.topic_prefix)
    runner = CliRunner()

    async def run(*args: str) -> Result:
        # The commands run their own event loop, so they run in a thread beside the test's loop.
        return await asyncio.to_thread(runner.invoke, app, list(args))

    return run
