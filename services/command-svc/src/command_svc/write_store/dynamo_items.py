"""How commits and outcomes look as DynamoDB items, and the one way back from an item to a commit.

Reading an item back is `cqrs_shared.dynamo_stream.commit_from_image`, the one reader of this format:
the store's reads, the stream publisher and both Lambda handlers (a stream record's `NewImage` is the
item as written) decode it the same way.

A commit's content (events, state) is kept as one JSON string, `body`: DynamoDB's own number and map
types would turn integers into decimals and drop the difference between a list and a set, and the
contract says a commit reads back exactly as stored. The key and index attributes sit beside it.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from cqrs_shared.results import Accepted, CommandResult, Rejected
from cqrs_shared.write_store.port import Commit, CommitTooLargeError

#: DynamoDB's limit on one item (attribute names and values together).
MAX_ITEM_BYTES = 400 * 1024
#: Room kept under the limit for the encoding overheads the estimate below does not count exactly.
_ITEM_MARGIN = 1024
_VERSION_DIGITS = 12

Item = dict[str, Any]


def stream_key(aggregate_type: str, aggregate_id: str) -> str:
    return f"{aggregate_type}/{aggregate_id}"


def position(aggregate_type: str, aggregate_id: str, version: int) -> str:
    """Sorts an aggregate's commits in version order within a relay shard of the sparse index."""
    return f"{stream_key(aggregate_type, aggregate_id)}@{version:0{_VERSION_DIGITS}d}"


def commit_item(commit: Commit) -> Item:
    """The commit as written: unpublished (in the sparse index), whatever `commit.published` says."""
    body = commit.model_dump(mode="json", exclude={"published"})
    item: Item = {
        "stream": {"S": stream_key(commit.aggregate_type, commit.aggregate_id)},
        "base": {"N": str(commit.base_version)},
        "version": {"N": str(commit.version)},
        "command_id": {"S": str(commit.command_id)},
        "pending_shard": {"N": str(commit.shard)},
        "position": {"S": position(commit.aggregate_type, commit.aggregate_id, commit.version)},
        "body": {"S": json.dumps(body, separators=(",", ":"), ensure_ascii=False)},
    }
    if commit.base_version == 0:
        item["first_of"] = {"S": commit.aggregate_type}  # one item per aggregate in `streams`
    check_item_size(item)
    return item


def outcome_item(outcome: CommandResult) -> Item:
    item: Item = {
        "command_id": {"S": str(outcome.command_id)},
        "status": {"S": outcome.status},
        "outcome": {"S": outcome.model_dump_json()},
    }
    check_item_size(item)
    return item


def outcome_from_item(item: Mapping[str, Any]) -> CommandResult:
    if item["status"]["S"] == "rejected":
        return Rejected.model_validate_json(item["outcome"]["S"])
    return Accepted.model_validate_json(item["outcome"]["S"])


def item_size(item: Mapping[str, Any]) -> int:
    """DynamoDB's size of an item: UTF-8 bytes of names and string values, up to 21 per number."""
    size = 0
    for name, value in item.items():
        size += len(name.encode())
        if "S" in value:
            size += len(value["S"].encode())
        elif "N" in value:
            size += 21
        else:
            size += len(json.dumps(value).encode())
    return size


def check_item_size(item: Mapping[str, Any]) -> None:
    """Raise `CommitTooLargeError` before DynamoDB would refuse the item with a validation error."""
    size = item_size(item)
    if size > MAX_ITEM_BYTES - _ITEM_MARGIN:
        raise CommitTooLargeError(size, MAX_ITEM_BYTES - _ITEM_MARGIN)
