"""Leases, heartbeats and checkpoints on DynamoDB: the `leases` table, key (`kind`, `name`).

Every change is one conditional single-item write, decided by the table, so concurrent replicas
agree on one owner without transactions. Members share one partition (`kind = member`): a handful
of items read with one `Query`.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Collection
from typing import TYPE_CHECKING

from botocore.exceptions import ClientError

from command_svc.write_store.dynamo_client import error_code, store_errors

if TYPE_CHECKING:
    from types_aiobotocore_dynamodb import DynamoDBClient

_LEASE = "lease"
_MEMBER = "member"
_CHECKPOINT = "checkpoint"
_REFUSED = "ConditionalCheckFailedException"


def _key(kind: str, name: str) -> dict[str, dict[str, str]]:
    return {"kind": {"S": kind}, "name": {"S": name}}


class DynamoLeaseStore:
    """The lease store port on DynamoDB (see `cqrs_shared.write_store.port.LeaseStore`)."""

    def __init__(self, client: DynamoDBClient, table: str, clock: Callable[[], float] = time.time) -> None:
        self._client = client
        self._table = table
        self._clock = clock

    async def _conditional_set(
        self, kind: str, name: str, owner: str, expires_at: float, condition: str, now: float
    ) -> bool:
        with store_errors():
            try:
                await self._client.update_item(
                    TableName=self._table,
                    Key=_key(kind, name),
                    UpdateExpression="SET #o = :o, expires_at = :e",
                    ConditionExpression=condition,
                    ExpressionAttributeNames={"#o": "owner"},
                    ExpressionAttributeValues={
                        ":o": {"S": owner},
                        ":e": {"N": repr(expires_at)},
                        ":now": {"N": repr(now)},
                    },
                )
            except ClientError as exc:
                if error_code(exc) == _REFUSED:
                    return False
                raise
        return True

    async def acquire(self, name: str, owner: str, ttl_seconds: float) -> bool:
        now = self._clock()
        return await self._conditional_set(
            _LEASE,
            name,
            owner,
            now + ttl_seconds,
            "attribute_not_exists(#o) OR #o = :o OR expires_at <= :now",
            now,
        )

    async def renew(self, names: Collection[str], owner: str, ttl_seconds: float) -> set[str]:
        now = self._clock()
        ordered = sorted(names)
        held = await asyncio.gather(
            *(
                self._conditional_set(
                    _LEASE, n, owner, now + ttl_seconds, "#o = :o AND expires_at > :now", now
                )
                for n in ordered
            )
        )
        return {name for name, ok in zip(ordered, held, strict=True) if ok}

    async def release(self, name: str, owner: str) -> None:
        with store_errors():
            try:
                await self._client.delete_item(
                    TableName=self._table,
                    Key=_key(_LEASE, name),
                    ConditionExpression="#o = :o",
                    ExpressionAttributeNames={"#o": "owner"},
                    ExpressionAttributeValues={":o": {"S": owner}},
                )
            except ClientError as exc:
                if error_code(exc) != _REFUSED:
                    raise

    async def heartbeat(self, member: str, ttl_seconds: float) -> None:
        with store_errors():
            await self._client.put_item(
                TableName=self._table,
                Item={**_key(_MEMBER, member), "expires_at": {"N": repr(self._clock() + ttl_seconds)}},
            )

    async def leave(self, member: str) -> None:
        with store_errors():
            await self._client.delete_item(TableName=self._table, Key=_key(_MEMBER, member))

    async def live_members(self) -> list[str]:
        with store_errors():
            answer = await self._client.query(
                TableName=self._table,
                KeyConditionExpression="#k = :k",
                FilterExpression="expires_at > :now",
                ExpressionAttributeNames={"#k": "kind"},
                ExpressionAttributeValues={":k": {"S": _MEMBER}, ":now": {"N": repr(self._clock())}},
                ConsistentRead=True,
            )
        return sorted(item["name"]["S"] for item in answer.get("Items", []))

    # --- checkpoints (the stream publisher's position per stream shard) ----------------------------

    async def checkpoint(self, name: str) -> str | None:
        """The stored checkpoint (a stream sequence number, or a marker), if any."""
        with store_errors():
            answer = await self._client.get_item(
                TableName=self._table, Key=_key(_CHECKPOINT, name), ConsistentRead=True
            )
        item = answer.get("Item")
        return item["position"]["S"] if item else None

    async def save_checkpoint(self, name: str, position: str) -> None:
        with store_errors():
            await self._client.put_item(
                TableName=self._table, Item={**_key(_CHECKPOINT, name), "position": {"S": position}}
            )
