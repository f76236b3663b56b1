"""`cqrs setup`: create the Kafka topics and migrate the read store, once, before services start.

Deployments run it as one process per install or upgrade (the Helm chart's pre-install/pre-upgrade
Job), so partition counts, retention and read-model migrations are decided there rather than by
whichever replica happens to start first. It does exactly what the services do at start-up (topic
creation and migrations are idempotent and locked), so the services still start on their own locally.
"""

from __future__ import annotations

import asyncio
from typing import Annotated

import typer

from cqrs_shared.topics import TopicNames, ensure_topics
from projector_svc.builds import ensure_active_build
from projector_svc.event_topics import ensure_kept_forever
from projector_svc.pg import create_pool
from projector_svc.runtime import ProjectorRuntime
from projector_svc.settings import ProjectorSettings
from projector_svc.views import PROJECTIONS, projection_named


async def _setup(views: list[str]) -> list[str]:
    settings = ProjectorSettings()
    topics = TopicNames(settings.topic_prefix)
    # The command side's own topics; its event topics are the projections' sources below (retained forever).
    await ensure_topics(
        settings.kafka_bootstrap_servers,
        [topics.commands, topics.command_results, topics.commands_dlq],
        partitions=settings.topic_partitions,
        replication_factor=settings.topic_replication_factor,
    )
    done = []
    pool = await create_pool(settings.database_url.get_secret_value(), max_size=1)
    try:
        for view in views:
            projection = projection_named(view)
            # What the projector's start-up does (projector_svc.service.prepare_topics, internal to it).
            await ensure_kept_forever(
                settings.kafka_bootstrap_servers,
                [*ProjectorRuntime.source_topics(projection, topics), topics.events_dlq],
                partitions=settings.topic_partitions,
                replication_factor=settings.topic_replication_factor,
            )
            async with pool.acquire() as connection:
                build = await ensure_active_build(connection, projection)
            done.append(f"{view}: topics ready, active build {build.schema} migrated")
    finally:
        await pool.close()
    return done


def run(
    views: Annotated[
        list[str] | None,
        typer.Argument(
            metavar="VIEW...",
            help=f"Projections to prepare (default: all of {', '.join(sorted(PROJECTIONS))}).",
        ),
    ] = None,
) -> None:
    """Create the topics (partitions, retention) and migrate the read models of VIEW... (all by default)."""
    for view in views or []:
        if view not in PROJECTIONS:
            raise typer.BadParameter(f"unknown view {view!r}", param_hint="VIEW")
    for line in asyncio.run(_setup(views or sorted(PROJECTIONS))):
        typer.echo(line)
