"""AWS Lambda handler: publish the events of a DynamoDB stream batch to Kafka (MSK), in record order.

Contract with the event source mapping (`ReportBatchItemFailures`, see deploy/aws/cqrs-platform.yaml):
records are published one after another, each only once Kafka acknowledged everything before it.
At the first record that fails (unreadable, or Kafka refused), the handler stops and reports that
record's sequence number in `batchItemFailures`: Lambda retries the batch from there, so a poison
record is retried alone, and nothing after it in the shard is published ahead of it. After the
mapping's bounded retries it goes to the on-failure queue and the shard moves on. What was
published before the failure may be published again by a retry (a counted duplicate: consumers
dedupe by event version), never lost.

The producer lives in a module-level event loop kept across invocations of a warm container.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping, Sequence
from typing import Annotated, Any

from aiokafka import AIOKafkaProducer
from aiokafka.errors import KafkaError
from aiokafka.helpers import create_ssl_context
from pydantic import AliasChoices, Field

from cqrs_shared.dynamo_stream import UndecodableRecordError, commit_of_record, sequence_number
from cqrs_shared.kafka_io import KafkaEventPublisher, make_producer, publish_commits
from cqrs_shared.settings import KafkaSettings, settings_config
from cqrs_shared.topics import TopicNames
from cqrs_shared.tracing import configure_tracing, flush_tracing

log = logging.getLogger(__name__)


class LambdaSettings(KafkaSettings):
    model_config = settings_config("STREAM_LAMBDA_")

    #: `SSL` for MSK's TLS listener (in the VPC, reached through security groups).
    kafka_security_protocol: Annotated[
        str, Field(validation_alias=AliasChoices("KAFKA_SECURITY_PROTOCOL", "kafka_security_protocol"))
    ] = "PLAINTEXT"
    #: Bound on waiting for Kafka's acknowledgements of one record's events.
    kafka_timeout_seconds: float = 20.0


class StreamBatchPublisher:
    """Publishes a batch of stream records in order; the runtime of `handler`, usable on its own."""

    def __init__(self, producer: AIOKafkaProducer, topics: TopicNames, timeout_seconds: float) -> None:
        self.producer = producer
        self._events = KafkaEventPublisher(producer, topics)
        self._timeout = timeout_seconds

    async def publish(self, records: Sequence[Mapping[str, Any]]) -> dict[str, list[dict[str, str]]]:
        """Publish record by record; the first that fails is reported, nothing after it is sent."""
        for record in records:
            try:
                commit = commit_of_record(record)
                if commit is not None:
                    async with asyncio.timeout(self._timeout):
                        await publish_commits(self._events, [commit])
            except UndecodableRecordError:
                log.exception("poison stream record, reported for retry")
                return _failure(record)
            except (KafkaError, TimeoutError) as exc:
                log.warning("Kafka failed at stream record %s: %s", sequence_number(record), exc)
                return _failure(record)
        return {"batchItemFailures": []}


def _failure(record: Mapping[str, Any]) -> dict[str, list[dict[str, str]]]:
    return {"batchItemFailures": [{"itemIdentifier": sequence_number(record)}]}


class _Runtime:
    """One event loop and one started producer per warm container."""

    def __init__(self) -> None:
        self.runner = asyncio.Runner()
        self.publisher: StreamBatchPublisher | None = None

    def get(self) -> StreamBatchPublisher:
        if self.publisher is None:
            self.publisher = self.runner.run(_start(LambdaSettings()))
        return self.publisher

    def close(self) -> None:
        if self.publisher is not None:
            self.runner.run(self.publisher.producer.stop())
            self.publisher = None
        self.runner.close()
        self.runner = asyncio.Runner()


async def _start(settings: LambdaSettings) -> StreamBatchPublisher:
    # The relay's tracing, for the same `OTEL_*` variables: publish spans continue the stored traces.
    configure_tracing("stream-lambda")
    if settings.kafka_security_protocol != "SSL":
        producer = make_producer(settings.kafka_bootstrap_servers, client_id="stream-lambda")
    else:
        producer = AIOKafkaProducer(
            bootstrap_servers=settings.kafka_bootstrap_servers,
            client_id="stream-lambda",
            enable_idempotence=True,
            acks="all",
            security_protocol="SSL",
            ssl_context=create_ssl_context(),
        )
    await producer.start()
    return StreamBatchPublisher(producer, TopicNames(settings.topic_prefix), settings.kafka_timeout_seconds)


_runtime = _Runtime()


def handler(event: dict[str, Any], context: object) -> dict[str, list[dict[str, str]]]:
    """The Lambda entry point (`command_svc.stream_publishing.lambda_handler.handler`)."""
    publisher = _runtime.get()
    try:
        return _runtime.runner.run(publisher.publish(event.get("Records", [])))
    finally:
        flush_tracing()


def shutdown() -> None:
    """Stop the producer and the loop (a host process or test; Lambda freezes containers instead)."""
    _runtime.close()
