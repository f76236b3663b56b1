"""`pg_notify` of the aggregates a transaction changed, for waiting readers (format: the shared
contract in `cqrs_shared.read_models.notifications`)."""

from __future__ import annotations

from collections.abc import Mapping

from cqrs_shared.read_models.notifications import CHANNEL, encode_changes
from projector_svc.incoming import AggregateKey
from projector_svc.pg import Connection


async def notify(
    connection: Connection, projection: str, schema: str, changes: Mapping[AggregateKey, int]
) -> None:
    """Announce the changes at commit (several payloads for a large batch, delivered together)."""
    messages = encode_changes(projection, schema, changes)
    if messages:
        await connection.execute("SELECT pg_notify($1, m) FROM unnest($2::text[]) AS m", CHANNEL, messages)
