"""Wiring of the command service: the only module that knows every adapter, door and loop."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from typing import Any

from aiokafka import AIOKafkaProducer
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse
from faststream import AckPolicy
from faststream.kafka import KafkaBroker
from faststream.kafka.annotations import KafkaMessage

from command_svc.domain.decider import AggregateDefinition
from command_svc.domain.shop import SHOP_AGGREGATES
from command_svc.http_door import command_router
from command_svc.outbox_relay import OutboxRelay, RelaySettings
from command_svc.pipeline import CommandPipeline
from command_svc.registry import CommandRegistry
from command_svc.results_publisher import ResultsPublisher
from command_svc.settings import CommandServiceSettings
from command_svc.topic_door import TopicDoor
from cqrs_shared.auth import TokenVerifier
from cqrs_shared.kafka_io import KafkaEventPublisher, make_producer
from cqrs_shared.problems import install_problem_handlers, problem_response
from cqrs_shared.service_http import operations_router
from cqrs_shared.topics import RETAIN_FOREVER, TopicNames, ensure_topics
from cqrs_shared.write_store import LeaseStore, WriteStore, WriteStoreUnavailableError
from cqrs_shared.write_store.memory_store import MemoryLeaseStore, MemoryWriteStore
from cqrs_shared.write_store.mongo_store import MongoLeaseStore, MongoWriteStore

log = logging.getLogger(__name__)

#: Pause before re-reading a batch whose handling failed (store or Kafka unavailable).
RETRY_PAUSE_SECONDS = 1.0


async def _open_stores(settings: CommandServiceSettings) -> tuple[WriteStore, LeaseStore, Any]:
    if settings.write_store == "memory":
        return MemoryWriteStore(), MemoryLeaseStore(), None
    store = await MongoWriteStore.open(settings.mongodb_uri, settings.mongodb_database)
    return store, MongoLeaseStore(store.database), store


def create_app(
    settings: CommandServiceSettings | None = None,
    *,
    aggregates: Sequence[AggregateDefinition[Any]] = SHOP_AGGREGATES,
    **overrides: Any,
) -> FastAPI:
    """Build the service. Nothing connects until the app's lifespan starts."""
    settings = settings or CommandServiceSettings(**overrides)
    registry = CommandRegistry(aggregates)
    topics = TopicNames(settings.topic_prefix)
    verifier = TokenVerifier(settings)
    broker = KafkaBroker(settings.kafka_bootstrap_servers, client_id=f"command-svc-{settings.instance_id}")
    state: dict[str, Any] = {}

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        await ensure_topics(
            settings.kafka_bootstrap_servers,
            topics.all_for(registry.aggregate_types),
            partitions=settings.topic_partitions,
            replication_factor=settings.topic_replication_factor,
            configs=dict.fromkeys(topics.retained_forever(registry.aggregate_types), RETAIN_FOREVER),
        )
        store, leases, closable = await _open_stores(settings)
        producer: AIOKafkaProducer = make_producer(
            settings.kafka_bootstrap_servers, client_id=f"command-svc-{settings.instance_id}"
        )
        await producer.start()
        relay = OutboxRelay(
            store,
            leases,
            KafkaEventPublisher(producer, topics),
            member_id=settings.instance_id,
            settings=RelaySettings(
                shards=settings.relay_shards,
                lease_ttl_seconds=settings.relay_lease_ttl_seconds,
                scan_interval_seconds=settings.relay_scan_interval_seconds,
            ),
        )
        pipeline = CommandPipeline(
            registry,
            store,
            verifier,
            on_commit=relay.notify,
            relay_shards=settings.relay_shards,
            max_attempts=settings.max_decide_attempts,
        )
        results = ResultsPublisher(producer, topics)
        door = TopicDoor(
            pipeline,
            results,
            max_command_bytes=settings.max_command_bytes,
            concurrency=settings.batch_concurrency,
        )
        state.update(store=store, pipeline=pipeline, relay=relay, producer=producer, results=results)
        await relay.start()

        @broker.subscriber(
            topics.commands,
            group_id=settings.consumer_group,
            batch=True,
            max_records=settings.batch_max_records,
            auto_offset_reset="earliest",
            ack_policy=AckPolicy.MANUAL,
        )
        async def on_commands(message: KafkaMessage) -> None:
            try:
                await door.handle_batch(message.raw_message)
            except Exception:
                log.exception("a command batch failed; it will be consumed again")
                await asyncio.sleep(RETRY_PAUSE_SECONDS)
                await message.nack()
                return
            await message.ack()

        await broker.start()
        log.info("command-svc ready", extra={"topics": topics.commands, "instance": settings.instance_id})
        try:
            yield
        finally:
            # Stop taking commands first, then let the relay hand its shards over, then disconnect.
            await broker.stop()
            await relay.stop()
            await producer.stop()
            if closable is not None:
                await closable.close()

    app = FastAPI(title="command-svc", version="0.1.0", lifespan=lifespan)
    install_problem_handlers(app)

    @app.exception_handler(WriteStoreUnavailableError)
    async def _store_down(request: Request, exc: WriteStoreUnavailableError) -> JSONResponse:
        # The outcome is unknown (the write may or may not have landed); a repeat with the same
        # command id is safe and returns the stored outcome if there is one.
        log.warning("write store unavailable on %s: %s", request.url.path, exc)
        return problem_response(
            503,
            "unavailable",
            "Write store unavailable",
            "the outcome is unknown; send the same command (same command_id) again",
            headers={"Retry-After": "1"},
            instance=request.url.path,
        )

    app.include_router(
        command_router(
            lambda: (state["pipeline"], state["results"]), max_command_bytes=settings.max_command_bytes
        )
    )

    async def store_ready() -> None:
        await state["store"].ping()

    async def kafka_ready() -> None:
        await state["producer"].client.fetch_all_metadata()

    async def relay_running() -> None:
        state["relay"].check_running()

    app.include_router(
        operations_router({"write_store": store_ready, "kafka": kafka_ready, "outbox_relay": relay_running})
    )
    app.state.components = state
    return app
