"""Projector configuration (`PROJECTOR_SVC_*`, plus the shared infrastructure variables)."""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import AliasChoices, Field, SecretStr, model_validator

from cqrs_shared.postgres_connect import PostgresConnectSettings
from cqrs_shared.read_models.definitions import ProjectionNames
from cqrs_shared.settings import (
    KafkaSettings,
    ObservabilitySettings,
    settings_config,
    with_default_instance_id,
)


class ProjectorSettings(KafkaSettings, ObservabilitySettings, PostgresConnectSettings):
    model_config = settings_config("PROJECTOR_SVC_")

    host: str = "0.0.0.0"  # noqa: S104  # a container's port is only reachable on all interfaces
    port: Annotated[int, Field(ge=1, le=65535)] = 8082
    #: Who this replica is to Kafka's group coordinator (static membership, one member per
    #: projection): a restarted replica takes its partitions back at once. Default host name and port.
    instance_id: str = ""
    database_url: Annotated[
        SecretStr, Field(validation_alias=AliasChoices("DATABASE_URL", "database_url"))
    ] = SecretStr("postgresql://cqrs:cqrs@127.0.0.1:5432/cqrs")
    pool_size: Annotated[int, Field(ge=1, le=100)] = 4
    consumer_group: str = "projector-svc"
    max_batch_records: Annotated[int, Field(ge=1, le=50_000)] = 2000
    fetch_timeout_ms: Annotated[int, Field(ge=1, le=60_000)] = 200
    #: Records per batch of a rebuild: larger than live batches, since nobody waits on a build
    #: that is not active yet, and each batch folds more of an aggregate's events into one write.
    rebuild_batch_records: Annotated[int, Field(ge=1, le=200_000)] = 20_000
    #: `/healthz` fails when the projector loop has not completed a step for this long (a step is
    #: one fetch and one batch transaction; only a hang takes this long).
    liveness_seconds: Annotated[float, Field(gt=0)] = 120.0
    #: A crashed replica's partitions wait this long for a new owner (the broker's minimum, 6 s by
    #: default, keeps recovery after a SIGKILL short).
    session_timeout_ms: Annotated[int, Field(ge=1000, le=300_000)] = 6_000
    #: Seconds an event parked for a version gap waits before it is dead-lettered.
    gap_timeout_seconds: Annotated[float, Field(gt=0)] = 60.0
    #: Seconds between rounds of gap expiry, replay requests and advisory Kafka commits.
    maintenance_interval_seconds: Annotated[float, Field(gt=0)] = 1.0
    #: Seconds between refreshes of the lag, view staleness and parked-events gauges (from Kafka's
    #: end offsets and the stored positions, so an idle or stuck consumer still shows its lag).
    metrics_interval_seconds: Annotated[float, Field(gt=0)] = 5.0
    #: The projections this process runs (`PROJECTOR_SVC_PROJECTIONS=shop,products`), each defined
    #: in `cqrs_shared.read_models.<name>`; each has its own consumer group, builds and checkpoints.
    projections: ProjectionNames = ("shop",)

    @model_validator(mode="before")
    @classmethod
    def _default_instance(cls, data: Any) -> Any:
        return with_default_instance_id(data, cls.model_fields["port"].default)

    def group_id_for(self, projection: str) -> str:
        """The Kafka consumer group of one projection: prefixed like the topics, so tenants and tests
        sharing a cluster never join each other's group, and one per projection, since two
        projections reading the same topics in one group would split its partitions between them."""
        return f"{self.topic_prefix}{self.consumer_group}.{projection}"
