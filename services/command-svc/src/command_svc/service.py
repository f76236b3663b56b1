"""The command service's moving parts, started and stopped in dependency order.

`app.py` exposes this over HTTP; everything that connects to Kafka or the write store is built here,
and only when `start` runs.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
from typing import TYPE_CHECKING, TypeAlias

from aiokafka.errors import KafkaError

from command_svc.metrics import PRODUCER_RENEWALS
from command_svc.outbox_relay import OutboxRelay, RelaySettings
from command_svc.pipeline import CommandPipeline
from command_svc.registry import CommandRegistry
from command_svc.results_publisher import ResultsPublisher
from command_svc.settings import CommandServiceSettings
from command_svc.store_watchdog import StoreWatchdog, WatchdogSettings
from command_svc.topic_consumer import ConsumerSettings, TopicConsumer
from command_svc.topic_door import TopicDoor
from command_svc.write_store.memory_store import MemoryLeaseStore, MemoryWriteStore
from command_svc.write_store.mongo_store import MongoWriteStore
from cqrs_shared.auth import TokenVerifier
from cqrs_shared.kafka_io import KafkaEventPublisher, RenewingProducer, make_producer
from cqrs_shared.liveness import LivenessMonitor
from cqrs_shared.topics import RETAIN_FOREVER, TopicNames, ensure_topics
from cqrs_shared.write_store import LeaseStore, WriteStore, WriteStoreUnavailableError

if TYPE_CHECKING:
    from command_svc.stream_publishing.stream_publisher import NoEventPublisher, StreamPublisher
    from command_svc.write_store.dynamo_store import DynamoWriteStore


log = logging.getLogger(__name__)

#: Who publishes stored events (`COMMAND_SVC_EVENT_PUBLISHER`); all offer the relay's lifecycle.
EventRelay: TypeAlias = "OutboxRelay | StreamPublisher | NoEventPublisher"


class CommandService:
    def __init__(self, settings: CommandServiceSettings, registry: CommandRegistry) -> None:
        self.settings = settings
        self.registry = registry
        self.topics = TopicNames(settings.topic_prefix)
        self._verifier = TokenVerifier(settings)
        self._topic_door: TopicConsumer | None = None
        self._mongo: MongoWriteStore | None = None
        self._dynamo: DynamoWriteStore | None = None
        self._watchdog: StoreWatchdog | None = None
        self._producer: RenewingProducer | None = None
        self._relay: EventRelay | None = None
        #: What `/healthz` reports: the loops that must keep turning, and wedged clients.
        self.liveness = LivenessMonitor()
        # Set by `start`; the HTTP door and readiness checks only run while the service is started.
        self.store: WriteStore
        self.pipeline: CommandPipeline
        self.results: ResultsPublisher
        self.relay: EventRelay

    @property
    def _client_id(self) -> str:
        return f"command-svc-{self.settings.instance_id}"

    async def start(self) -> None:
        """Start everything, retrying while Kafka or the store cannot be reached yet.

        A replica started during an outage (or into one) waits for its dependencies instead of
        exiting: without an orchestrator nothing would start it again, and with one a crash loop
        only adds back-off delays to the recovery.
        """
        for attempt in itertools.count(1):
            try:
                await self._start_once()
            except (WriteStoreUnavailableError, KafkaError, OSError, TimeoutError) as exc:
                pause = min(5.0, 0.25 * 2**attempt)
                log.warning(
                    "command-svc cannot start yet (%s: %s); retrying in %.1f s",
                    type(exc).__name__,
                    exc,
                    pause,
                )
                await self.stop()
                await asyncio.sleep(pause)
            else:
                return

    async def _start_once(self) -> None:
        settings = self.settings
        history = self.topics.retained_forever(self.registry.aggregate_types)
        await ensure_topics(
            settings.kafka_bootstrap_servers,
            self.topics.all_for(self.registry.aggregate_types),
            partitions=settings.topic_partitions,
            replication_factor=settings.topic_replication_factor,
            configs=dict.fromkeys(history, RETAIN_FOREVER),
        )
        self.store, leases = await self._open_stores()
        # One producer for events, outcomes and dead letters, renewed after a failed delivery.
        self._producer = RenewingProducer(
            lambda: make_producer(settings.kafka_bootstrap_servers, client_id=self._client_id),
            on_renew=PRODUCER_RENEWALS.inc,
        )
        await self._producer.start()
        self.relay = self._relay = OutboxRelay(
            self.store,
            leases,
            KafkaEventPublisher(self._producer, self.topics),
            member_id=settings.instance_id,
            settings=RelaySettings(
                shards=settings.relay_shards,
                lease_ttl_seconds=settings.relay_lease_ttl_seconds,
                scan_interval_seconds=settings.relay_scan_interval_seconds,
            ),
            liveness=self.liveness,
        )
        if settings.event_publisher != "outbox":
            self.relay = self._relay = await self._stream_publisher()
        self.pipeline = CommandPipeline(
            self.registry,
            self.store,
            self._verifier,
            on_commit=self.relay.notify,
            relay_shards=settings.relay_shards,
            max_attempts=settings.max_decide_attempts,
            intake_paused=self.relay.intake_paused,
        )
        self.results = ResultsPublisher(self._producer, self.topics)
        await self.relay.start()
        self._topic_door = self._subscribe()
        await self._topic_door.start()
        log.info(
            "command-svc ready", extra={"topics": self.topics.commands, "instance": settings.instance_id}
        )

    async def stop(self) -> None:
        """Stop what was started, also after a start that failed half-way; safe to call twice."""
        # Stop taking commands first, then let the relay hand its shards over, then disconnect.
        door, self._topic_door = self._topic_door, None
        if door is not None:
            await door.stop()
        relay, self._relay = self._relay, None
        if relay is not None:
            await relay.stop()
        producer, self._producer = self._producer, None
        if producer is not None:
            await producer.stop()
        watchdog, self._watchdog = self._watchdog, None
        if watchdog is not None:
            await watchdog.stop()
        mongo, self._mongo = self._mongo, None
        if mongo is not None:
            await mongo.close()
        dynamo, self._dynamo = self._dynamo, None
        if dynamo is not None:
            await dynamo.close()

    async def _open_stores(self) -> tuple[WriteStore, LeaseStore]:
        if self.settings.write_store == "memory":
            return MemoryWriteStore(), MemoryLeaseStore()
        settings = self.settings
        if settings.write_store == "dynamodb":
            # Imported here: botocore costs a second of start-up to every replica that never uses it.
            from command_svc.write_store.dynamo_store import DynamoWriteStore

            self._dynamo = await DynamoWriteStore.open(settings.dynamo())
            return self._dynamo, self._dynamo.leases()
        self._mongo = await MongoWriteStore.open(
            settings.mongodb_uri,
            settings.mongodb_database,
            timeout_ms=settings.mongodb_timeout_ms,
            max_pool_size=settings.mongodb_max_pool_size,
        )
        self._watchdog = StoreWatchdog(
            self._mongo,
            self.liveness,
            WatchdogSettings(
                interval_seconds=settings.store_watchdog_interval_seconds,
                timeout_seconds=settings.mongodb_timeout_ms / 1000 + 3,
                wedged_after_seconds=settings.store_wedged_after_seconds,
            ),
        )
        self._watchdog.start()
        return self._mongo, self._mongo.leases()

    async def _stream_publisher(self) -> StreamPublisher | NoEventPublisher:
        """Publishing from the commits table's stream (in this process), or left to another one."""
        # Imported here, like the DynamoDB store: botocore is start-up time the other stores never use.
        from command_svc.stream_publishing.stream_publisher import (
            NoEventPublisher,
            StreamPublisher,
            StreamPublisherSettings,
        )

        if self.settings.event_publisher == "none" or self._dynamo is None:
            return NoEventPublisher()
        return StreamPublisher(
            await self._dynamo.streams_client(),
            self._dynamo,
            self._dynamo.leases(),
            KafkaEventPublisher(self._producer, self.topics),
            member_id=self.settings.instance_id,
            settings=StreamPublisherSettings(lease_ttl_seconds=self.settings.relay_lease_ttl_seconds),
            liveness=self.liveness,
        )

    def _subscribe(self) -> TopicConsumer:
        settings = self.settings
        door = TopicDoor(
            self.pipeline,
            self.results,
            max_command_bytes=settings.max_command_bytes,
            concurrency=settings.batch_concurrency,
            command_timeout_seconds=settings.topic_command_timeout_seconds,
            ack_timeout_seconds=settings.topic_kafka_timeout_seconds,
        )
        return TopicConsumer(
            door,
            ConsumerSettings(
                bootstrap_servers=settings.kafka_bootstrap_servers,
                topic=self.topics.commands,
                group_id=settings.consumer_group,
                client_id=self._client_id,
                max_records=settings.batch_max_records,
                fetch_timeout_ms=settings.topic_fetch_timeout_ms,
                kafka_timeout_seconds=settings.topic_kafka_timeout_seconds,
                retry_pause_seconds=settings.topic_retry_pause_seconds,
                session_timeout_ms=settings.topic_session_timeout_ms,
                heartbeat_interval_ms=settings.topic_heartbeat_interval_ms,
                max_poll_interval_ms=settings.topic_max_poll_interval_ms,
                rebalance_timeout_ms=settings.topic_rebalance_timeout_ms,
                liveness_seconds=settings.topic_liveness_seconds,
                group_instance_id=settings.instance_id,
            ),
            self.liveness,
        )

    # --- readiness --------------------------------------------------------------------------------

    async def store_ready(self) -> None:
        # The probe client measures the server, not the queue in front of this process's pool.
        await (self._mongo.probe() if self._mongo is not None else self.store.ping())

    async def kafka_ready(self) -> None:
        if self._producer is None:
            raise RuntimeError("the producer is not started")
        await self._producer.check_ready()
        if self._topic_door is None:
            raise RuntimeError("the topic door is not started")
        self._topic_door.check_member()

    async def relay_ready(self) -> None:
        if self._relay is None:
            raise RuntimeError("the relay is not started")
        self._relay.check_running()
