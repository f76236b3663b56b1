"""The first stages of the pipeline, pure: bytes or JSON in, an envelope or a typed refusal out."""

from __future__ import annotations

import json
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from pydantic import ValidationError

from cqrs_shared.envelopes import CommandEnvelope
from cqrs_shared.results import CommandResult, FieldError, Rejected, RejectionCode


@dataclass(frozen=True, slots=True)
class DeadLetter:
    """A record for `commands.dlq` instead of an outcome: it names no command, or handling it crashed.

    `reason` is a stable word (`not_json`, `not_an_object`, `no_command_id`, `too_large`,
    `handler_error`); `detail` says what exactly was wrong.
    """

    reason: str
    detail: str


def field_errors(exc: ValidationError, prefix: str = "") -> list[FieldError]:
    return [
        FieldError(
            loc=".".join([prefix, *map(str, err["loc"])] if prefix else map(str, err["loc"])) or "(root)",
            message=err["msg"],
            type=err["type"],
        )
        for err in exc.errors(include_url=False)
    ]


def outcome_label(outcome: CommandResult | DeadLetter) -> str:
    """A bounded label for metrics: never a value taken from input."""
    if isinstance(outcome, DeadLetter):
        return "dead_lettered"
    if isinstance(outcome, Rejected):
        return f"rejected_{outcome.code.value}"
    return "accepted"


def decode(raw: bytes | Mapping[str, Any]) -> Mapping[str, Any] | DeadLetter:
    if isinstance(raw, bytes | bytearray):
        try:
            raw = json.loads(raw)
        except (UnicodeDecodeError, json.JSONDecodeError, RecursionError) as exc:
            return DeadLetter("not_json", f"the record is not JSON: {exc}")
    if not isinstance(raw, Mapping):
        return DeadLetter("not_an_object", "a command must be a JSON object")
    try:
        uuid.UUID(str(raw.get("command_id")))
    except ValueError:
        return DeadLetter("no_command_id", "a command needs a UUID `command_id`")
    return raw


def flow_of(raw: bytes | None, letter: DeadLetter) -> tuple[str | None, str | None]:
    """The correlation and causation ids a dead-lettered record names, as far as it can be read:
    the correlation defaults to the command id, as for a valid command. A record refused for its
    size is not parsed at all."""
    if letter.reason == "too_large":
        return None, None
    try:
        decoded = json.loads(raw or b"")
    except (UnicodeDecodeError, json.JSONDecodeError, RecursionError):
        return None, None
    if not isinstance(decoded, Mapping):
        return None, None
    metadata = decoded.get("metadata")
    metadata = metadata if isinstance(metadata, Mapping) else {}
    correlation = metadata.get("correlation_id") or decoded.get("command_id")
    causation = metadata.get("causation_id")
    return (
        str(correlation)[:128] if correlation is not None else None,
        str(causation)[:128] if causation is not None else None,
    )


def reject(
    envelope: CommandEnvelope, code: RejectionCode, message: str, errors: list[FieldError] | None = None
) -> Rejected:
    return Rejected(
        command_id=envelope.command_id,
        command_type=envelope.type,
        aggregate_id=envelope.aggregate_id,
        correlation_id=envelope.correlation_id,
        code=code,
        message=message,
        errors=errors or [],
    )


def invalid(raw: Mapping[str, Any], message: str, errors: list[FieldError]) -> Rejected:
    """A rejection for an envelope that failed validation: echo what can be echoed, as strings."""
    metadata = raw.get("metadata")
    correlation = metadata.get("correlation_id") if isinstance(metadata, Mapping) else None
    return Rejected(
        command_id=uuid.UUID(str(raw["command_id"])),
        command_type=str(raw.get("type", ""))[:100],
        aggregate_id=str(raw.get("aggregate_id", ""))[:128],
        correlation_id=str(correlation or raw["command_id"])[:128],
        code=RejectionCode.INVALID,
        message=message,
        errors=errors,
    )
