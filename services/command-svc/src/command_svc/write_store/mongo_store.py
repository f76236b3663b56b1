"""MongoDB write store and lease store (tested against FerretDB v1, which speaks the same protocol).

Uses only single-document atomic writes, so it needs neither a replica set nor transactions:
- `commits`: one document per accepted command. `_id` is `<type>/<id>@<base version>` (zero-padded),
  so the primary key itself refuses a second commit on the same base version, and sorting by `_id`
  walks each aggregate in version order.
- Rejections live in the same collection (`kind: "rejection"`), so the unique index on `command_id`
  gives every command id exactly one outcome, whichever replica or door races to write it, and a
  repeat is answered with one indexed read.
- `leases`, `members`: relay shard ownership and replica heartbeats.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator, Callable, Collection, Sequence
from typing import Any

from pymongo import ASCENDING, DESCENDING, AsyncMongoClient, ReturnDocument, UpdateOne, monitoring
from pymongo.asynchronous.collection import AsyncCollection
from pymongo.asynchronous.database import AsyncDatabase
from pymongo.errors import BulkWriteError, DuplicateKeyError, PyMongoError

from command_svc.write_store.mongo_group_insert import GroupInsert
from cqrs_shared.results import CommandResult, Rejected
from cqrs_shared.write_store.port import (
    Commit,
    ConcurrencyConflictError,
    DuplicateCommandError,
    WriteStoreUnavailableError,
)

Document = dict[str, Any]


class _Progress(monitoring.CommandListener, monitoring.ConnectionPoolListener):
    """How a client is doing: when a command last succeeded (a busy client that completes work is
    not stuck), and how many operations succeeded or failed since the watchdog last asked. A
    client can be mostly stuck and still complete an operation now and then (seen after a long
    stall: nearly every checkout timed out on a pool whose connections never came back, while
    the server answered everyone else), so recent success alone does not prove it healthy."""

    def __init__(self) -> None:
        self.last_success = time.monotonic()
        self._succeeded = 0
        self._failed = 0

    def take_outcomes(self) -> tuple[int, int]:
        outcomes, self._succeeded, self._failed = (self._succeeded, self._failed), 0, 0
        return outcomes

    def started(self, event: monitoring.CommandStartedEvent) -> None:
        pass

    def succeeded(self, event: monitoring.CommandSucceededEvent) -> None:
        self.last_success = time.monotonic()
        self._succeeded += 1

    def failed(self, event: monitoring.CommandFailedEvent) -> None:
        self._failed += 1

    def connection_check_out_failed(self, event: monitoring.ConnectionCheckOutFailedEvent) -> None:
        # A checkout that timed out or found the pool paused: the operation never reached the server.
        self._failed += 1

    def pool_created(self, event: monitoring.PoolCreatedEvent) -> None:
        pass

    def pool_ready(self, event: monitoring.PoolReadyEvent) -> None:
        pass

    def pool_cleared(self, event: monitoring.PoolClearedEvent) -> None:
        pass

    def pool_closed(self, event: monitoring.PoolClosedEvent) -> None:
        pass

    def connection_created(self, event: monitoring.ConnectionCreatedEvent) -> None:
        pass

    def connection_ready(self, event: monitoring.ConnectionReadyEvent) -> None:
        pass

    def connection_closed(self, event: monitoring.ConnectionClosedEvent) -> None:
        pass

    def connection_check_out_started(self, event: monitoring.ConnectionCheckOutStartedEvent) -> None:
        pass

    def connection_checked_out(self, event: monitoring.ConnectionCheckedOutEvent) -> None:
        pass

    def connection_checked_in(self, event: monitoring.ConnectionCheckedInEvent) -> None:
        pass


_VERSION_DIGITS = 12
#: Statements per bulk update, and bulks in flight at once; see `MongoWriteStore.mark_published`.
_MARK_BULK = 4
_MARK_BULKS_IN_FLIGHT = 2
_REJECTION = "rejection"


def stream_key(aggregate_type: str, aggregate_id: str) -> str:
    return f"{aggregate_type}/{aggregate_id}"


def commit_key(aggregate_type: str, aggregate_id: str, base_version: int) -> str:
    return f"{stream_key(aggregate_type, aggregate_id)}@{base_version:0{_VERSION_DIGITS}d}"


def _to_document(commit: Commit) -> Document:
    doc = commit.model_dump(mode="json")
    doc["_id"] = commit_key(commit.aggregate_type, commit.aggregate_id, commit.base_version)
    doc["stream"] = stream_key(commit.aggregate_type, commit.aggregate_id)
    return doc


def _from_document(doc: Document) -> Commit:
    doc = dict(doc)
    del doc["_id"], doc["stream"]
    return Commit.model_validate(doc)


def _rejection_document(rejection: Rejected) -> Document:
    key = f"rejected/{rejection.command_id}"
    # `stream` and `version` keep the unique (stream, version) index satisfied; `published` keeps
    # rejections out of the relay's scan.
    return {
        "_id": key,
        "kind": _REJECTION,
        "command_id": str(rejection.command_id),
        "stream": key,
        "version": 0,
        "published": True,
        "shard": -1,
        "outcome": rejection.model_dump(mode="json"),
    }


def _outcome_of(doc: Document) -> CommandResult:
    if doc.get("kind") == _REJECTION:
        return Rejected.model_validate(doc["outcome"])
    return _from_document(doc).outcome()


class MongoWriteStore:
    """The write store on MongoDB. Create with `await MongoWriteStore.open(uri, database)`.

    Liveness: every operation is bounded by `timeout_ms`. `probe()` pings through a second, one-
    connection client, so it measures the server rather than the queue of the main pool, and
    `reconnect()` replaces the main client (callers' operations in flight on the old one fail with
    `WriteStoreUnavailableError` and are retried by them); see the command service's store watchdog.
    """

    def __init__(
        self,
        client: AsyncMongoClient[Document],
        database: AsyncDatabase[Document],
        *,
        connect: Callable[..., AsyncMongoClient[Document]] | None = None,
        probe_client: AsyncMongoClient[Document] | None = None,
    ) -> None:
        self._client = client
        self._db = database
        self._commits: AsyncCollection[Document] = database["commits"]
        #: Every new document (commits, rejections) goes through it: see `GroupInsert`.
        self._inserts = GroupInsert(lambda: self._commits)
        self._connect = connect
        self._probe_client = probe_client
        self._progress = _Progress()
        #: Lease traffic has a small pool of its own (set by `open`), so renewals never queue
        #: behind a burst of commands: a late renewal stops the relay publishing.
        self._lease_client: AsyncMongoClient[Document] | None = None

    @classmethod
    async def open(
        cls, uri: str, database: str, *, timeout_ms: int = 5000, max_pool_size: int = 32
    ) -> MongoWriteStore:
        """Connect, and create the indexes that are missing.

        `max_pool_size` bounds this process's concurrent operations on the server: FerretDB holds
        one PostgreSQL connection per operation in flight, from a pool of its own.
        """

        progress = _Progress()

        def connect(pool: int = max_pool_size, *, watched: bool = True) -> AsyncMongoClient[Document]:
            return AsyncMongoClient(
                uri,
                serverSelectionTimeoutMS=timeout_ms,
                connectTimeoutMS=timeout_ms,
                # A bound on every operation, so a hung server cannot hold an aggregate's lock forever.
                timeoutMS=timeout_ms,
                maxPoolSize=pool,
                tz_aware=True,
                event_listeners=[progress] if watched else [],
            )

        client = connect()
        store = cls(client, client[database], connect=connect, probe_client=connect(1, watched=False))
        store._progress = progress  # reconnected clients report to the same listener
        try:
            await store.ensure_indexes()
        except BaseException:
            await store.close()
            raise
        return store

    async def ensure_indexes(self) -> None:
        """Create the indexes this store needs, unless they exist.

        Listing first matters on FerretDB: `createIndexes` takes its metadata write lock even when
        nothing is missing, and replicas starting under load should not queue everyone behind it.
        """
        wanted: list[tuple[list[tuple[str, int]], str, bool]] = [
            ([("command_id", ASCENDING)], "command_id_unique", True),
            ([("stream", ASCENDING), ("version", ASCENDING)], "stream_version_unique", True),
            ([("published", ASCENDING), ("shard", ASCENDING)], "unpublished_by_shard", False),
        ]
        try:
            existing = {index["name"] async for index in await self._commits.list_indexes()}
            for keys, name, unique in wanted:
                if name not in existing:
                    await self._commits.create_index(keys, unique=unique, name=name)
        except PyMongoError as exc:
            raise WriteStoreUnavailableError(f"cannot create write store indexes: {exc}") from exc

    async def reconnect(self) -> None:
        """Replace the main client with a new one (a cure for a client that stopped working)."""
        if self._connect is None:
            raise RuntimeError("this store was not opened with MongoWriteStore.open; it cannot reconnect")
        old, self._client = self._client, self._connect()
        self._db = self._client[self._db.name]
        self._commits = self._db["commits"]
        await old.close()
        if self._lease_client is not None:
            old, self._lease_client = self._lease_client, self._connect(2, watched=False)
            await old.close()

    def seconds_since_progress(self) -> float:
        """Seconds since an operation last succeeded through the main client (the probe and lease
        clients are not counted: they answer while the main client may be stuck)."""
        return time.monotonic() - self._progress.last_success

    def take_outcomes(self) -> tuple[int, int]:
        """Operations (succeeded, failed) through the main client since the previous call."""
        return self._progress.take_outcomes()

    async def probe(self) -> None:
        """A read through the probe client: is the store answering, whatever this process's pool does?

        A lookup by `_id`, not a `ping`: FerretDB answers a ping without its PostgreSQL backend,
        and an outage of the backend must count as the store being down, not the client broken."""
        client = self._probe_client or self._client
        try:
            await client[self._db.name]["commits"].find_one({"_id": "probe"}, projection={"_id": 1})
        except PyMongoError as exc:
            raise WriteStoreUnavailableError(str(exc)) from exc

    def leases(self, clock: Callable[[], float] = time.time) -> MongoLeaseStore:
        """The lease store in the same database, following this store across reconnects."""
        if self._lease_client is None and self._connect is not None:
            self._lease_client = self._connect(2, watched=False)
        return MongoLeaseStore(lambda: (self._lease_client or self._client)[self._db.name], clock=clock)

    async def close(self) -> None:
        await self._inserts.close()
        await self._client.close()
        for extra in (self._probe_client, self._lease_client):
            if extra is not None:
                await extra.close()

    @property
    def database(self) -> AsyncDatabase[Document]:
        return self._db

    async def load_head(self, aggregate_type: str, aggregate_id: str) -> Commit | None:
        try:
            doc = await self._commits.find_one(
                {"stream": stream_key(aggregate_type, aggregate_id)}, sort=[("version", DESCENDING)]
            )
        except PyMongoError as exc:
            raise WriteStoreUnavailableError(str(exc)) from exc
        return _from_document(doc) if doc else None

    async def append(self, commit: Commit) -> None:
        try:
            await self._inserts.insert(_to_document(commit))
        except DuplicateKeyError:
            # Which unique key collided decides the answer; asking is clearer than parsing messages.
            existing = await self.find_outcome(commit.command_id)
            if existing is not None:
                raise DuplicateCommandError(existing) from None
            raise ConcurrencyConflictError(commit.commit_id) from None
        except PyMongoError as exc:
            raise WriteStoreUnavailableError(str(exc)) from exc

    async def find_outcome(self, command_id: uuid.UUID) -> CommandResult | None:
        try:
            doc = await self._commits.find_one({"command_id": str(command_id)})
        except PyMongoError as exc:
            raise WriteStoreUnavailableError(str(exc)) from exc
        return _outcome_of(doc) if doc else None

    async def record_rejection(self, rejection: Rejected) -> CommandResult:
        try:
            await self._inserts.insert(_rejection_document(rejection))
        except DuplicateKeyError:
            existing = await self.find_outcome(rejection.command_id)
            return existing or rejection
        except PyMongoError as exc:
            raise WriteStoreUnavailableError(str(exc)) from exc
        return rejection

    async def unpublished(self, shards: Collection[int], limit: int) -> list[Commit]:
        if not shards:
            return []
        wanted = set(shards)
        found: list[Commit] = []
        try:
            # Only `published: false` goes to the server: an equality every MongoDB-wire store
            # serves from an index (FerretDB through its PostgreSQL GIN twin, see
            # infra/postgres/ferretdb-indexes.sql), so the cost follows the backlog, not the
            # history. FerretDB would read every document for `$in` or a sort, so the shard
            # filter and the ordering happen here, and reading stops once `limit` are found.
            cursor = self._commits.find({"published": False}, batch_size=min(limit, 1000))
            async for doc in cursor:
                if doc.get("shard") in wanted:
                    found.append(_from_document(doc))
                    if len(found) >= limit:
                        break
            await cursor.close()
        except PyMongoError as exc:
            raise WriteStoreUnavailableError(str(exc)) from exc
        return sorted(found, key=lambda c: (c.aggregate_type, c.aggregate_id, c.base_version))

    async def unpublished_in_stream(self, aggregate_type: str, aggregate_id: str) -> list[Commit]:
        try:
            cursor = self._commits.find(
                {"stream": stream_key(aggregate_type, aggregate_id), "published": False}
            )
            docs = await cursor.sort([("version", ASCENDING)]).to_list()
        except PyMongoError as exc:
            raise WriteStoreUnavailableError(str(exc)) from exc
        return [_from_document(d) for d in docs]

    async def mark_published(self, commits: Sequence[Commit]) -> None:
        if not commits:
            return
        # One update per `_id`: an `_id` equality is served by an index on every store, where
        # `_id: {$in: [...]}` is a scan of the whole history on FerretDB. In small bulks, because
        # FerretDB 1.24 keeps each statement's PostgreSQL connection until the whole bulk is done
        # (a `defer` inside its loop): a bulk larger than its pool waits on itself forever. Two
        # bulks of 4 hold no more connections than one of 8 did, and mark about 40 % more per
        # second (FerretDB under load: 588-700/s one bulk of 8 at a time, 834-939/s two of 4;
        # one bulk of 8 at a time made marking the relay's bound, 3.2 ms per commit).
        updates = [
            UpdateOne(
                {"_id": commit_key(c.aggregate_type, c.aggregate_id, c.base_version)},
                {"$set": {"published": True}},
            )
            for c in commits
        ]
        bulks = iter([updates[start : start + _MARK_BULK] for start in range(0, len(updates), _MARK_BULK)])

        async def send_bulks() -> None:
            for bulk in bulks:
                await self._commits.bulk_write(bulk, ordered=False)

        senders = [send_bulks() for _ in range(min(_MARK_BULKS_IN_FLIGHT, len(updates)))]
        failures = [r for r in await asyncio.gather(*senders, return_exceptions=True) if r is not None]
        for failure in failures:
            if isinstance(failure, PyMongoError):
                raise WriteStoreUnavailableError(str(failure)) from failure
            raise failure

    async def import_commits(self, commits: Sequence[Commit]) -> None:
        """Store already-decided commits in bulk (migrations, seeding a benchmark's history).

        The unique keys still refuse duplicates (raised as `ConcurrencyConflictError` for the
        batch, after the others were stored); nothing is decided or checked beyond them.
        """
        try:
            await self._commits.insert_many([_to_document(c) for c in commits], ordered=False)
        except BulkWriteError as exc:
            raise ConcurrencyConflictError(
                f"{len(exc.details.get('writeErrors', []))} commits collided"
            ) from exc
        except PyMongoError as exc:
            raise WriteStoreUnavailableError(str(exc)) from exc

    async def history(self, aggregate_types: Collection[str] | None = None) -> AsyncIterator[Commit]:
        query: Document = {"version": {"$gte": 1}}  # rejections carry version 0
        if aggregate_types is not None:
            query["aggregate_type"] = {"$in": sorted(aggregate_types)}
        try:
            async for doc in self._commits.find(query).sort([("_id", ASCENDING)]).batch_size(1000):
                yield _from_document(doc)
        except PyMongoError as exc:
            raise WriteStoreUnavailableError(str(exc)) from exc

    async def ping(self) -> None:
        try:
            await self._db.command("ping")
        except PyMongoError as exc:
            raise WriteStoreUnavailableError(str(exc)) from exc


class MongoLeaseStore:
    """Leases as documents `{_id: name, owner, expires_at}`; taken with one conditional upsert."""

    def __init__(
        self,
        database: AsyncDatabase[Document] | Callable[[], AsyncDatabase[Document]],
        clock: Callable[[], float] = time.time,
    ) -> None:
        # A callable follows the write store's client across reconnects (`MongoWriteStore.leases`).
        # (Not `callable()`: pymongo's Database defines `__call__`, to raise a helpful TypeError.)
        self._database: Callable[[], AsyncDatabase[Document]] = (
            (lambda: database) if isinstance(database, AsyncDatabase) else database
        )
        self._clock = clock

    @property
    def _leases(self) -> AsyncCollection[Document]:
        return self._database()["leases"]

    @property
    def _members(self) -> AsyncCollection[Document]:
        return self._database()["members"]

    async def acquire(self, name: str, owner: str, ttl_seconds: float) -> bool:
        now = self._clock()
        try:
            doc = await self._leases.find_one_and_update(
                {"_id": name, "$or": [{"owner": owner}, {"expires_at": {"$lte": now}}]},
                {"$set": {"owner": owner, "expires_at": now + ttl_seconds}},
                upsert=True,
                return_document=ReturnDocument.AFTER,
            )
        except DuplicateKeyError:
            return False  # held by someone else: the filter missed, and the upsert hit the existing _id
        except PyMongoError as exc:
            raise WriteStoreUnavailableError(str(exc)) from exc
        return bool(doc and doc.get("owner") == owner)

    async def renew(self, names: Collection[str], owner: str, ttl_seconds: float) -> set[str]:
        """Two round trips whatever the number of leases: one conditional update, one read back."""
        if not names:
            return set()
        now = self._clock()
        mine = {"_id": {"$in": sorted(names)}, "owner": owner}
        try:
            await self._leases.update_many(
                {**mine, "expires_at": {"$gt": now}}, {"$set": {"expires_at": now + ttl_seconds}}
            )
            docs = await self._leases.find({**mine, "expires_at": {"$gt": now}}).to_list()
        except PyMongoError as exc:
            raise WriteStoreUnavailableError(str(exc)) from exc
        return {str(d["_id"]) for d in docs}

    async def release(self, name: str, owner: str) -> None:
        try:
            await self._leases.delete_one({"_id": name, "owner": owner})
        except PyMongoError as exc:
            raise WriteStoreUnavailableError(str(exc)) from exc

    async def heartbeat(self, member: str, ttl_seconds: float) -> None:
        try:
            await self._members.update_one(
                {"_id": member}, {"$set": {"expires_at": self._clock() + ttl_seconds}}, upsert=True
            )
        except PyMongoError as exc:
            raise WriteStoreUnavailableError(str(exc)) from exc

    async def leave(self, member: str) -> None:
        try:
            await self._members.delete_one({"_id": member})
        except PyMongoError as exc:
            raise WriteStoreUnavailableError(str(exc)) from exc

    async def live_members(self) -> list[str]:
        try:
            docs = await self._members.find({"expires_at": {"$gt": self._clock()}}).to_list()
        except PyMongoError as exc:
            raise WriteStoreUnavailableError(str(exc)) from exc
        return sorted(str(d["_id"]) for d in docs)
