"""`cqrs setup`: create every Kafka topic and migrate every read model, once, before the services start.

Deployments run it as one process per install or upgrade (the Helm chart's pre-install/pre-upgrade
Job, compose's `setup` service), so partition counts and retention are decided there and never by
whichever replica happens to start first or by a broker's auto-creation. The services create missing
topics the same way at start-up (idempotently), so it is never required locally.

Read models are migrated the way projector-svc does it at start-up (one transaction under the
projection's advisory lock), so an upgrade's schema change is applied by this one step before the new
replicas start, and a start-up finds nothing left to do.
"""

from __future__ import annotations

import asyncio
from typing import Annotated

import typer

from cqrs_shared.topics import RETAIN_FOREVER, TopicNames, ensure_topics
from projector_svc import operations
from projector_svc.settings import ProjectorSettings


async def _setup(views: list[str]) -> list[str]:
    settings = ProjectorSettings()
    topics = TopicNames(settings.topic_prefix)
    aggregate_types = sorted({t for view in views for t in operations.projection_named(view).aggregate_types})
    # Event topics are history (read models are rebuilt by replaying them), so they are kept forever.
    history = topics.retained_forever(aggregate_types)
    created = await ensure_topics(
        settings.kafka_bootstrap_servers,
        topics.all_for(aggregate_types),
        partitions=settings.topic_partitions,
        replication_factor=settings.topic_replication_factor,
        configs=dict.fromkeys(history, RETAIN_FOREVER),
    )
    lines = [
        f"{name}: {'created' if name in created else 'exists'}" for name in topics.all_for(aggregate_types)
    ]
    for view in views:
        build = await operations.migrate(settings, view)
        lines.append(f"read model {view}: build {build.number} active and migrated")
    return lines


def run(
    views: Annotated[
        list[str] | None,
        typer.Argument(
            metavar="VIEW...", help="Projections whose topics to create (default: PROJECTOR_SVC_PROJECTIONS)."
        ),
    ] = None,
) -> None:
    """Create the topics (partitions, replication, retention) the services and projections VIEW... use,
    and create or migrate each projection's read model."""
    chosen = views or list(ProjectorSettings().projections)
    for view in chosen:
        try:
            operations.projection_named(view)
        except ValueError as exc:
            raise typer.BadParameter(str(exc), param_hint="VIEW") from exc
    for line in asyncio.run(_setup(chosen)):
        typer.echo(line)
