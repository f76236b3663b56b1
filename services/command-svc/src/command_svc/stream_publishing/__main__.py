"""`python -m command_svc.stream_publishing`: the stream publisher as a process of its own.

For a Deployment of its own beside command-svc (which then runs with `COMMAND_SVC_EVENT_PUBLISHER=none`;
`dynamodb-stream` runs the same publisher inside command-svc instead), and for the crash tests.
Reads command-svc's settings (Kafka, DynamoDB, `COMMAND_SVC_INSTANCE_ID`, the lease TTL).
Stops cleanly on SIGTERM/SIGINT (leases handed over at once); a SIGKILL leaves them to expire.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal

from command_svc.settings import CommandServiceSettings
from command_svc.stream_publishing.stream_publisher import StreamPublisher, StreamPublisherSettings
from command_svc.write_store.dynamo_client import open_dynamodb_streams
from command_svc.write_store.dynamo_store import DynamoWriteStore
from cqrs_shared.kafka_io import KafkaEventPublisher, RenewingProducer, make_producer
from cqrs_shared.logging_setup import configure_logging
from cqrs_shared.topics import TopicNames
from cqrs_shared.tracing import configure_tracing, shutdown_tracing

log = logging.getLogger("command_svc.stream_publishing")


async def run(settings: CommandServiceSettings) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    async with contextlib.AsyncExitStack() as stack:
        store = await DynamoWriteStore.open(settings.dynamo())
        stack.push_async_callback(store.close)
        streams = await open_dynamodb_streams(settings.dynamo(), stack)
        producer = RenewingProducer(
            lambda: make_producer(
                settings.kafka_bootstrap_servers, client_id=f"stream-{settings.instance_id}"
            )
        )
        await producer.start()
        stack.push_async_callback(producer.stop)
        publisher = StreamPublisher(
            streams,
            store,
            store.leases(),
            KafkaEventPublisher(producer, TopicNames(settings.topic_prefix)),
            member_id=settings.instance_id,
            settings=StreamPublisherSettings(lease_ttl_seconds=settings.relay_lease_ttl_seconds),
        )
        await publisher.start()
        stack.push_async_callback(publisher.stop)
        log.info("stream publisher running", extra={"instance": settings.instance_id})
        await stop.wait()


def main() -> None:
    settings = CommandServiceSettings()
    configure_logging("stream-publisher", settings.log_level, settings.log_format)
    configure_tracing("stream-publisher")
    try:
        asyncio.run(run(settings))
    finally:
        shutdown_tracing()


if __name__ == "__main__":
    main()
