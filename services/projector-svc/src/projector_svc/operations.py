"""The projector's operator surface: everything tools (the `cqrs` CLI) do to a projection, in one place.

Each call opens what it needs from the settings (a small pool, a Kafka client) and closes it again:
- `status`: builds, the active build's position and lag per partition, staleness, parked counts;
- `rebuild`: a fresh build from the event topics' history, caught up and swapped in (see `rebuild`);
- `list_parked` / `replay`: parked events, and their replay by the replica owning the partition;
- `prune` / `drop`: remove retired (or abandoned) builds;
- `dead_letters`: the records on `events.dlq` with their `dlq.*` headers;
- `aggregate_progress`: how far the active build has applied one aggregate (`cqrs command trace`).
Projections are named as in `PROJECTOR_SVC_PROJECTIONS` (`projection_named`).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field

from cqrs_shared.read_models import ProjectionDefinition
from cqrs_shared.topics import TopicNames
from projector_svc import parked, service
from projector_svc import rebuild as rebuilds
from projector_svc.builds import Build, BuildInfo, active_schema, drop_build, ensure_active_build, list_builds
from projector_svc.declared import DeclaredProjection, projection_named
from projector_svc.event_topics import end_offsets, read_all, record_counts
from projector_svc.incoming import AggregateKey
from projector_svc.parked import NoActiveBuildError, ParkedEvent
from projector_svc.pg import Connection, pool_for
from projector_svc.positions import stored_offsets
from projector_svc.rebuild import RebuildAlreadyRunningError, RebuildOptions, Report
from projector_svc.replayer import Progress, SwapTimeoutError
from projector_svc.settings import ProjectorSettings

__all__ = [
    "AggregateProgress",
    "Build",
    "BuildInfo",
    "DeadLetterRecord",
    "NoActiveBuildError",
    "ParkedEvent",
    "PartitionLag",
    "Progress",
    "ProjectionStatus",
    "RebuildAlreadyRunningError",
    "RebuildOptions",
    "SwapTimeoutError",
    "aggregate_progress",
    "dead_letter_counts",
    "dead_letters",
    "drop",
    "list_parked",
    "prepare_topics",
    "projection_named",
    "prune",
    "rebuild",
    "replay",
    "status",
]


@dataclass(frozen=True, slots=True)
class PartitionLag:
    """One partition of a source topic: where the active build is, and where the topic ends."""

    topic: str
    partition: int
    position: int
    end: int

    @property
    def lag(self) -> int:
        return max(0, self.end - self.position)


@dataclass(frozen=True, slots=True)
class ProjectionStatus:
    """A projection as an operator sees it."""

    projection: str
    builds: list[BuildInfo]
    active: str | None
    partitions: list[PartitionLag] = field(default_factory=list)
    #: Seconds since the newest applied event of a partition that was behind at its last batch
    #: (0: every partition had caught up); the same figure query-svc reports as `X-Staleness-Ms`.
    staleness_seconds: float = 0.0
    parked: dict[str, int] = field(default_factory=dict)

    @property
    def lag(self) -> int:
        return sum(p.lag for p in self.partitions)


@dataclass(frozen=True, slots=True)
class AggregateProgress:
    """One aggregate in a projection's active build: the version applied (0: none) and what of its
    history is parked (waiting for a gap, refused, or held behind a refused event)."""

    projection: str
    build: str
    applied_version: int
    parked: list[ParkedEvent] = field(default_factory=list)

    def state_of(self, version: int) -> str:
        """`applied`, `parked (<reason>)` or `pending` (not reached yet) for one event version."""
        if version <= self.applied_version:
            return "applied"
        reason = next((p.reason for p in self.parked if p.version == version), None)
        return f"parked ({reason})" if reason else "pending"


@dataclass(frozen=True, slots=True)
class DeadLetterRecord:
    """A record on `events.dlq`: its offset, `dlq.*` headers and value (decoded for display)."""

    offset: int
    headers: dict[str, str]
    value: str


@asynccontextmanager
async def _connection(settings: ProjectorSettings) -> AsyncIterator[Connection]:
    pool = await pool_for(settings, max_size=1)
    try:
        async with pool.acquire() as connection:
            yield connection
    finally:
        await pool.close()


_STALENESS = """
SELECT COALESCE(max(extract(epoch FROM now() - last_event_at)) FILTER (WHERE next_offset < high_watermark), 0)
FROM "{schema}".partition_offsets
"""


async def status(settings: ProjectorSettings, projection: str) -> ProjectionStatus:
    """Builds, position and lag per partition of the active build, staleness and parked counts."""
    declared = projection_named(projection)
    async with _connection(settings) as connection:
        if await connection.fetchval("SELECT to_regclass('projector.builds')") is None:
            return ProjectionStatus(projection, [], None)  # no projector ever ran on this database
        builds = await list_builds(connection, projection)
        schema = await active_schema(connection, projection)
        if schema is None:
            return ProjectionStatus(projection, builds, None)
        at = await stored_offsets(connection, schema)
        staleness = float(await connection.fetchval(_STALENESS.format(schema=schema)))
        counts = await parked.parked_counts(connection, projection)
    topics = TopicNames(settings.topic_prefix)
    ends = await end_offsets(
        settings.kafka_bootstrap_servers, [topics.events(t) for t in declared.aggregate_types]
    )
    lags = [PartitionLag(t, p, at.get((t, p), 0), end) for (t, p), end in sorted(ends.items())]
    return ProjectionStatus(projection, builds, schema, lags, staleness, counts)


async def prepare_topics(settings: ProjectorSettings, projection: str) -> TopicNames:
    """Create the projection's event topics (kept forever) and the events DLQ where missing, as
    projector-svc does at start-up, for a step that runs before any replica (or a benchmark)."""
    return await service.prepare_topics(settings, projection_named(projection))


async def migrate(settings: ProjectorSettings, projection: str) -> Build:
    """Create the projection's first build or apply its pending migrations to the active one: what
    projector-svc does at start-up (one transaction under the projection's advisory lock), for a
    deployment step that runs before any replica (the Helm chart's setup Job). The active build."""
    declared = projection_named(projection)
    async with _connection(settings) as connection:
        return await ensure_active_build(connection, declared)


async def rebuild(
    settings: ProjectorSettings,
    projection: str | ProjectionDefinition,
    options: RebuildOptions | None = None,
    report: Report = lambda _: None,
) -> Build:
    """Build the projection again from the event topics' history beside the live build and (by
    default) swap it in atomically; `report` receives progress. `RebuildAlreadyRunningError` when
    another rebuild runs, `SwapTimeoutError` when the cut-over could not complete. A projection is
    named as in the settings, or given as a definition (a domain outside `cqrs_shared.read_models`)."""
    declared = projection_named(projection) if isinstance(projection, str) else DeclaredProjection(projection)
    return await rebuilds.rebuild(settings, declared, options or RebuildOptions(), report)


async def prune(settings: ProjectorSettings, projection: str) -> list[Build]:
    """Drop the retired builds of a projection (kept after a rebuild for comparison); returns them."""
    async with _connection(settings) as connection:
        retired = [b.build for b in await list_builds(connection, projection) if b.status == "retired"]
        for build in retired:
            await drop_build(connection, build)
        return retired


async def drop(settings: ProjectorSettings, projection: str, number: int) -> Build:
    """Drop one build that is not active (`ValueError` for the active one)."""
    build = Build(projection, number)
    async with _connection(settings) as connection:
        await drop_build(connection, build)
    return build


async def list_parked(
    settings: ProjectorSettings,
    projection: str,
    *,
    reason: str | None = None,
    aggregates: Sequence[AggregateKey] = (),
    limit: int = 1000,
) -> list[ParkedEvent]:
    """Parked events of the active build, each aggregate in version order."""
    async with _connection(settings) as connection:
        return await parked.list_parked(
            connection, projection, reason=reason, aggregates=aggregates, limit=limit
        )


async def replay(
    settings: ProjectorSettings,
    projection: str,
    aggregates: Sequence[AggregateKey] = (),
    *,
    wait: float = 0.0,
) -> tuple[list[AggregateKey], list[ParkedEvent]]:
    """Ask for the replay of these aggregates' parked events (all when none given); with `wait`,
    wait that long for a replica to replay them. Returns the aggregates marked and what is parked
    again; `TimeoutError` when no replica replayed them in time."""
    async with _connection(settings) as connection:
        marked = await parked.request_replay(connection, projection, aggregates)
        if not marked or wait <= 0:
            return marked, []
        return marked, await parked.wait_for_replay(connection, projection, marked, within=wait)


async def aggregate_progress(
    settings: ProjectorSettings, projection: str, aggregate: AggregateKey
) -> AggregateProgress:
    """The applied version and parked events of one aggregate in the active build, read in one
    snapshot (`NoActiveBuildError` when the projection never ran on this database)."""
    async with _connection(settings) as connection, connection.transaction(isolation="repeatable_read"):
        ran = await connection.fetchval("SELECT to_regclass('projector.builds')") is not None
        schema = await active_schema(connection, projection) if ran else None
        if schema is None:
            raise NoActiveBuildError(f"{projection} has no active build in this database")
        applied = await connection.fetchval(
            f'SELECT version FROM "{schema}".aggregate_versions'  # noqa: S608  # schema from projector.builds
            " WHERE aggregate_type = $1 AND aggregate_id = $2",
            *aggregate,
        )
        held = await parked.list_parked(connection, projection, aggregates=[aggregate])
    return AggregateProgress(projection, schema, applied or 0, held)


async def dead_letter_counts(settings: ProjectorSettings) -> dict[str, int]:
    """Records on the dead-letter topics (`commands.dlq`, `events.dlq`), by topic."""
    topics = TopicNames(settings.topic_prefix)
    return await record_counts(settings.kafka_bootstrap_servers, [topics.commands_dlq, topics.events_dlq])


async def dead_letters(settings: ProjectorSettings) -> list[DeadLetterRecord]:
    """Every record on `events.dlq`, oldest first."""
    name = TopicNames(settings.topic_prefix).events_dlq
    records = await read_all(settings.kafka_bootstrap_servers, name)
    return [
        DeadLetterRecord(
            record.offset,
            {k: v.decode(errors="replace") for k, v in record.headers if k.startswith("dlq.")},
            (record.value or b"").decode(errors="replace"),
        )
        for record in records
    ]
