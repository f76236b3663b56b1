"""`cqrs projector`: rebuild a view without downtime, see its builds and lag, drop retired builds."""

from __future__ import annotations

import asyncio
from typing import Annotated

import typer

from projector_svc import operations
from projector_svc.operations import Progress, RebuildAlreadyRunningError, RebuildOptions, SwapTimeoutError
from projector_svc.settings import ProjectorSettings

app = typer.Typer(help="Rebuild and inspect projections.", no_args_is_help=True)

ViewArgument = Annotated[
    str, typer.Argument(metavar="VIEW", help="A projection defined in cqrs_shared.read_models (e.g. shop).")
]


def _projection(view: str) -> str:
    try:
        operations.projection_named(view)
    except ValueError as exc:
        raise typer.BadParameter(str(exc), param_hint="VIEW") from exc
    return view


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
        asyncio.run(operations.rebuild(ProjectorSettings(), projection, options, _print_progress))
    except (RebuildAlreadyRunningError, SwapTimeoutError) as exc:
        typer.echo(str(exc), err=True)
        raise typer.Exit(1) from exc


@app.command("status")
def status(view: ViewArgument) -> None:
    """Builds of VIEW, the active build's position and lag per partition, and parked events."""
    state = asyncio.run(operations.status(ProjectorSettings(), _projection(view)))
    for info in state.builds:
        activated = f", activated {info.activated_at:%Y-%m-%dT%H:%M:%SZ}" if info.activated_at else ""
        typer.echo(
            f"{info.build.schema}: {info.status} (created {info.created_at:%Y-%m-%dT%H:%M:%SZ}{activated})"
        )
    for p in state.partitions:
        typer.echo(f"{p.topic}[{p.partition}]: at {p.position:,} of {p.end:,}, lag {p.lag:,}")
    parked = ", ".join(f"{n} {reason}" for reason, n in sorted(state.parked.items()))
    typer.echo("parked: " + (parked or "none"))


@app.command("prune")
def prune(view: ViewArgument) -> None:
    """Drop the retired builds of VIEW (kept after a rebuild so it can be compared or inspected)."""
    for build in asyncio.run(operations.prune(ProjectorSettings(), _projection(view))):
        typer.echo(f"dropped {build.schema}")
