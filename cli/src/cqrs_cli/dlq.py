"""`cqrs dlq`: see what the projector parked or dead-lettered, and replay it once fixed.

Parked events live in PostgreSQL beside the view (the active build's `parked_events`): a refused
event, the events of its aggregate held behind it, and events waiting for a missing version. The
`events.dlq` topic additionally holds records that were not events at all (`cqrs dlq topic`).
A replay is carried out by the projector replica that owns the aggregate's partition, with the
code it runs now: deploy the fix, then replay.
"""

from __future__ import annotations

import asyncio
import json
from dataclasses import asdict
from typing import Annotated

import typer

from projector_svc import operations
from projector_svc.operations import ParkedEvent
from projector_svc.settings import ProjectorSettings

app = typer.Typer(help="Inspect and replay dead-lettered and parked events.", no_args_is_help=True)

View = Annotated[str, typer.Option("--view", help="The projection.")]
Aggregates = Annotated[
    list[str] | None, typer.Option("--aggregate", "-a", help="TYPE/ID of an aggregate; repeatable.")
]


def _keys(aggregates: list[str] | None) -> list[tuple[str, str]]:
    keys = []
    for item in aggregates or []:
        kind, sep, ident = item.partition("/")
        if not sep or not kind or not ident:
            raise typer.BadParameter(f"{item!r} is not TYPE/ID (e.g. order/o-42)", param_hint="--aggregate")
        keys.append((kind, ident))
    return keys


def _line(p: ParkedEvent) -> str:
    where = f"{p.topic}[{p.partition}]@{p.offset}"
    return (
        f"{p.aggregate_type}/{p.aggregate_id} v{p.version} {p.event_type} {p.reason} "
        f"attempts={p.attempts} from {where} parked {p.parked_at:%Y-%m-%dT%H:%M:%SZ}  {p.error}"
    )


def _dump(parked: list[ParkedEvent]) -> str:
    return json.dumps([asdict(p) for p in parked], default=str, indent=2)


@app.command("list")
def list_(
    view: View = "shop",
    reason: Annotated[str | None, typer.Option(help="rejected, blocked, gap, gap_expired or replay.")] = None,
    aggregate: Aggregates = None,
    limit: Annotated[int, typer.Option(min=1)] = 1000,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """List parked events, each aggregate in version order. Exits 0 even when there are none."""
    parked = asyncio.run(
        operations.list_parked(
            ProjectorSettings(), view, reason=reason, aggregates=_keys(aggregate), limit=limit
        )
    )
    if as_json:
        typer.echo(_dump(parked))
        return
    for p in parked:
        typer.echo(_line(p))
    typer.echo(f"{len(parked)} parked event(s) in {view}", err=True)


@app.command("replay")
def replay(
    view: View = "shop",
    aggregate: Aggregates = None,
    all_: Annotated[bool, typer.Option("--all", help="Replay every parked aggregate.")] = False,
    wait: Annotated[
        float, typer.Option(min=0, help="Seconds to wait for the outcome (0: do not wait).")
    ] = 30.0,
) -> None:
    """Replay parked aggregates. Exits 0 when all were applied, 1 when some are parked again,
    3 when no projector replica replayed them in time."""
    keys = _keys(aggregate)
    if not keys and not all_:
        raise typer.BadParameter("name aggregates with --aggregate TYPE/ID, or pass --all")
    try:
        marked, still = asyncio.run(operations.replay(ProjectorSettings(), view, keys, wait=wait))
    except TimeoutError as exc:
        typer.echo(str(exc), err=True)
        raise typer.Exit(3) from exc
    typer.echo(f"replay requested for {len(marked)} aggregate(s)")
    if wait <= 0:
        return
    for p in still:
        typer.echo(f"still parked: {_line(p)}")
    typer.echo(
        f"{len(marked) - len({(p.aggregate_type, p.aggregate_id) for p in still})} aggregate(s) caught up"
    )
    raise typer.Exit(1 if still else 0)


@app.command("topic")
def topic(
    limit: Annotated[int, typer.Option(min=1)] = 100,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """Print the records on `events.dlq` (oldest first) with their `dlq.*` headers."""
    records = asyncio.run(operations.dead_letters(ProjectorSettings()))
    out = [asdict(record) for record in records[:limit]]
    if as_json:
        typer.echo(json.dumps(out, indent=2))
        return
    for item in out:
        h = item["headers"]
        source = f"{h.get('dlq.source.topic')}[{h.get('dlq.source.partition')}]@{h.get('dlq.source.offset')}"
        typer.echo(f"@{item['offset']} {h.get('dlq.reason')} from {source}: {h.get('dlq.error', '')[:200]}")
