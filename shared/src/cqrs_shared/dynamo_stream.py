"""DynamoDB stream records of the commits table -> the commit and event envelopes each one carries.

The one decoding for everything that reads the table's stream: the long-running stream publisher
and its Lambda twin (events to Kafka), and the serverless projection (events straight into
PostgreSQL). A record has the same shape from `GetRecords` and in a Lambda event (`eventName`,
`dynamodb.NewImage` in DynamoDB's typed JSON, `dynamodb.SequenceNumber`), so both go through here.

Which records carry events: a commit item is written once (`INSERT`: the accepted command, its
events) and modified only to leave the unpublished index once published (`MODIFY`); commits are
never deleted. So events come from `INSERT` records of commit items only, and the `MODIFY` of a
publication mark never delivers them twice. Items that are not commits (none are expected on this
table) and removals carry none either.

The item format is the write store's (command-svc's `write_store/dynamo_items.py` writes it): the
commit's content as one JSON string `body` beside the key attributes `stream` and `base`, and
`pending_shard` present while the commit is unpublished. `commit_from_image` is the one reader of
that format.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any

from pydantic import ValidationError

from cqrs_shared.envelopes import EventEnvelope
from cqrs_shared.write_store.port import Commit

__all__ = [
    "STREAM_VIEW",
    "UndecodableRecordError",
    "commit_from_image",
    "commit_of_record",
    "events_of_record",
    "is_commit_image",
    "sequence_number",
]

#: The stream view the table must have: records carry the item as written.
STREAM_VIEW = "NEW_IMAGE"


class UndecodableRecordError(ValueError):
    """A stream record (or its item) is not what the write store writes: a poison record."""


def is_commit_image(image: Mapping[str, Any]) -> bool:
    """True for a commit item (as opposed to anything else the table could hold)."""
    return "body" in image and "base" in image


def commit_from_image(image: Mapping[str, Any]) -> Commit:
    """The commit an item holds (a `GetItem`/`Query` item or a stream record's `NewImage`);
    `published` once the item has left the unpublished index. Raises `UndecodableRecordError`."""
    try:
        body = json.loads(image["body"]["S"])
        if not isinstance(body, dict):
            raise UndecodableRecordError("the commit body is not a JSON object")
        body["published"] = "pending_shard" not in image
        return Commit.model_validate(body)
    except (KeyError, TypeError, ValueError) as exc:
        if isinstance(exc, UndecodableRecordError):
            raise
        detail = str(exc) if not isinstance(exc, ValidationError) else f"{exc.error_count()} invalid fields"
        raise UndecodableRecordError(f"not a commit item: {type(exc).__name__}: {detail}") from exc


def sequence_number(record: Mapping[str, Any]) -> str:
    """The record's position in its shard (a decimal string of up to 40 digits): what Lambda's
    `batchItemFailures` names and where a shard iterator resumes."""
    try:
        value = record["dynamodb"]["SequenceNumber"]
    except (KeyError, TypeError) as exc:
        raise UndecodableRecordError("the record has no dynamodb.SequenceNumber") from exc
    if not isinstance(value, str) or not value.isdigit():
        raise UndecodableRecordError(f"sequence number {value!r} is not a decimal string")
    return value


def commit_of_record(record: Mapping[str, Any]) -> Commit | None:
    """The commit a stream record inserted, or None for records that add no events (a commit
    marked published, a removal, an item that is not a commit). Raises `UndecodableRecordError`."""
    name = record.get("eventName")
    if name not in ("INSERT", "MODIFY", "REMOVE"):
        raise UndecodableRecordError(f"unknown eventName {name!r}")
    if name != "INSERT":
        return None
    image = record.get("dynamodb", {}).get("NewImage")
    if not isinstance(image, Mapping):
        raise UndecodableRecordError(f"an INSERT without a NewImage: the stream view must be {STREAM_VIEW}")
    if not is_commit_image(image):
        return None
    return commit_from_image(image)


def events_of_record(record: Mapping[str, Any]) -> Sequence[EventEnvelope]:
    """The event envelopes a stream record delivers, in version order (empty for records that
    deliver none, see `commit_of_record`). Raises `UndecodableRecordError`."""
    commit = commit_of_record(record)
    return [] if commit is None else commit.events
