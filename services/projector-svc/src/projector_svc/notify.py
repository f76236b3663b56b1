"""`pg_notify('cqrs_projection', ...)` with the aggregates a transaction changed, for waiting readers.

Payload (stable, read by query-svc): `{"projection", "schema", "changes": [[type, id, version], ...]}`.
PostgreSQL refuses payloads from 8000 bytes, so a large batch sends several notifications, each
with a slice of the changes; they are delivered together at commit, or not at all.
"""

from __future__ import annotations

import json
from collections.abc import Mapping

from projector_svc.incoming import AggregateKey
from projector_svc.pg import Connection

CHANNEL = "cqrs_projection"
_LIMIT = 7000


def payloads(projection: str, schema: str, changes: Mapping[AggregateKey, int]) -> list[str]:
    """The notification payloads for these changes, each under PostgreSQL's size limit."""
    head = json.dumps({"projection": projection, "schema": schema, "changes": []}, separators=(",", ":"))
    budget = _LIMIT - len(head.encode())
    out: list[str] = []
    chunk: list[str] = []
    size = 0
    for (aggregate_type, aggregate_id), version in sorted(changes.items()):
        item = json.dumps([aggregate_type, aggregate_id, version], separators=(",", ":"))
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


async def notify(
    connection: Connection, projection: str, schema: str, changes: Mapping[AggregateKey, int]
) -> None:
    messages = payloads(projection, schema, changes)
    if messages:
        await connection.execute("SELECT pg_notify($1, m) FROM unnest($2::text[]) AS m", CHANNEL, messages)
