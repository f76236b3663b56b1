"""Kafka producing the way every service here needs it: idempotent, `acks=all`, JSON, keyed.

Ordering: one producer with idempotence keeps each partition's records in send order even across
retries, so sending an aggregate's events in version order and awaiting all acknowledgements keeps
them in that order on the topic.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import Callable, Mapping, Sequence
from typing import Any, Protocol

from aiokafka import AIOKafkaProducer
from aiokafka.errors import KafkaConnectionError, KafkaError
from aiokafka.protocol.metadata import MetadataRequest
from pydantic import BaseModel

from cqrs_shared.envelopes import EventEnvelope
from cqrs_shared.topics import TopicNames
from cqrs_shared.tracing import producer_spans
from cqrs_shared.write_store.port import Commit

Headers = list[tuple[str, bytes]]

log = logging.getLogger(__name__)


class KafkaRecord(Protocol):
    """The fields of a consumed record the services read (aiokafka's `ConsumerRecord` has them)."""

    @property
    def topic(self) -> str: ...
    @property
    def partition(self) -> int: ...
    @property
    def offset(self) -> int: ...
    @property
    def timestamp(self) -> int: ...
    @property
    def key(self) -> bytes | None: ...
    @property
    def value(self) -> bytes | None: ...
    @property
    def headers(self) -> Sequence[tuple[str, bytes]]: ...


#: Kafka headers are not meant for essays; long error texts are cut to this many bytes.
DLQ_ERROR_LIMIT = 4000


def flow_ids(
    correlation_id: str | None, causation_id: str | None, trace_id: str | None
) -> list[tuple[str, str]]:
    """The ids that tie a dead letter to its flow, as `dead_letter_headers` extras (the known ones):
    `dlq.correlation_id`, `dlq.causation_id`, `dlq.trace_id`."""
    given = {"correlation_id": correlation_id, "causation_id": causation_id, "trace_id": trace_id}
    return [(name, value) for name, value in given.items() if value]


def dead_letter_headers(record: KafkaRecord, reason: str, error: str, *extra: tuple[str, str]) -> Headers:
    """The record's own headers plus the `dlq.*` ones every dead letter here carries: the reason,
    the error, the source coordinates, and any `extra` (name, value) pairs as `dlq.<name>`
    (`flow_ids` gives the correlation, causation and trace ids that way)."""
    return [
        *list(record.headers or ()),
        ("dlq.reason", reason.encode()),
        ("dlq.error", error.encode()[:DLQ_ERROR_LIMIT]),
        ("dlq.source.topic", record.topic.encode()),
        ("dlq.source.partition", str(record.partition).encode()),
        ("dlq.source.offset", str(record.offset).encode()),
        *((f"dlq.{name}", value.encode()) for name, value in extra),
    ]


class RecordSender(Protocol):
    """What sends records: an `AIOKafkaProducer`, or a `RenewingProducer` around one."""

    async def send(
        self, topic: str, value: bytes | None = None, key: bytes | None = None, *, headers: Headers
    ) -> asyncio.Future[object]: ...


async def send_all(
    producer: RecordSender | AIOKafkaProducer,
    records: Sequence[tuple[str, bytes | None, bytes | None, Headers]],
) -> None:
    """Send (topic, key, value, headers) records and return once Kafka acknowledged all of them.

    `send` only enqueues; awaiting the delivery futures afterwards lets the records share requests,
    and the idempotent producer keeps their order per partition.
    """
    deliveries = [
        await producer.send(topic, value=value, key=key, headers=headers)
        for topic, key, value, headers in records
    ]
    if deliveries:
        await asyncio.gather(*deliveries)


def make_producer(
    bootstrap_servers: str, *, client_id: str, linger_ms: int = 0, request_timeout_ms: int = 40_000
) -> AIOKafkaProducer:
    # No linger: aiokafka keeps one request in flight per broker and drains everything that queued
    # meanwhile into the next one, so records batch by themselves under load; a linger only adds
    # its full wait to every event's and outcome's way when the load is light (5 ms was a quarter
    # of the staleness budget, measured with bench/staleness_budget.py).
    return AIOKafkaProducer(
        bootstrap_servers=bootstrap_servers,
        client_id=client_id,
        enable_idempotence=True,
        acks="all",
        linger_ms=linger_ms,
        max_batch_size=256 * 1024,
        request_timeout_ms=request_timeout_ms,
    )


async def ask_a_broker(client: Any) -> None:
    """One metadata round trip to a known broker naming no topic (raises when none answers): what a
    readiness probe needs to know. aiokafka's `fetch_all_metadata` asks for every topic in the
    cluster instead, about 100 ms of CPU per probe on a cluster of 4,000 topics."""
    node = client.get_random_node()
    if node is None:
        raise KafkaConnectionError("no Kafka broker is known")
    await client.send(node, MetadataRequest([], allow_auto_topic_creation=False))


class RenewingProducer:
    """An idempotent producer that replaces itself once one of its deliveries failed.

    Why: aiokafka's idempotent producer numbers a batch when it drains it. A batch that then fails
    (during a broker outage longer than `request_timeout_ms` it expires with no partition leader)
    leaves a gap in the numbers; the broker refuses the partition's next batch with
    OutOfOrderSequenceNumber, which kills the producer's sender task, and from then on every `send`
    raises that error until the process restarts. Java's producer bumps its epoch here; aiokafka does
    not, so the first failed delivery retires the whole producer and the next send starts a fresh one
    (a new producer id numbers from zero). Records whose delivery failed stay the caller's to send
    again, as before: duplicates are possible, loss is not.
    """

    def __init__(
        self,
        factory: Callable[[], AIOKafkaProducer],
        *,
        on_renew: Callable[[], None] | None = None,
        retire_timeout_seconds: float = 60.0,
    ) -> None:
        self._factory = factory
        self._on_renew = on_renew
        self._retire_timeout = retire_timeout_seconds
        self._producer: AIOKafkaProducer | None = None
        self._generation = 0
        self._failed_generation = -1
        self._lock = asyncio.Lock()
        self._retiring: set[asyncio.Task[None]] = set()
        #: How many producers were replaced after a failed delivery (tests and metrics read it).
        self.renewals = 0

    async def start(self) -> None:
        await self._current()

    async def stop(self) -> None:
        producer, self._producer = self._producer, None
        if producer is not None:
            await producer.stop()
        if self._retiring:
            await asyncio.wait(self._retiring, timeout=self._retire_timeout)

    async def send(
        self, topic: str, value: bytes | None = None, key: bytes | None = None, *, headers: Headers
    ) -> asyncio.Future[object]:
        """Enqueue one record; the returned future resolves on Kafka's acknowledgement."""
        producer, generation = await self._current()
        try:
            delivery: asyncio.Future[object] = await producer.send(
                topic, value=value, key=key, headers=headers
            )
        except KafkaError:
            self._failed(generation)
            raise
        delivery.add_done_callback(lambda done: self._observe(done, generation))
        return delivery

    async def send_all(self, records: Sequence[tuple[str, bytes | None, bytes | None, Headers]]) -> None:
        try:
            await send_all(self, records)
        except KafkaError:
            # On Python 3.12+ `gather` over deliveries that already failed raises without a loop
            # turn, before their done-callbacks marked the producer failed; one turn lets them run,
            # so the caller's immediate retry gets a fresh producer.
            await asyncio.sleep(0)
            raise

    async def check_ready(self) -> None:
        """Raises unless a working producer can reach the cluster (renewing a failed one first).

        See `ask_a_broker`."""
        producer, _ = await self._current()
        await ask_a_broker(producer.client)

    def _observe(self, delivery: asyncio.Future[object], generation: int) -> None:
        if not delivery.cancelled() and isinstance(delivery.exception(), KafkaError):
            self._failed(generation)

    def _failed(self, generation: int) -> None:
        self._failed_generation = max(self._failed_generation, generation)

    async def _current(self) -> tuple[AIOKafkaProducer, int]:
        producer = self._producer
        if producer is not None and self._failed_generation < self._generation:
            return producer, self._generation
        async with self._lock:
            if self._producer is not None and self._failed_generation < self._generation:
                return self._producer, self._generation
            old, self._producer = self._producer, None
            if old is not None:
                log.warning("Kafka producer retired after a failed delivery; starting a fresh one")
                self._retire(old)
            fresh = self._factory()
            try:
                await fresh.start()
            except BaseException:
                await fresh.stop()
                raise
            self._producer = fresh
            self._generation += 1
            if old is not None:
                self.renewals += 1
                if self._on_renew is not None:
                    self._on_renew()
            return fresh, self._generation

    def _retire(self, producer: AIOKafkaProducer) -> None:
        # In the background: a producer whose sender still runs flushes what it holds first (its
        # callers' futures resolve either way), and nobody should wait for that to send again.
        async def retire() -> None:
            try:
                async with asyncio.timeout(self._retire_timeout):
                    await producer.stop()
            except (KafkaError, OSError, TimeoutError) as exc:
                log.warning("retired Kafka producer did not stop cleanly: %s", exc)

        task = asyncio.create_task(retire(), name="kafka-producer-retire")
        self._retiring.add(task)
        task.add_done_callback(self._retiring.discard)


def to_json(message: BaseModel) -> bytes:
    return message.model_dump_json().encode()


def event_headers(event: EventEnvelope, trace: Sequence[tuple[str, bytes]] = ()) -> Headers:
    """An event record's headers: type, schema version, the flow's ids and, when traced, the W3C
    `traceparent` of its publish span (tools read the trace id there)."""
    return [
        ("event_type", event.type.encode()),
        ("schema_version", str(event.schema_version).encode()),
        ("correlation_id", event.correlation_id.encode()),
        ("causation_id", event.causation_id.encode()),
        *trace,
    ]


class KafkaEventPublisher:
    """Publishes events to `events.<aggregate type>`, keyed by aggregate id, and awaits every ack."""

    def __init__(self, producer: RecordSender | AIOKafkaProducer, topics: TopicNames) -> None:
        self._producer = producer
        self._topics = topics

    async def publish(
        self, events: Sequence[EventEnvelope], *, trace_headers: Mapping[uuid.UUID, Headers] | None = None
    ) -> None:
        """Publish in order and await every acknowledgement; `trace_headers` per event id, if traced."""
        traces = trace_headers or {}
        await send_all(
            self._producer,
            [
                (
                    self._topics.events(event.aggregate_type),
                    event.aggregate_id.encode(),
                    to_json(event),
                    event_headers(event, traces.get(event.event_id, ())),
                )
                for event in events
            ],
        )


class EventPublisher(Protocol):
    async def publish(
        self, events: Sequence[EventEnvelope], *, trace_headers: Mapping[uuid.UUID, Headers] | None = None
    ) -> None:
        """Publish all events, keeping their order per aggregate; return once all are acknowledged.

        `trace_headers` (event id -> W3C headers) travel with the events when tracing is on."""


async def publish_commits(publisher: EventPublisher, commits: Sequence[Commit]) -> None:
    """Publish the commits' events, each commit under a publish span continuing the trace stored
    with it (`Commit.trace_context`): a republish after a crash joins the same trace."""
    sends = [(f"publish {commit.aggregate_type} events", commit.trace_context) for commit in commits]
    with producer_spans(
        sends, {"messaging.system": "kafka", "messaging.operation.type": "publish"}
    ) as traced:
        trace_headers = {
            event.event_id: headers
            for commit, headers in zip(commits, traced, strict=True)
            if headers
            for event in commit.events
        }
        await publisher.publish(
            [event for commit in commits for event in commit.events], trace_headers=trace_headers or None
        )
