"""`cqrs events tail`: follow the event topics, one line per event or one JSON object per line.

Reads every `events.<aggregate type>` topic of the prefix (not `events.dlq`), outside any consumer
group, so it changes nothing for the services; topics created later (a new aggregate type) are
followed too, from their beginning, within `NEW_TOPICS_SECONDS`. Records that are not
events are shown as undecodable rather than stopping the tail.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Annotated, Any

import typer
from aiokafka import AIOKafkaConsumer, TopicPartition
from pydantic import ValidationError

from cqrs_cli.kafka_reading import BrokerUnavailableError, partitions_of, reading
from cqrs_shared.envelopes import EventEnvelope
from cqrs_shared.kafka_io import KafkaRecord
from cqrs_shared.topics import TopicNames
from cqrs_shared.tracing import trace_id_in_headers

EXIT_UNAVAILABLE = 4
#: Seconds between looks for event topics created since the tail started.
NEW_TOPICS_SECONDS = 10.0
#: A payload longer than this is cut in the one-line form (never in `--json`).
PAYLOAD_CHARS = 240

EPILOG = "\n\n".join(
    [
        "Examples:",
        "New events from now on, until Ctrl-C:",
        "  cqrs events tail",
        "One aggregate's whole history, then follow it:",
        "  cqrs events tail --aggregate c-42 --from-beginning",
        "One event type as JSON lines:",
        "  cqrs events tail --type OrderPlaced --json | jq .event.payload",
        "The first ten events, then exit:",
        "  cqrs events tail --from-beginning --count 10",
        # Typer renders help as rich markup, where brackets are tags unless escaped.
        "A line: time, topic\\[partition]@offset, aggregate type/id, version, event type, payload, "
        "correlation id and trace id (from the record's traceparent header). Exit status: 0 at the "
        "end (Ctrl-C or --count), 4 when Kafka cannot be reached (KAFKA_BOOTSTRAP_SERVERS, "
        "CQRS_TOPIC_PREFIX).",
    ]
)

app = typer.Typer(help="Follow the events on Kafka.", no_args_is_help=True)


@dataclass(frozen=True, slots=True)
class Filters:
    aggregate: str | None = None
    type_: str | None = None

    def admit(self, record: KafkaRecord, event: EventEnvelope | None) -> bool:
        # The record key is the aggregate id, so an undecodable record still matches by it.
        if self.aggregate is not None and (record.key or b"").decode(errors="replace") != self.aggregate:
            return False
        return self.type_ is None or (event is not None and event.type == self.type_)


def event_topics(names: set[str], topics: TopicNames) -> list[str]:
    """The event topics among `names`: `<prefix>events.<aggregate type>`, not the dead letters."""
    prefix = topics.events("")
    return sorted(
        n for n in names if n.startswith(prefix) and n != topics.events_dlq and len(n) > len(prefix)
    )


def _decode(record: KafkaRecord) -> EventEnvelope | str:
    try:
        return EventEnvelope.model_validate_json(record.value or b"")
    except ValidationError as exc:
        return f"{exc.error_count()} validation error(s): {exc.errors(include_url=False)[0]['msg']}"


def _time(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def as_line(record: KafkaRecord, event: EventEnvelope | str) -> str:
    where = f"{_time(record.timestamp)} {record.topic}[{record.partition}]@{record.offset}"
    if isinstance(event, str):
        return f"{where} undecodable ({event})"
    payload = json.dumps(event.payload, separators=(",", ":"), ensure_ascii=False)
    if len(payload) > PAYLOAD_CHARS:
        payload = payload[: PAYLOAD_CHARS - 1] + "…"
    trace = trace_id_in_headers(record.headers) or "-"
    return (
        f"{where} {event.aggregate_type}/{event.aggregate_id} v{event.version} {event.type} {payload}"
        f" correlation={event.correlation_id} trace={trace}"
    )


def as_json(record: KafkaRecord, event: EventEnvelope | str) -> str:
    line: dict[str, Any] = {
        "topic": record.topic,
        "partition": record.partition,
        "offset": record.offset,
        "timestamp": _time(record.timestamp),
        "trace_id": trace_id_in_headers(record.headers),
    }
    if isinstance(event, str):
        line |= {"error": event, "value": (record.value or b"").decode(errors="replace")}
    else:
        line["event"] = event.model_dump(mode="json")
    return json.dumps(line, ensure_ascii=False)


async def _assign(
    consumer: AIOKafkaConsumer, bootstrap: str, topics: TopicNames, from_beginning: bool
) -> list[TopicPartition]:
    names = event_topics(await consumer.topics(), topics)
    partitions = await partitions_of(bootstrap, names) if names else []
    if partitions:
        consumer.assign(partitions)
        if from_beginning:
            await consumer.seek_to_beginning(*partitions)
        else:
            await consumer.seek_to_end(*partitions)
    return partitions


async def _add_new_topics(
    consumer: AIOKafkaConsumer, bootstrap: str, topics: TopicNames, assigned: list[TopicPartition]
) -> list[TopicPartition]:
    """Also follow event topics created since the tail started (a new aggregate type), from their
    beginning: everything on them is newer than the tail."""
    known = {tp.topic for tp in assigned}
    new = [name for name in event_topics(await consumer.topics(), topics) if name not in known]
    fresh = await partitions_of(bootstrap, new) if new else []
    if not fresh:
        return assigned
    # `assign` replaces the assignment and forgets positions: keep those of the followed partitions.
    positions = {tp: await consumer.position(tp) for tp in assigned}
    consumer.assign([*assigned, *fresh])
    for tp, offset in positions.items():
        consumer.seek(tp, offset)
    await consumer.seek_to_beginning(*fresh)
    return [*assigned, *fresh]


async def tail(
    bootstrap: str,
    topics: TopicNames,
    filters: Filters,
    show: Callable[[KafkaRecord, EventEnvelope | str], None],
    *,
    from_beginning: bool = False,
    count: int | None = None,
) -> int:
    """Show matching records as they arrive (in timestamp order within each fetch) until `count`
    were shown, or forever; returns how many were shown."""
    shown = 0
    loop = asyncio.get_running_loop()
    async with reading(bootstrap) as consumer:
        assigned = await _assign(consumer, bootstrap, topics, from_beginning)
        if not assigned:
            raise BrokerUnavailableError(f"no event topics ({topics.events('*')}) on {bootstrap}")
        look_again = loop.time() + NEW_TOPICS_SECONDS
        while count is None or shown < count:
            if loop.time() >= look_again:
                assigned = await _add_new_topics(consumer, bootstrap, topics, assigned)
                look_again = loop.time() + NEW_TOPICS_SECONDS
            batch = await consumer.getmany(timeout_ms=500)
            records = sorted(
                (r for rs in batch.values() for r in rs), key=lambda r: (r.timestamp, r.topic, r.partition)
            )
            for record in records:
                decoded = _decode(record)
                if filters.admit(record, decoded if isinstance(decoded, EventEnvelope) else None):
                    show(record, decoded)
                    shown += 1
                    if count is not None and shown >= count:
                        break
    return shown


@app.command("tail", epilog=EPILOG)
def tail_command(
    aggregate: Annotated[
        str | None, typer.Option("--aggregate", "-a", help="Only this aggregate id.")
    ] = None,
    type_: Annotated[str | None, typer.Option("--type", "-t", help="Only this event type.")] = None,
    json_lines: Annotated[bool, typer.Option("--json", help="One JSON object per line.")] = False,
    from_beginning: Annotated[
        bool, typer.Option("--from-beginning", help="Start at the oldest events instead of now.")
    ] = False,
    count: Annotated[int | None, typer.Option(min=1, help="Exit after this many events.")] = None,
    bootstrap: Annotated[str, typer.Option(envvar="KAFKA_BOOTSTRAP_SERVERS")] = "127.0.0.1:9092",
    prefix: Annotated[str, typer.Option(envvar="CQRS_TOPIC_PREFIX", help="Topic name prefix.")] = "",
) -> None:
    """Follow the event topics: pretty, one line per event, or JSON lines."""
    render = as_json if json_lines else as_line

    def show(record: KafkaRecord, event: EventEnvelope | str) -> None:
        typer.echo(render(record, event))

    try:
        asyncio.run(
            tail(
                bootstrap,
                TopicNames(prefix),
                Filters(aggregate, type_),
                show,
                from_beginning=from_beginning,
                count=count,
            )
        )
    except BrokerUnavailableError as exc:
        typer.echo(str(exc), err=True)
        raise typer.Exit(EXIT_UNAVAILABLE) from exc
    except KeyboardInterrupt:
        return  # Ctrl-C is how a tail ends
