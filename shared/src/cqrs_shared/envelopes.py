"""Wire envelopes: what travels on the `commands` topic, the `events.*` topics and `POST /v1/commands`.

Both are JSON objects; the Kafka record key is the aggregate id, so Kafka keeps one aggregate's
messages in one partition and in order. Unknown fields are refused (`extra="forbid"`) so a typo in a
producer is an error at the door rather than a silently ignored field.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Annotated, Any

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, field_validator

#: Command and event type names: PascalCase identifiers, so they are safe in metrics labels and topics.
TypeName = Annotated[str, Field(pattern=r"^[A-Z][A-Za-z0-9]{0,99}$", examples=["RegisterCustomer"])]
#: Aggregate ids travel as Kafka keys and database keys: printable, no spaces, bounded.
AggregateId = Annotated[
    str,
    Field(min_length=1, max_length=128, pattern=r"^[A-Za-z0-9][A-Za-z0-9._:@-]*$", examples=["c-42"]),
]
AggregateType = Annotated[str, Field(pattern=r"^[a-z][a-z0-9_]{0,62}$", examples=["customer"])]
CorrelationId = Annotated[str, Field(min_length=1, max_length=128)]

#: Namespace of event ids: an event's id is derived from its position in the aggregate's history, so
#: re-deciding the same position can never mint a second identity for it.
EVENT_ID_NAMESPACE = uuid.UUID("5b0f2a4e-6c1d-4f7e-9a55-3f1c2b7d8e90")


def utc_now() -> datetime:
    """The current time in UTC; the one clock the services use, so tests can see where time enters."""
    return datetime.now(UTC)


class CommandMetadata(BaseModel):
    """Tracing data that rides along with a command and is echoed on its outcome and events."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    correlation_id: CorrelationId | None = Field(
        default=None, description="Ties a business transaction together; defaults to the command id."
    )
    causation_id: CorrelationId | None = Field(default=None, description="What caused this command.")


class CommandEnvelope(BaseModel):
    """A request to change one aggregate.

    `command_id` is the idempotency key: the same id again returns the first outcome and changes
    nothing. `expected_version` pins the aggregate version the sender saw (optimistic concurrency);
    without it a lost race is retried on fresh state.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    command_id: uuid.UUID
    type: TypeName
    aggregate_id: AggregateId
    expected_version: Annotated[int, Field(ge=0)] | None = None
    payload: dict[str, Any] = Field(default_factory=dict)
    metadata: CommandMetadata = Field(default_factory=CommandMetadata)

    @property
    def correlation_id(self) -> str:
        return self.metadata.correlation_id or str(self.command_id)


class EventEnvelope(BaseModel):
    """A fact decided by the write side, exactly as stored and as published.

    `version` is the aggregate version this event produced (1 for the first event of an aggregate),
    so consumers can detect duplicates (version already seen) and gaps (version ahead of the next).
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    event_id: uuid.UUID
    type: TypeName
    schema_version: Annotated[int, Field(ge=1)] = 1
    aggregate_type: AggregateType
    aggregate_id: AggregateId
    version: Annotated[int, Field(ge=1)]
    occurred_at: AwareDatetime
    correlation_id: CorrelationId
    causation_id: CorrelationId
    payload: dict[str, Any] = Field(default_factory=dict)

    @field_validator("occurred_at")
    @classmethod
    def _as_utc(cls, value: datetime) -> datetime:
        return value.astimezone(UTC)

    @staticmethod
    def id_for(aggregate_type: str, aggregate_id: str, version: int) -> uuid.UUID:
        """The deterministic event id of one position in one aggregate's history."""
        return uuid.uuid5(EVENT_ID_NAMESPACE, f"{aggregate_type}/{aggregate_id}/{version}")
