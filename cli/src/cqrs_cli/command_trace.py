"""`cqrs command trace COMMAND_ID`: what happened to one command, from outcome to read models.

- The outcome comes from the `command-results` topic (key: the command id), whichever write store
  command-svc runs on (MongoDB or DynamoDB): both doors publish every outcome there, with the
  command's `traceparent`, and reading it needs no write-store driver in the operator image. The
  topic keeps the broker's retention (7 days by default); an older command is reported as unknown.
- The events: the accepted outcome names their ids and the aggregate's new version; each is looked
  up on `events.<aggregate type>` (key: the aggregate id) from shortly before the outcome's time.
- For every configured projection that reads that aggregate type: whether each event is applied,
  parked (and why) or still pending, from the active build through `projector_svc.operations`.
"""

from __future__ import annotations

import asyncio
import json
import uuid
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Annotated, Any

import asyncpg
import typer
from pydantic import ValidationError

from cqrs_cli.kafka_reading import BrokerUnavailableError, find_keyed, reading
from cqrs_shared.kafka_io import KafkaRecord
from cqrs_shared.topics import TopicNames
from cqrs_shared.tracing import trace_id_in_headers
from projector_svc import operations
from projector_svc.settings import ProjectorSettings

#: The relay may publish a commit's events before the door publishes its outcome record (and the
#: producers' clocks differ): the event search starts this long before the outcome's timestamp.
EVENT_SEARCH_SLACK_MS = 60_000

EXIT_UNKNOWN = 1
EXIT_UNAVAILABLE = 4

EPILOG = "\n\n".join(
    [
        "Examples:",
        "  cqrs command trace 0b6f4a40-3e0e-4a55-8f0b-5f1b2c3d4e5f",
        "  cqrs command trace 0b6f4a40-3e0e-4a55-8f0b-5f1b2c3d4e5f --json | jq .events",
        "  cqrs command trace 0b6f4a40-3e0e-4a55-8f0b-5f1b2c3d4e5f --since 2h",
        "Exit status: 0 the command was found (accepted or rejected); 1 no outcome for that id on "
        "command-results (never sent, not handled yet, or older than the topic's retention); 4 Kafka "
        "or PostgreSQL could not be reached. Addresses come from KAFKA_BOOTSTRAP_SERVERS, "
        "CQRS_TOPIC_PREFIX, DATABASE_URL and PROJECTOR_SVC_PROJECTIONS, as for the services.",
    ]
)


@dataclass
class ProjectionState:
    projection: str
    #: `applied`, `parked (<reason>)`, `pending`, `not handled`, `no active build` or `unknown`.
    state: str
    applied_version: int | None = None


@dataclass
class EventTrace:
    event_id: str
    version: int
    type: str | None = None
    topic: str | None = None
    partition: int | None = None
    offset: int | None = None
    trace_id: str | None = None
    projections: list[ProjectionState] = field(default_factory=list)


@dataclass
class CommandTrace:
    command_id: str
    outcome: dict[str, Any]
    topic: str
    partition: int
    offset: int
    recorded_at: str
    trace_id: str | None
    events: list[EventTrace] = field(default_factory=list)
    #: What could not be looked up (a dependency down): the trace is partial.
    problems: list[str] = field(default_factory=list)


class UnknownCommandError(Exception):
    """No outcome with this command id on the command-results topic."""


