"""`cqrs projector`: rebuild a view without downtime, see its builds and lag, drop retired builds."""

from __future__ import annotations

import asyncio
from typing import Annotated

import typer

from cqrs_shared.topics import TopicNames
from projector_svc.builds import Build, BuildInfo, active_schema, drop_build, list_builds
from projector_svc.declared import projection_named
from projector_svc.event_topics import end_offsets
from projector_svc.operations import parked_counts
from projector_svc.pg import pool_for
from projector_svc.positions import stored_offsets
from projector_svc.projection import Projection
from projector_svc.rebuild import RebuildAlreadyRunningError, RebuildOptions, rebuild
from projector_svc.replayer import Progress, SwapTimeoutError
from projector_svc.runtime import ProjectorRuntime
from projector_svc.settings import ProjectorSettings

app = typer.Typer(help="Rebuild and inspect projections.", no_args_is_help=True)

ViewArgument = Annotated[
    str, typer.Argument(metavar="VIEW", help="A projection defined in cqrs_shared.read_models (e.g. shop).")
]


def _projection(view: str) -> Projection:
    try:
        return projection_named(view)
    except ValueError as exc:
        raise typer.BadParameter(str(exc), param_hint="VIEW") from exc


def _print_progress(progress: Progress) -> None:
    rate = f"{progress.events_per_second:,.0f} events/s"
    if progress.phase == "replaying":
        eta = f"ETA {progress.eta_seconds:.1f}s" if progress.eta_seconds is not None else "ETA ?"
        typer.echo(
            f"{progress.build} replaying: {progress.applied:,} events applied, "
            f"{progress.remaining:,} to go, {rate}, {eta}"
        )
        return
    overall = progress.applied / progress.elapsed_seconds if progress.elapsed_seconds > 0 else 0.0
    done = "swapped in" if progress.phase == "swapped" else "built (not active)"
    typer.echo(
        f"{progress.build} {done}: {progress.applied:,} events in {progress.elapsed_seconds:.1f}s "
        f"({overall:,.0f} events/s)"
    )


@app.command("rebuild")
def rebuild_command(
    view: ViewArgument,
    catch_up_lag: Annotated[
        int, typer.Option(min=0, help="Records behind the end at which the cut-over starts.")
    ] = 200,
    fresh: Annotated[
        bool, typer.Option(help="Discard an interrupted rebuild instead of resuming it.")
    ] = False,
    swap: Annotated[bool, typer.Option(help="Activate the new build once caught up.")] = True,
) -> None:
    """Build VIEW again from the full event history beside the live one, then swap it in atomically.

    Exits 0 when done, 1 when another rebuild runs or the cut-over could not complete."""
    projection = _projection(view)
    options = RebuildOptions(catch_up_lag=catch_up_lag, fresh=fresh, swap=swap)
    try:
        asyncio.run(rebuild(ProjectorSettings(), projection, options, _print_progress))
    except (RebuildAlreadyRunningError, SwapTimeoutError) as exc:
        typer.echo(str(exc), err=True)
        raise typer.Exit(1) from exc


async def _status(
    view: str,
) -> tuple[list[BuildInfo], dict[tuple[str, int], tuple[int, int]], dict[str, int]]:
    settings = ProjectorSettings()
    projection = projection_named(view)
    pool = await pool_for(settings, max_size=1)
    try:
        async with pool.acquire() as connection:
            builds = await list_builds(connection, view)
            schema = await active_schema(connection, view)
            if schema is None:
                return builds, {}, {}
            stored = await stored_offsets(connection, schema)
            parked = await parked_counts(connection, view)
    finally:
        await pool.close()
    topics = ProjectorRuntime.source_topics(projection, TopicNames(settings.topic_prefix))
    ends = await end_offsets(settings.kafka_bootstrap_servers, topics)
    return builds, {k: (stored.get(k, 0), end) for k, end in sorted(ends.items())}, parked


@app.command("status")
def status(view: ViewArgument) -> None:
    """Builds of VIEW, the active build's position and lag per partition, and parked events."""
    _projection(view)
    builds, positions, parked = asyncio.run(_status(view))
    for info in builds:
        activated = f", activated {info.activated_at:%Y-%m-%dT%H:%M:%SZ}" if info.activated_at else ""
        typer.echo(
            f"{info.build.schema}: {info.status} (created {info.created_at:%Y-%m-%dT%H:%M:%SZ}{activated})"
        )
    for (topic, partition), (stored, end) in positions.items():
        typer.echo(f"{topic}[{partition}]: at {stored:,} of {end:,}, lag {max(0, end - stored):,}")
    typer.echo("parked: " + (", ".join(f"{n} {reason}" for reason, n in sorted(parked.items())) or "none"))


async def _prune(view: str) -> list[Build]:
    pool = await pool_for(ProjectorSettings(), max_size=1)
    try:
        async with pool.acquire() as connection:
            retired = [b.build for b in await list_builds(connection, view) if b.status == "retired"]
            for build in retired:
                await drop_build(connection, build)
            return retired
    finally:
        await pool.close()


@app.command("prune")
def prune(view: ViewArgument) -> None:
    """Drop the retired builds of VIEW (kept after a rebuild so it can be compared or inspected)."""
    _projection(view)
    for build in asyncio.run(_prune(view)):
        typer.echo(f"dropped {build.schema}")
