"""Stream records -> events: only the INSERT of a commit delivers them, and poison is named."""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime
from typing import Any

import pytest

from cqrs_shared.dynamo_stream import (
    UndecodableRecordError,
    commit_from_image,
    events_of_record,
    sequence_number,
)
from cqrs_shared.envelopes import EventEnvelope
from cqrs_shared.write_store.port import Commit

AT = datetime(2026, 1, 1, tzinfo=UTC)


def _commit() -> Commit:
    event = EventEnvelope(
        event_id=EventEnvelope.id_for("customer", "c-1", 1),
        type="CustomerRegistered",
        aggregate_type="customer",
        aggregate_id="c-1",
        version=1,
        occurred_at=AT,
        correlation_id="k",
        causation_id="k",
        payload={"name": "Ada", "email": "ada@example.com"},
    )
    return Commit(
        aggregate_type="customer",
        aggregate_id="c-1",
        base_version=0,
        version=1,
        command_id=uuid.uuid4(),
        command_type="RegisterCustomer",
        correlation_id="k",
        events=[event],
        state={"n": 1},
        committed_at=AT,
        shard=3,
    )


def _image(commit: Commit, *, pending: bool = True) -> dict[str, Any]:
    image: dict[str, Any] = {
        "stream": {"S": "customer/c-1"},
        "base": {"N": "0"},
        "body": {"S": json.dumps(commit.model_dump(mode="json", exclude={"published"}))},
    }
    if pending:
        image["pending_shard"] = {"N": "3"}
    return image


def _record(
    name: str, image: dict[str, Any] | None, sequence: str = "4421584500000000017450439091"
) -> dict[str, Any]:
    dynamodb: dict[str, Any] = {"Keys": {"stream": {"S": "customer/c-1"}}, "SequenceNumber": sequence}
    if image is not None:
        dynamodb["NewImage"] = image
    return {"eventID": "1", "eventName": name, "dynamodb": dynamodb}


def test_an_inserted_commit_delivers_its_events_and_reads_back_as_stored() -> None:
    commit = _commit()
    assert events_of_record(_record("INSERT", _image(commit))) == commit.events
    assert commit_from_image(_image(commit)) == commit
    assert commit_from_image(_image(commit, pending=False)).published


def test_a_publication_mark_a_removal_and_other_items_deliver_nothing() -> None:
    commit = _commit()
    assert events_of_record(_record("MODIFY", _image(commit, pending=False))) == []
    assert events_of_record(_record("REMOVE", None)) == []
    assert events_of_record(_record("INSERT", {"stream": {"S": "x"}, "owner": {"S": "r-1"}})) == []


@pytest.mark.parametrize(
    "record",
    [
        _record("INSERT", {"stream": {"S": "x"}, "base": {"N": "0"}, "body": {"S": "{not json"}}),
        _record("INSERT", {"stream": {"S": "x"}, "base": {"N": "0"}, "body": {"S": "[1]"}}),
        _record("INSERT", {"stream": {"S": "x"}, "base": {"N": "0"}, "body": {"S": '{"version": 1}'}}),
        _record("INSERT", {"stream": {"S": "x"}, "base": {"N": "0"}, "body": {"N": "1"}}),
        _record("INSERT", None),
        _record("UPSERT", None),
    ],
    ids=["not-json", "not-an-object", "not-a-commit", "body-not-a-string", "keys-only-view", "unknown-event"],
)
def test_records_that_are_not_what_the_store_writes_are_poison(record: dict[str, Any]) -> None:
    with pytest.raises(UndecodableRecordError):
        events_of_record(record)


def test_sequence_numbers_are_decimal_strings_too_long_for_an_int64() -> None:
    assert sequence_number(_record("INSERT", None)) == "4421584500000000017450439091"
    with pytest.raises(UndecodableRecordError):
        sequence_number(_record("INSERT", None, sequence="12a"))
    with pytest.raises(UndecodableRecordError):
        sequence_number({"eventName": "INSERT"})