def _timestamp(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _event_id(record: KafkaRecord) -> str | None:
    try:
        body = json.loads(record.value or b"")
    except ValueError:
        return None  # not an event: never one of ours
    return str(body.get("event_id")) if isinstance(body, dict) else None


async def _locate(
    settings: ProjectorSettings, command_id: uuid.UUID, since: datetime | None = None
) -> CommandTrace:
    """The outcome (sent at or after `since`, if given) and where each event went (Kafka only)."""
    topics = TopicNames(settings.topic_prefix)
    key = str(command_id).encode()
    found: list[KafkaRecord] = []
    async with reading(settings.kafka_bootstrap_servers) as consumer:
        await find_keyed(
            consumer,
            settings.kafka_bootstrap_servers,
            topics.command_results,
            key,
            found.append,
            since_ms=int(since.timestamp() * 1000) if since else None,
            stop=lambda: bool(found),
        )
        if not found:
            raise UnknownCommandError(f"no outcome for command {command_id} on {topics.command_results}")
        record = found[0]  # a repeat publishes the same outcome again; the first is the original
        outcome = json.loads(record.value or b"{}")
        trace = CommandTrace(
            str(command_id),
            outcome,
            record.topic,
            record.partition,
            record.offset,
            _timestamp(record.timestamp),
            trace_id_in_headers(record.headers),
        )
        ids = [str(i) for i in outcome.get("event_ids", [])] if outcome.get("status") == "accepted" else []
        first = int(outcome.get("version", 0)) - len(ids) + 1
        events = {event_id: EventTrace(event_id, first + n) for n, event_id in enumerate(ids)}
        if events:

            def visit(event: KafkaRecord) -> None:
                item = events.get(_event_id(event) or "")
                if item is not None and item.offset is None:
                    item.topic, item.partition, item.offset = event.topic, event.partition, event.offset
                    item.type = json.loads(event.value or b"{}").get("type")
                    item.trace_id = trace_id_in_headers(event.headers)

            await find_keyed(
                consumer,
                settings.kafka_bootstrap_servers,
                topics.events(outcome["aggregate_type"]),
                str(outcome["aggregate_id"]).encode(),
                visit,
                since_ms=record.timestamp - EVENT_SEARCH_SLACK_MS,
                stop=lambda: all(e.offset is not None for e in events.values()),
            )
        trace.events = list(events.values())
    return trace


async def _project(settings: ProjectorSettings, trace: CommandTrace, projections: list[str]) -> None:
    """Fill in, per event, its state in every projection that reads the aggregate's type."""
    aggregate_type, aggregate_id = trace.outcome.get("aggregate_type"), trace.outcome["aggregate_id"]
    for name in projections:
        declared = operations.projection_named(name)
        if aggregate_type not in declared.aggregate_types:
            continue
        try:
            progress = await operations.aggregate_progress(settings, name, (aggregate_type, aggregate_id))
        except operations.NoActiveBuildError:
            states = dict.fromkeys(
                (e.event_id for e in trace.events), ProjectionState(name, "no active build")
            )
        except (OSError, asyncpg.PostgresError, TimeoutError) as exc:
            trace.problems.append(f"projection {name}: cannot read PostgreSQL: {exc!r}")
            states = dict.fromkeys((e.event_id for e in trace.events), ProjectionState(name, "unknown"))
        else:
            states = {
                e.event_id: ProjectionState(
                    name,
                    "not handled"
                    if e.type and not declared.handles(e.type)
                    else progress.state_of(e.version),
                    progress.applied_version,
                )
                for e in trace.events
            }
        for event in trace.events:
            event.projections.append(states[event.event_id])


async def trace_command(
    settings: ProjectorSettings,
    command_id: uuid.UUID,
    projections: list[str] | None = None,
    since: datetime | None = None,
) -> CommandTrace:
    """The whole trace of one command (`UnknownCommandError`, `BrokerUnavailableError`)."""
    trace = await _locate(settings, command_id, since)
    await _project(settings, trace, list(projections or settings.projections))
    return trace


_AGES = {"s": 1, "m": 60, "h": 3600, "d": 86400}


def parse_since(text: str | None, now: datetime | None = None) -> datetime | None:
    """`--since`: an age such as `30m` before `now`, or an ISO 8601 time (UTC unless it says)."""
    if text is None:
        return None
    text = text.strip()
    if text[:-1].isdigit() and text[-1:] in _AGES:
        return (now or datetime.now(UTC)) - timedelta(seconds=int(text[:-1]) * _AGES[text[-1]])
    try:
        moment = datetime.fromisoformat(text)
    except ValueError as exc:
        raise typer.BadParameter(
            "an age (90s, 30m, 2h, 7d) or an ISO 8601 time", param_hint="--since"
        ) from exc
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def render(trace: CommandTrace) -> str:
    """The trace for a terminal: the outcome, the trace id, then each event and its projections."""
    outcome = trace.outcome
    subject = f"{outcome.get('command_type')} on {outcome.get('aggregate_id')}"
    if outcome.get("status") == "accepted":
        aggregate = f"{outcome.get('aggregate_type')}/{outcome.get('aggregate_id')}"
        verdict = f"accepted: {aggregate} v{outcome.get('version')}"
    else:
        verdict = f"rejected ({outcome.get('code')}): {outcome.get('message')}"
    lines = [
        f"command {trace.command_id}  {subject}",
        f"  outcome  {verdict}",
        f"           {trace.topic}[{trace.partition}]@{trace.offset} at {trace.recorded_at}",
        f"  trace    {trace.trace_id or '(none: tracing was off or the sender sent no traceparent)'}",
    ]
    if outcome.get("status") == "accepted" and not trace.events:
        lines.append("  events   none (the command changed nothing)")
    for event in trace.events:
        where = (
            f"{event.topic}[{event.partition}]@{event.offset}"
            if event.offset is not None
            else "not on Kafka yet"
        )
        lines.append(f"  event    v{event.version} {event.type or '?'} {event.event_id}  {where}")
        lines.extend(f"           {p.projection}: {p.state}" for p in event.projections)
    lines.extend(f"  problem  {problem}" for problem in trace.problems)
    return "\n".join(lines)


def trace(
    command_id: Annotated[uuid.UUID, typer.Argument(metavar="COMMAND_ID", help="The command's id (a UUID).")],
    projection: Annotated[
        list[str] | None,
        typer.Option(
            "--projection", help="Projection to check (repeatable; default PROJECTOR_SVC_PROJECTIONS)."
        ),
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
    since: Annotated[
        str | None,
        typer.Option(
            help="Only look at outcomes sent since then: an age (90s, 30m, 2h, 7d) or an ISO 8601 time. "
            "Without it the whole command-results partition is read (about 80,000 outcomes a second)."
        ),
    ] = None,
) -> None:
    """Show what happened to one command: its outcome, the events it produced (topic, partition,
    offset), whether each projection has applied them, and its trace id."""
    starting = parse_since(since)
    try:
        settings = ProjectorSettings()
    except ValidationError as exc:
        typer.echo(f"invalid configuration in the environment: {exc}", err=True)
        raise typer.Exit(2) from exc
    names = list(projection or settings.projections)
    for name in names:
        try:
            operations.projection_named(name)
        except ValueError as exc:
            hint = "--projection" if projection else "PROJECTOR_SVC_PROJECTIONS"
            raise typer.BadParameter(str(exc), param_hint=hint) from exc
    try:
        result = asyncio.run(trace_command(settings, command_id, names, starting))
    except UnknownCommandError as exc:
        typer.echo(str(exc), err=True)
        raise typer.Exit(EXIT_UNKNOWN) from exc
    except BrokerUnavailableError as exc:
        typer.echo(str(exc), err=True)
        raise typer.Exit(EXIT_UNAVAILABLE) from exc
    typer.echo(json.dumps(asdict(result), indent=2) if as_json else render(result))
    if result.problems:
        raise typer.Exit(EXIT_UNAVAILABLE)
