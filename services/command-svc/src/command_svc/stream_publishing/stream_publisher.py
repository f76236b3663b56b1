"""The long-running stream publisher: the commits table's DynamoDB stream to Kafka, shard by shard.

Guarantees:
- At-least-once: a shard's checkpoint (the sequence number of its last published record, in the
  `leases` table) is written only after Kafka acknowledged every event up to that record. After a
  crash the shard resumes after its checkpoint: what was published but not checkpointed is
  published again (a counted duplicate), nothing is skipped.
- Per-aggregate order: an aggregate's commits share a partition key, so they are in one stream
  shard in write order; a shard is published by one worker, record after record, and a child shard
  (after a split) starts only once its parent is drained to its end (checkpoint `SHARD_END`). A
  parent already trimmed from the stream (older than 24 h) no longer holds anything to wait for.
- One publisher per shard across replicas: the shard's lease (the relay's lease mechanism). Fair
  shares rebalance as replicas come and go; a crashed replica's shards move after the lease TTL.
- An unreadable record stops its shard (retried, logged as an error): nothing after it is published
  ahead of it, and nothing is skipped. The records stay 24 hours; see the README's AWS section for
  what to do when a consumer falls further behind.

Published commits are also marked published (out of the sparse `unpublished` index), so the outbox
relay can take over from this publisher without republishing history.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from botocore.exceptions import BotoCoreError, ClientError

from command_svc.outbox_relay import EventPublisher
from command_svc.write_store.dynamo_client import error_code
from command_svc.write_store.dynamo_leases import DynamoLeaseStore
from command_svc.write_store.dynamo_store import DynamoWriteStore
from cqrs_shared.dynamo_stream import UndecodableRecordError, commit_of_record, sequence_number
from cqrs_shared.kafka_io import publish_commits
from cqrs_shared.liveness import Heartbeat, LivenessMonitor
from cqrs_shared.write_store import Commit, WriteStoreUnavailableError

if TYPE_CHECKING:
    from types_aiobotocore_dynamodbstreams import DynamoDBStreamsClient

log = logging.getLogger(__name__)

#: The checkpoint of a shard read to its end (closed by a split and drained).
SHARD_END = "SHARD_END"


def _lease(shard_id: str) -> str:
    return f"stream-shard/{shard_id}"


@dataclass(frozen=True, slots=True)
class StreamPublisherSettings:
    lease_ttl_seconds: float = 4.0
    #: Pause of an idle shard between reads (DynamoDB Streams serves 5 GetRecords/s per shard).
    poll_interval_seconds: float = 0.25
    #: Pause after a failure (Kafka, the store, an unreadable record) before the shard tries again.
    retry_pause_seconds: float = 1.0
    records_per_read: int = 1000
    liveness_seconds: float = 90.0


@dataclass(frozen=True, slots=True)
class _Shard:
    shard_id: str
    parent_id: str | None


class StreamPublisher:
    """Publishes the commits table's stream. `start`, `stop`, `check_running` as the outbox relay."""

    def __init__(
        self,
        streams: DynamoDBStreamsClient,
        store: DynamoWriteStore,
        leases: DynamoLeaseStore,
        publisher: EventPublisher,
        *,
        member_id: str,
        settings: StreamPublisherSettings | None = None,
        liveness: LivenessMonitor | None = None,
    ) -> None:
        self._streams = streams
        self._store = store
        self._leases = leases
        self._publisher = publisher
        self._member = member_id
        self._settings = settings or StreamPublisherSettings()
        self._liveness = liveness or LivenessMonitor()
        self._beat: Heartbeat | None = None
        self._stream_arn = ""
        self._finished: set[str] = set()
        self._workers: dict[str, asyncio.Task[None]] = {}
        self._task: asyncio.Task[None] | None = None
        self._valid_until = 0.0

    # --- lifecycle ---------------------------------------------------------------------------------

    async def start(self) -> None:
        self._stream_arn = await self._latest_stream_arn()
        self._beat = self._liveness.heartbeat("stream-publisher", self._settings.liveness_seconds)
        self._task = asyncio.create_task(self._coordinate(), name="stream-publisher")

    async def stop(self) -> None:
        tasks = [t for t in (self._task, *self._workers.values()) if t is not None]
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._task = None
        if self._beat is not None:
            self._liveness.retire("stream-publisher")
        with contextlib.suppress(WriteStoreUnavailableError):
            await self._leases.leave(self._member)
            for shard_id in sorted(self._workers):
                await self._leases.release(_lease(shard_id), self._member)
        self._workers.clear()

    def check_running(self) -> None:
        if self._task is None or self._task.done():
            raise RuntimeError("stream publisher not running")

    def notify(self, commit: Commit) -> None:
        """Nothing to hand over: the stream carries every commit."""

    def intake_paused(self) -> str | None:
        return None  # reading the stream costs the table nothing, so commands never wait for it

    @property
    def owned_shards(self) -> frozenset[str]:
        return frozenset(self._workers)

    # --- discovery and leases -----------------------------------------------------------------------

    async def _latest_stream_arn(self) -> str:
        try:
            table = (await self._store.client.describe_table(TableName=self._store.names.commits))["Table"]
        except (ClientError, BotoCoreError) as exc:
            raise WriteStoreUnavailableError(f"cannot describe the commits table: {exc}") from exc
        arn = table.get("LatestStreamArn")
        if not arn:
            raise RuntimeError(f"{self._store.names.commits} has no stream: create it with NEW_IMAGE")
        return arn

    async def _shards(self) -> list[_Shard]:
        shards: list[_Shard] = []
        request: dict[str, Any] = {"StreamArn": self._stream_arn}
        while True:
            description = (await self._streams.describe_stream(**request))["StreamDescription"]
            shards.extend(_Shard(s["ShardId"], s.get("ParentShardId")) for s in description.get("Shards", []))
            last = description.get("LastEvaluatedShardId")
            if not last:
                return shards
            request["ExclusiveStartShardId"] = last

    async def _coordinate(self) -> None:
        while True:
            try:
                await self._balance()
            except (WriteStoreUnavailableError, ClientError, BotoCoreError) as exc:
                log.warning("stream publisher could not balance its shards: %s", exc)
            if self._beat is not None:
                self._beat.beat()
            await asyncio.sleep(self._settings.lease_ttl_seconds / 3)

    async def _balance(self) -> None:
        ttl = self._settings.lease_ttl_seconds
        await self._leases.heartbeat(self._member, ttl)
        members = await self._leases.live_members()
        shards = await self._shards()
        known = {s.shard_id for s in shards}
        for shard in shards:
            if (
                shard.shard_id not in self._finished
                and await self._leases.checkpoint(_lease(shard.shard_id)) == SHARD_END
            ):
                self._finished.add(shard.shard_id)
        # Ready: not finished, and its parent drained (or gone from the stream: trimmed after 24 h).
        ready = [
            s.shard_id
            for s in shards
            if s.shard_id not in self._finished
            and (s.parent_id is None or s.parent_id not in known or s.parent_id in self._finished)
        ]
        renewed_at = time.monotonic()
        held = await self._leases.renew({_lease(s) for s in self._workers}, self._member, ttl)
        self._valid_until = renewed_at + ttl * 0.8
        for shard_id in list(self._workers):
            if _lease(shard_id) not in held or self._workers[shard_id].done():
                await self._drop(shard_id)
        target = math.ceil(len(ready) / max(1, len(members)))
        for shard_id in sorted(self._workers)[target:]:
            await self._drop(shard_id)
            await self._leases.release(_lease(shard_id), self._member)
        for shard_id in ready:
            if len(self._workers) >= target:
                break
            if shard_id not in self._workers and await self._leases.acquire(
                _lease(shard_id), self._member, ttl
            ):
                self._workers[shard_id] = asyncio.create_task(
                    self._publish_shard(shard_id), name=f"shard-{shard_id}"
                )

    async def _drop(self, shard_id: str) -> None:
        task = self._workers.pop(shard_id)
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task

    def _leases_valid(self) -> bool:
        return time.monotonic() < self._valid_until

    # --- one shard ------------------------------------------------------------------------------------

    async def _publish_shard(self, shard_id: str) -> None:
        iterator: str | None = None
        trimmed = False
        while True:
            try:
                if iterator is None:
                    iterator = await self._iterator(shard_id, after_checkpoint=not trimmed)
                    trimmed = False
                answer = await self._streams.get_records(
                    ShardIterator=iterator, Limit=self._settings.records_per_read
                )
                records = answer.get("Records", [])
                if records:
                    await self._publish_records(shard_id, records)
                iterator = answer.get("NextShardIterator")
                if iterator is None:
                    # Closed by a split and read to its end: its children may start.
                    await self._leases.save_checkpoint(_lease(shard_id), SHARD_END)
                    self._finished.add(shard_id)
                    log.info("stream shard %s drained", shard_id)
                    return
                if not records:
                    await asyncio.sleep(self._settings.poll_interval_seconds)
            except ClientError as exc:
                code = error_code(exc)
                if code == "TrimmedDataAccessException":
                    # The stream kept the records 24 h only: what was never published is still in the
                    # sparse `unpublished` index (the outbox relay publishes it); consumers that missed
                    # published events rebuild from the event topics.
                    log.exception("stream shard %s: records after the checkpoint were trimmed", shard_id)
                    trimmed = True
                # ExpiredIteratorException (15 min) and the rest: read again from the checkpoint.
                log.warning("stream shard %s: %s; reading again from the checkpoint", shard_id, code)
                iterator = None
                await asyncio.sleep(self._settings.retry_pause_seconds)
            except Exception:
                # Kafka, the store, an unreadable record: nothing after the failure was published
                # or checkpointed; try again from the checkpoint.
                log.exception("stream shard %s stopped at an error; retrying from its checkpoint", shard_id)
                iterator = None
                await asyncio.sleep(self._settings.retry_pause_seconds)

    async def _iterator(self, shard_id: str, *, after_checkpoint: bool) -> str:
        """After the checkpoint; from the oldest record kept when there is none (or it was trimmed)."""
        checkpoint = await self._leases.checkpoint(_lease(shard_id)) if after_checkpoint else None
        request: dict[str, Any] = {"StreamArn": self._stream_arn, "ShardId": shard_id}
        if checkpoint is None or checkpoint == SHARD_END:
            request["ShardIteratorType"] = "TRIM_HORIZON"
        else:
            request.update(ShardIteratorType="AFTER_SEQUENCE_NUMBER", SequenceNumber=checkpoint)
        return (await self._streams.get_shard_iterator(**request))["ShardIterator"]

    async def _publish_records(self, shard_id: str, records: Sequence[Any]) -> None:
        """Publish, mark, checkpoint. An unreadable record: what precedes it goes out, then it raises."""
        commits: list[Commit] = []
        readable = 0
        poison: UndecodableRecordError | None = None
        for record in records:
            try:
                commit = commit_of_record(record)
            except UndecodableRecordError as exc:
                poison = exc
                break
            readable += 1
            if commit is not None:
                commits.append(commit)
        if readable:
            if not self._leases_valid():
                raise WriteStoreUnavailableError("shard lease not renewed in time; not publishing")
            await publish_commits(self._publisher, commits)
            with contextlib.suppress(WriteStoreUnavailableError):
                await self._store.mark_published(commits)  # advisory, for a switch back to the relay
            await self._leases.save_checkpoint(_lease(shard_id), sequence_number(records[readable - 1]))
        if poison is not None:
            raise poison


class NoEventPublisher:
    """`COMMAND_SVC_EVENT_PUBLISHER=none`: another process (a stream publisher, the Lambda) publishes."""

    async def start(self) -> None:
        return None

    async def stop(self) -> None:
        return None

    def check_running(self) -> None:
        return None

    def notify(self, commit: Commit) -> None:
        """Nothing to hand over: whoever publishes reads the stream."""

    def intake_paused(self) -> str | None:
        return None
