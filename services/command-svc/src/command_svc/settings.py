"""Command service configuration (`COMMAND_SVC_*`, plus the shared infrastructure variables)."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import AliasChoices, Field, model_validator

from command_svc.write_store.dynamo_settings import DynamoSettings
from cqrs_shared.settings import (
    AuthSettings,
    KafkaSettings,
    ObservabilitySettings,
    settings_config,
    with_default_instance_id,
)


class CommandServiceSettings(KafkaSettings, AuthSettings, ObservabilitySettings):
    model_config = settings_config("COMMAND_SVC_")

    host: str = "0.0.0.0"  # noqa: S104  # a container's port is only reachable on all interfaces
    port: Annotated[int, Field(ge=1, le=65535)] = 8081
    #: Who this replica is to the relay's leases and the topic door's consumer group (static
    #: membership); default host name and port, see `with_default_instance_id`.
    instance_id: str = ""

    write_store: Annotated[
        Literal["mongodb", "dynamodb", "memory"],
        Field(validation_alias=AliasChoices("WRITE_STORE", "write_store")),
    ] = "mongodb"
    mongodb_uri: Annotated[str, Field(validation_alias=AliasChoices("MONGODB_URI", "mongodb_uri"))] = (
        "mongodb://127.0.0.1:27017/"
    )
    mongodb_database: Annotated[
        str, Field(validation_alias=AliasChoices("MONGODB_DATABASE", "mongodb_database"))
    ] = "cqrs"
    #: Bound on every write-store operation (PyMongo's timeoutMS).
    mongodb_timeout_ms: Annotated[int, Field(ge=100, le=120_000)] = 5000
    #: Concurrent write-store operations of this process (FerretDB holds a PostgreSQL connection
    #: for each operation in flight, from a pool shared by every client).
    mongodb_max_pool_size: Annotated[int, Field(ge=1, le=500)] = 32
    #: DynamoDB (`WRITE_STORE=dynamodb`): endpoint (unset on AWS; moto's URL locally), region, and the
    #: prefix of the table names (`<prefix>commits`, `<prefix>outcomes`, `<prefix>leases`).
    dynamodb_endpoint_url: Annotated[
        str | None, Field(validation_alias=AliasChoices("DYNAMODB_ENDPOINT_URL", "dynamodb_endpoint_url"))
    ] = None
    aws_region: Annotated[
        str, Field(validation_alias=AliasChoices("AWS_REGION", "AWS_DEFAULT_REGION", "aws_region"))
    ] = "us-east-1"
    dynamodb_table_prefix: Annotated[
        str, Field(validation_alias=AliasChoices("DYNAMODB_TABLE_PREFIX", "dynamodb_table_prefix"))
    ] = "cqrs-"
    #: botocore's retry mode and attempts per call (throttling, 5xx, connection errors); what still
    #: fails is "store unavailable" (503 + Retry-After, or the batch read again).
    dynamodb_retry_mode: Literal["standard", "adaptive"] = "standard"
    dynamodb_max_attempts: Annotated[int, Field(ge=1, le=20)] = 4
    dynamodb_timeout_seconds: Annotated[float, Field(gt=0, le=60)] = 5.0
    #: How often the store watchdog checks that this process's client still works.
    store_watchdog_interval_seconds: Annotated[float, Field(gt=0)] = 5.0
    #: A client failing while the store answers probes for this long is reported wedged (`/healthz`).
    store_wedged_after_seconds: Annotated[float, Field(gt=0)] = 30.0

    consumer_group: str = "command-svc"
    #: Records larger than this are dead-lettered (topic door) or refused with 413 (HTTP door).
    max_command_bytes: Annotated[int, Field(ge=1024)] = 256 * 1024
    batch_max_records: Annotated[int, Field(ge=1, le=10_000)] = 500
    #: Concurrent aggregates within one consumed batch (one aggregate's commands stay sequential).
    #: No more than the store pool below: beyond it, calls queue for a connection, and the queueing
    #: counts against the store timeout.
    batch_concurrency: Annotated[int, Field(ge=1, le=1000)] = 32
    max_decide_attempts: Annotated[int, Field(ge=1, le=50)] = 5

    #: The topic door's consumer. A turn fetches (at most the Kafka timeout), handles the batch (at
    #: most the command timeout, then waits at most the Kafka timeout for result acks), and commits
    #: (at most the Kafka timeout); the liveness bound must exceed that sum.
    topic_fetch_timeout_ms: Annotated[int, Field(ge=10, le=10_000)] = 500
    topic_command_timeout_seconds: Annotated[float, Field(gt=0)] = 30.0
    topic_kafka_timeout_seconds: Annotated[float, Field(gt=0)] = 10.0
    #: Pause of a partition before its records not done (store or Kafka failed) are read again.
    topic_retry_pause_seconds: Annotated[float, Field(ge=0)] = 1.0
    #: A crashed replica's partitions wait this long for a new owner: the broker's minimum (6 s by
    #: default) keeps recovery after a SIGKILL short.
    topic_session_timeout_ms: Annotated[int, Field(ge=1000)] = 6_000
    topic_heartbeat_interval_ms: Annotated[int, Field(ge=100)] = 2_000
    topic_max_poll_interval_ms: Annotated[int, Field(ge=1000)] = 90_000
    #: Keep below aiokafka's 40 s request timeout: the JoinGroup round trip lasts up to this long.
    topic_rebalance_timeout_ms: Annotated[int, Field(ge=1000, le=39_000)] = 30_000
    #: `/healthz` fails when the topic door's loop has not completed a turn for this long.
    topic_liveness_seconds: Annotated[float, Field(gt=0)] = 90.0

    #: Who publishes stored events to Kafka: `outbox` (the relay, any store), `dynamodb-stream` (the
    #: commits table's stream, read in this process), or `none` (a separate stream publisher
    #: process or the Lambda handler does it).
    event_publisher: Literal["outbox", "dynamodb-stream", "none"] = "outbox"
    relay_shards: Annotated[int, Field(ge=1, le=4096)] = 64
    #: A replica that died for good leaves its shards to others after this long (renewed every
    #: third of it); a restarted one takes them back at once (see `instance_id`). Long enough that
    #: a store slowed by load, or a pause of the process, does not cost the leases.
    relay_lease_ttl_seconds: Annotated[float, Field(gt=1)] = 10.0
    relay_scan_interval_seconds: Annotated[float, Field(gt=0)] = 1.0

    @model_validator(mode="before")
    @classmethod
    def _default_instance(cls, data: Any) -> Any:
        return with_default_instance_id(data, cls.model_fields["port"].default)

    @model_validator(mode="after")
    def _stream_needs_dynamodb(self) -> CommandServiceSettings:
        if self.event_publisher == "dynamodb-stream" and self.write_store != "dynamodb":
            raise ValueError("COMMAND_SVC_EVENT_PUBLISHER=dynamodb-stream needs WRITE_STORE=dynamodb")
        return self

    def dynamo(self) -> DynamoSettings:
        """The DynamoDB client's settings (the write store, the stream publisher)."""
        return DynamoSettings(
            endpoint_url=self.dynamodb_endpoint_url,
            region=self.aws_region,
            table_prefix=self.dynamodb_table_prefix,
            retry_mode=self.dynamodb_retry_mode,
            max_attempts=self.dynamodb_max_attempts,
            timeout_seconds=self.dynamodb_timeout_seconds,
            max_pool_connections=self.batch_concurrency + 8,
        )
