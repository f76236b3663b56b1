"""Base classes of command and event payloads, the typed bodies inside the envelopes.

A contract module subclasses these once per command or event; the class carries its wire name and,
for commands, the role a caller needs and the aggregate type it addresses. Payloads refuse unknown
fields, so a misspelt field is a field error, not a silent default.
"""

from __future__ import annotations

from typing import ClassVar

from pydantic import BaseModel, ConfigDict


class ValueObject(BaseModel):
    """An immutable value nested inside a payload (an order line, an address)."""

    model_config = ConfigDict(extra="forbid", frozen=True, str_strip_whitespace=True)


class CommandPayload(BaseModel):
    """The body of one command type."""

    model_config = ConfigDict(extra="forbid", frozen=True, str_strip_whitespace=True)

    TYPE: ClassVar[str]
    AGGREGATE_TYPE: ClassVar[str]
    REQUIRED_ROLE: ClassVar[str]


class EventPayload(BaseModel):
    """The body of one event type. `SCHEMA_VERSION` grows when the body changes incompatibly."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    TYPE: ClassVar[str]
    SCHEMA_VERSION: ClassVar[int] = 1
