"""The projector-to-query contract: where readers find a projection's rows, and how they hear of changes.

- Relations: every projection table is a view `read.<table>` over the active build; the runtime
  tables every build keeps get the projection as a prefix (`read.<projection>_partition_offsets`,
  `read.<projection>_aggregate_versions`, `read.<projection>_parked_events`).
- Notifications: each projector transaction that changes rows sends `pg_notify(CHANNEL, payload)`
  with `{"v": 1, "projection", "schema", "changes": [[aggregate_type, aggregate_id, version], ...]}`
  (the aggregates it raised, in the build schema it wrote), or `"overflow": true` instead of changes
  when every reader of the projection must re-check (a build was activated). PostgreSQL refuses
  payloads from 8000 bytes, so `encode_changes` splits a large batch into several payloads, which
  the transaction delivers together at commit, or not at all.

`encode_*` is what the projector sends and `decode` what query-svc reads; nothing else writes or
parses the format. `decode` accepts payloads without `v` (sent before the field existed) and
refuses versions it does not know, so a newer projector can never be half-understood.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from cqrs_shared.read_models.identifiers import check_identifier

CHANNEL = "cqrs_projection"
FORMAT_VERSION = 1
READ_SCHEMA = "read"
#: Tables every build schema has beside the projection's own (positions, guard, parked events).
RUNTIME_TABLES = ("partition_offsets", "aggregate_versions", "parked_events")
#: Below PostgreSQL's 8000-byte payload limit, with room for the server's own framing.
PAYLOAD_LIMIT = 7000


def read_view_name(projection: str, table: str) -> str:
    """The name in `read` of a build table: projection tables keep theirs, runtime tables get the
    projection as prefix (several projections share `read`)."""
    name = f"{projection}_{table}" if table in RUNTIME_TABLES else table
    return check_identifier(name, "read view")


@dataclass(frozen=True, slots=True)
class Change:
    """The projector applied `aggregate_id` of `aggregate_type` up to `version`."""

    aggregate_type: str
    aggregate_id: str
    version: int


@dataclass(frozen=True, slots=True)
class Notification:
    projection: str
    schema: str
    changes: tuple[Change, ...]
    overflow: bool = False


def _compact(data: object) -> str:
    return json.dumps(data, separators=(",", ":"))


def _head(projection: str, schema: str) -> dict[str, Any]:
    return {"v": FORMAT_VERSION, "projection": projection, "schema": schema}


def encode_changes(
    projection: str, schema: str, changes: Mapping[tuple[str, str], int], *, limit: int = PAYLOAD_LIMIT
) -> list[str]:
    """The payloads announcing these changes (ordered by aggregate), each under `limit` bytes."""
    head = _compact({**_head(projection, schema), "changes": []})
    budget = limit - len(head.encode())
    out: list[str] = []
    chunk: list[str] = []
    size = 0
    for (aggregate_type, aggregate_id), version in sorted(changes.items()):
        item = _compact([aggregate_type, aggregate_id, version])
        if chunk and size + len(item.encode()) + 1 > budget:
            out.append(_render(head, chunk))
            chunk, size = [], 0
        chunk.append(item)
        size += len(item.encode()) + 1
    if chunk:
        out.append(_render(head, chunk))
    return out


def _render(head: str, items: list[str]) -> str:
    return head[: -len("[]}")] + "[" + ",".join(items) + "]}"


def encode_overflow(projection: str, schema: str) -> str:
    """The payload asking every reader of the projection to re-check."""
    return _compact({**_head(projection, schema), "overflow": True})


def decode(payload: str) -> Notification | None:
    """The notification in a payload, or None when it is not one this contract describes."""
    try:
        data: Any = json.loads(payload)
        if data.get("v", FORMAT_VERSION) != FORMAT_VERSION:
            return None
        changes = tuple(
            Change(str(t), str(i), int(v))
            for t, i, v in (data.get("changes") or [])
            if not isinstance(v, bool)
        )
        return Notification(str(data["projection"]), str(data["schema"]), changes, bool(data.get("overflow")))
    except (ValueError, TypeError, KeyError, AttributeError):
        return None
