import uuid
from datetime import UTC, datetime, timedelta, timezone

import pytest
from pydantic import ValidationError

from cqrs_shared.consistency import ConsistencyToken, InvalidTokenError
from cqrs_shared.envelopes import CommandEnvelope, EventEnvelope
from cqrs_shared.results import Accepted, Rejected, RejectionCode


def _command(**overrides: object) -> dict[str, object]:
    base: dict[str, object] = {
        "command_id": str(uuid.uuid4()),
        "type": "RegisterCustomer",
        "aggregate_id": "c-1",
        "payload": {"name": "Ada", "email": "ada@example.com"},
    }
    base.update(overrides)
    return base


def _errors(exc: pytest.ExceptionInfo[ValidationError]) -> dict[str, str]:
    return {".".join(map(str, e["loc"])): e["type"] for e in exc.value.errors()}


def test_command_envelope_accepts_a_minimal_command_and_defaults_the_correlation_to_its_id() -> None:
    envelope = CommandEnvelope.model_validate(_command())
    assert envelope.expected_version is None
    assert envelope.correlation_id == str(envelope.command_id)


def test_command_envelope_keeps_an_explicit_correlation_id() -> None:
    envelope = CommandEnvelope.model_validate(_command(metadata={"correlation_id": "order-flow-7"}))
    assert envelope.correlation_id == "order-flow-7"


def test_command_envelope_names_every_offending_field() -> None:
    with pytest.raises(ValidationError) as exc:
        CommandEnvelope.model_validate(
            _command(command_id="not-a-uuid", type="register customer", aggregate_id="", expected_version=-1)
        )
    assert _errors(exc) == {
        "command_id": "uuid_parsing",
        "type": "string_pattern_mismatch",
        "aggregate_id": "string_too_short",
        "expected_version": "greater_than_equal",
    }


def test_command_envelope_refuses_unknown_fields_at_every_level() -> None:
    with pytest.raises(ValidationError) as exc:
        CommandEnvelope.model_validate(
            _command(colour="red", metadata={"correlation_id": "x", "tenant": "t"})
        )
    assert _errors(exc) == {"colour": "extra_forbidden", "metadata.tenant": "extra_forbidden"}


def test_command_envelope_requires_the_identifying_fields() -> None:
    with pytest.raises(ValidationError) as exc:
        CommandEnvelope.model_validate({"payload": {}})
    assert _errors(exc) == {"command_id": "missing", "type": "missing", "aggregate_id": "missing"}


def _event(**overrides: object) -> dict[str, object]:
    base: dict[str, object] = {
        "event_id": str(uuid.uuid4()),
        "type": "CustomerRegistered",
        "aggregate_type": "customer",
        "aggregate_id": "c-1",
        "version": 1,
        "occurred_at": "2026-11-26T10:00:00+01:00",
        "correlation_id": "k",
        "causation_id": "k",
        "payload": {"name": "Ada"},
    }
    base.update(overrides)
    return base


def test_event_envelope_normalises_time_to_utc_and_round_trips_through_json() -> None:
    event = EventEnvelope.model_validate(_event())
    assert event.occurred_at == datetime(2026, 11, 26, 9, 0, tzinfo=UTC)
    assert event.occurred_at.utcoffset() == timedelta(0)
    assert EventEnvelope.model_validate_json(event.model_dump_json()) == event
    assert event.schema_version == 1


def test_event_envelope_refuses_naive_times_and_versions_below_one() -> None:
    with pytest.raises(ValidationError) as exc:
        EventEnvelope.model_validate(
            _event(occurred_at="2026-11-26T10:00:00", version=0, aggregate_type="Customer")
        )
    assert _errors(exc) == {
        "occurred_at": "timezone_aware",
        "version": "greater_than_equal",
        "aggregate_type": "string_pattern_mismatch",
    }


def test_event_ids_are_derived_from_the_position_in_the_history() -> None:
    first = EventEnvelope.id_for("customer", "c-1", 1)
    assert first == EventEnvelope.id_for("customer", "c-1", 1)
    assert first != EventEnvelope.id_for("customer", "c-1", 2)
    assert first != EventEnvelope.id_for("order", "c-1", 1)


def test_outcomes_are_discriminated_by_status() -> None:
    from pydantic import TypeAdapter

    from cqrs_shared.results import CommandResult

    adapter: TypeAdapter[Accepted | Rejected] = TypeAdapter(CommandResult)
    rejected = adapter.validate_python(
        {
            "status": "rejected",
            "command_id": str(uuid.uuid4()),
            "command_type": "X",
            "aggregate_id": "a",
            "correlation_id": "c",
            "code": "conflict",
            "message": "m",
        }
    )
    assert isinstance(rejected, Rejected)
    assert rejected.code is RejectionCode.CONFLICT
    assert rejected.code.http_status == 409


def test_consistency_token_round_trips_and_refuses_malformed_tokens() -> None:
    import base64

    token = ConsistencyToken("order", "o|1", 7)
    assert ConsistencyToken.decode(token.encode()) == token

    def raw(text: str) -> str:
        return base64.urlsafe_b64encode(text.encode()).decode().rstrip("=")

    for bad in ("", "!!!", raw("v1|order|0|o"), raw("v2|order|3|o"), raw("v1|order|x|o"), raw("v1||3|o")):
        with pytest.raises(InvalidTokenError):
            ConsistencyToken.decode(bad)


def test_time_zones_other_than_utc_are_equal_instants() -> None:
    event = EventEnvelope.model_validate(
        _event(occurred_at=datetime(2026, 1, 1, 12, tzinfo=timezone(timedelta(hours=2))))
    )
    assert event.occurred_at.hour == 10
