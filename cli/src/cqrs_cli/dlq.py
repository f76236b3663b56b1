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
from typing import Annotated, Any

import typer

from cqrs_shared.topics import TopicNames
from projector_svc.event_topics import read_all
from projector_svc.operations import ParkedEvent, list_parked, request_replay, wait_for_replay
from projector_svc.pg import pool_for
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


async def _list(view: str, reason: str | None, keys: list[tuple[str, str]], limit: int) -> list[ParkedEvent]:
    pool = await pool_for(ProjectorSettings(), max_size=1)
    try:
        async with pool.acquire() as connection:
            return await list_parked(connection, view, reason=reason, aggregates=keys, limit=limit)
    finally:
        await pool.close()


@app.command("list")
def list_(
    view: View = "shop",
    reason: Annotated[str | None, typer.Option(help="rejected, blocked, gap, gap_expired or replay.")] = None,
    aggregate: Aggregates = None,
    limit: Annotated[int, typer.Option(min=1)] = 1000,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """List parked events, each aggregate in version order. Exits 0 even when there are none."""
    parked = asyncio.run(_list(view, reason, _keys(aggregate), limit))
    if as_json:
        typer.echo(_dump(parked))
        return
    for p in parked:
        typer.echo(_line(p))
    typer.echo(f"{len(parked)} parked event(s) in {view}", err=True)


async def _replay(view: str, keys: list[tuple[str, str]], wait: float) -> tuple[list[Any], list[ParkedEvent]]:
    pool = await pool_for(ProjectorSettings(), max_size=1)
    try:
        async with pool.acquire() as connection:
            marked = await request_replay(connection, view, keys)
            if not marked or wait <= 0:
                return marked, []
            return marked, await wait_for_replay(connection, view, marked, within=wait)
    finally:
        await pool.close()


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
        marked, still = asyncio.run(_replay(view, keys, wait))
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
    settings = ProjectorSettings()
    name = TopicNames(settings.topic_prefix).events_dlq
    records: list[Any] = asyncio.run(read_all(settings.kafka_bootstrap_servers, name))
    out = []
    for record in records[:limit]:
        headers = {k: v.decode(errors="replace") for k, v in record.headers if k.startswith("dlq.")}
        out.append(
            {
                "offset": record.offset,
                "headers": headers,
                "value": (record.value or b"").decode(errors="replace"),
            }
        )
    if as_json:
        typer.echo(json.dumps(out, indent=2))
        return
    for item in out:
        h = item["headers"]
        source = f"{h.get('dlq.source.topic')}[{h.get('dlq.source.partition')}]@{h.get('dlq.source.offset')}"
        typer.echo(f"@{item['offset']} {h.get('dlq.reason')} from {source}: {h.get('dlq.error', '')[:200]}")
