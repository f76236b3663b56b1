"""Rebuild a projection without downtime: a fresh build from the full history, caught up, swapped in.

1. A new build schema (`<projection>_b<n>`, status `building`) is created and migrated; readers
   keep reading the active build through `read.*` the whole time.
2. A group-less consumer assigned to every partition of the event topics replays them from offset
   0 (they are kept forever, see `event_topics`) through the same runtime as the live projector,
   into the new build, with its own offsets stored in it.
3. Cutover, once within `catch_up_lag` records of the end: in one transaction, the live build's
   offsets table is locked (live batches pause for a moment), the new build is brought up to at
   least those offsets on every partition, and `read.*` is repointed to it. So readers never go
   back in time: the new build holds everything the old one showed. Live replicas notice the
   switch at their next transaction and resume from the new build's offsets.
A session advisory lock lets only one rebuild per projection run; an interrupted rebuild is resumed
from its stored offsets by the next one (or discarded with `fresh=True`).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass

from cqrs_shared.kafka_io import make_producer
from projector_svc import bulk_load, gc_tuning
from projector_svc.builds import (
    LOCK_NAMESPACE,
    Build,
    activate,
    active_schema,
    create_build,
    drop_build,
    ensure_active_build,
    list_builds,
    migrate_build,
)
from projector_svc.dead_letters import DeadLetterSink
from projector_svc.pg import Connection, pool_for
from projector_svc.positions import PartitionKey, stored_offsets
from projector_svc.projection import Projection
from projector_svc.replayer import Progress, Replayer, SwapTimeoutError
from projector_svc.service import prepare_topics
from projector_svc.settings import ProjectorSettings

log = logging.getLogger(__name__)

_SWAP_ATTEMPTS = 5
#: Longest the live build's batches are paused for one cutover attempt.
_SWAP_PAUSE_SECONDS = 5.0

Report = Callable[[Progress], None]


@dataclass(frozen=True, slots=True)
class RebuildOptions:
    catch_up_lag: int = 200
    fresh: bool = False
    swap: bool = True
    report_interval: float = 1.0


class RebuildAlreadyRunningError(Exception):
    """Another rebuild of this projection holds the rebuild lock."""


async def rebuild(
    settings: ProjectorSettings,
    projection: Projection,
    options: RebuildOptions = RebuildOptions(),
    report: Report = lambda _: None,
) -> Build:
    """Build `projection` again from the event topics' history and (by default) swap it in."""
    topics = await prepare_topics(settings, projection)
    pool = await pool_for(settings, max_size=3)
    producer = make_producer(settings.kafka_bootstrap_servers, client_id="projector-rebuild")
    await producer.start()
    lock_key = f"rebuild:{projection.name}"
    try:
        async with pool.acquire() as control:
            if not await control.fetchval(
                "SELECT pg_try_advisory_lock($1, hashtext($2))", LOCK_NAMESPACE, lock_key
            ):
                raise RebuildAlreadyRunningError(f"a rebuild of {projection.name} is already running")
            try:
                build = await _target_build(control, projection, fresh=options.fresh)
                sink = DeadLetterSink(producer, topics.events_dlq, projection=projection.name)
                bulk = bulk_load.bulk_variant(projection)
                if bulk is not None:
                    await bulk_load.begin(control, projection, build)
                replaying = bulk or projection
                with gc_tuning.tuned():
                    async with Replayer(
                        settings, replaying, pool, sink, build, topics, report, options.report_interval
                    ) as replayer:
                        await replayer.until_lag(options.catch_up_lag)
                        await bulk_load.finish(control, bulk, build)
                        await replayer.until_lag(options.catch_up_lag)
                        if options.swap:
                            await _cut_over(control, projection, build, replayer, options.catch_up_lag)
                        replayer.report_now("swapped" if options.swap else "built")
                return build
            finally:
                await control.execute("SELECT pg_advisory_unlock($1, hashtext($2))", LOCK_NAMESPACE, lock_key)
    finally:
        await producer.stop()
        await pool.close()


async def catch_up(
    settings: ProjectorSettings, projection: Projection, build: Build, report: Report = lambda _: None
) -> None:
    """Project into one given build from its stored offsets up to the end, without activating it
    (e.g. to finish a retired build and compare it with the active one)."""
    topics = await prepare_topics(settings, projection)
    pool = await pool_for(settings, max_size=2)
    producer = make_producer(settings.kafka_bootstrap_servers, client_id="projector-catch-up")
    await producer.start()
    try:
        sink = DeadLetterSink(producer, topics.events_dlq, projection=projection.name)
        with gc_tuning.tuned():
            async with Replayer(settings, projection, pool, sink, build, topics, report, 1.0) as replayer:
                await replayer.until_lag(0)
    finally:
        await producer.stop()
        await pool.close()


async def _target_build(connection: Connection, projection: Projection, *, fresh: bool) -> Build:
    """The unfinished build to resume, or a new one."""
    await ensure_active_build(connection, projection)
    unfinished = [b.build for b in await list_builds(connection, projection.name) if b.status == "building"]
    resumed = unfinished.pop() if unfinished and not fresh else None
    for stale in unfinished:
        await drop_build(connection, stale)
    if resumed is not None:
        await migrate_build(connection, projection, resumed)
        log.info("resuming the unfinished rebuild %s", resumed.schema)
        return resumed
    return await create_build(connection, projection)


async def _cut_over(
    control: Connection, projection: Projection, build: Build, replayer: Replayer, catch_up_lag: int
) -> None:
    for attempt in range(1, _SWAP_ATTEMPTS + 1):
        try:
            async with control.transaction():
                live = await active_schema(control, projection.name)
                target: dict[PartitionKey, int] = {}
                if live is not None:
                    # SHARE conflicts with the live batches' writes: they wait until we commit.
                    await control.execute(f'LOCK TABLE "{live}".partition_offsets IN SHARE MODE')
                    target = await stored_offsets(control, live)
                await replayer.until_offsets(control, target, within=_SWAP_PAUSE_SECONDS)
                await activate(control, projection, build)
        except SwapTimeoutError:
            log.warning("cut-over attempt %d timed out; catching up again", attempt)
            await replayer.until_lag(catch_up_lag)
        else:
            log.info("swapped in %s (it holds everything %s showed)", build.schema, live)
            return
    raise SwapTimeoutError(
        f"{build.schema} could not catch up with the live build; it stays built, not active"
    )
