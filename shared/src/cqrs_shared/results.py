"""Command outcomes: one record on `command-results` per handled command, and the HTTP door's answer.

An outcome is either `accepted` (what was stored) or `rejected` (a stable code a program can switch
on, a message a human can read, and field errors where input was at fault).
"""

from __future__ import annotations

import uuid
from enum import StrEnum
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field


class RejectionCode(StrEnum):
    """Why a command was not applied. Stable: clients switch on these."""

    INVALID = "invalid"
    UNAUTHORIZED = "unauthorized"
    FORBIDDEN = "forbidden"
    CONFLICT = "conflict"
    RULE_VIOLATED = "rule_violated"
    NOT_FOUND = "not_found"

    @property
    def http_status(self) -> int:
        return _HTTP_STATUS[self]


_HTTP_STATUS = {
    RejectionCode.INVALID: 422,
    RejectionCode.UNAUTHORIZED: 401,
    RejectionCode.FORBIDDEN: 403,
    RejectionCode.CONFLICT: 409,
    RejectionCode.RULE_VIOLATED: 422,
    RejectionCode.NOT_FOUND: 404,
}


class FieldError(BaseModel):
    """One offending input field: `loc` is the path inside the envelope, e.g. `payload.email`."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    loc: str
    message: str
    type: str


class _Outcome(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    command_id: uuid.UUID
    command_type: str
    aggregate_id: str
    correlation_id: str


class Accepted(_Outcome):
    """The command was decided and its events are stored (and will reach Kafka from the store)."""

    status: Literal["accepted"] = "accepted"
    aggregate_type: str
    version: int
    event_ids: list[uuid.UUID]
    consistency_token: str = Field(description="Pass to the query side to read your own write.")


class Rejected(_Outcome):
    """The command changed nothing."""

    status: Literal["rejected"] = "rejected"
    code: RejectionCode
    message: str
    errors: list[FieldError] = Field(default_factory=list)


CommandResult = Annotated[Accepted | Rejected, Field(discriminator="status")]
