"""The write store contract against a real MongoDB wire server (FerretDB locally)."""

import asyncio
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest
from pymongo import AsyncMongoClient, monitoring

from command_svc.write_store.mongo_store import MongoLeaseStore, MongoWriteStore
from cqrs_shared.testing.write_store_contract import LeaseStoreContract, WriteStoreContract, make_commit

pytestmark = pytest.mark.integration


@pytest.fixture
async def mongo_store(mongodb_uri: str, unique: str) -> AsyncIterator[MongoWriteStore]:
    store = await MongoWriteStore.open(mongodb_uri, f"t_{unique}")
    yield store
    await store.database.client.drop_database(store.database.name)
    await store.close()


class TestMongoWriteStore(WriteStoreContract):
    @pytest.fixture
    def store(self, mongo_store: MongoWriteStore) -> MongoWriteStore:
        return mongo_store


async def test_concurrent_appends_go_to_the_server_in_bulks_and_a_lone_one_at_once(
    mongo_store: MongoWriteStore,
) -> None:
    inserts = mongo_store._inserts
    await mongo_store.append(make_commit("lone", 1))
    assert (inserts.bulks_sent, inserts.documents_sent) == (1, 1)
    commits = [make_commit(f"busy-{i}", 1) for i in range(200)]
    await asyncio.gather(*(mongo_store.append(c) for c in commits))
    assert inserts.documents_sent == 201
    assert inserts.bulks_sent <= 1 + 200 // 10, "200 concurrent appends were not grouped"
    heads = await asyncio.gather(*(mongo_store.load_head("tally", c.aggregate_id) for c in commits))
    assert heads == commits


class TestMongoLeaseStore(LeaseStoreContract):
    @pytest.fixture
    def clock(self) -> list[float]:
        return [1000.0]

    @pytest.fixture
    def leases(self, mongo_store: MongoWriteStore, clock: list[float]) -> MongoLeaseStore:
        return MongoLeaseStore(mongo_store.database, clock=lambda: clock[0])

    @pytest.fixture
    def advance_clock(self, clock: list[float]) -> Callable[[float], None]:
        def advance(seconds: float) -> None:
            clock[0] += seconds

        return advance


class _UpdateWatch(monitoring.CommandListener):
    """Statements per `update` command and the most of them on their way at once."""

    def __init__(self) -> None:
        self.sizes: list[int] = []
        self.in_flight = 0
        self.most_in_flight = 0

    def started(self, event: monitoring.CommandStartedEvent) -> None:
        if event.command_name == "update":
            self.sizes.append(len(event.command["updates"]))
            self.in_flight += len(event.command["updates"])
            self.most_in_flight = max(self.most_in_flight, self.in_flight)

    def succeeded(self, event: monitoring.CommandSucceededEvent) -> None:
        if event.command_name == "update":
            self.in_flight -= event.reply.get("n", 0)

    def failed(self, event: monitoring.CommandFailedEvent) -> None:
        pass


async def test_marking_many_commits_sends_small_bulks_a_few_at_a_time(mongodb_uri: str, unique: str) -> None:
    watch = _UpdateWatch()
    client: AsyncMongoClient[dict[str, Any]] = AsyncMongoClient(mongodb_uri, event_listeners=[watch])
    store = MongoWriteStore(client, client[f"t_{unique}"])
    try:
        commits = [make_commit(f"mark-{i}", 1, shard=i % 2) for i in range(40)]
        await store.import_commits(commits)
        await store.mark_published(commits[:37])
        left = await store.unpublished({0, 1}, 100)
        assert sorted(c.aggregate_id for c in left) == ["mark-37", "mark-38", "mark-39"]
        assert sum(watch.sizes) == 37 and max(watch.sizes) <= 4
        # FerretDB holds a PostgreSQL connection per statement until its bulk ends: never more
        # statements on their way than one bulk of 8 used to hold.
        assert watch.most_in_flight <= 8
        await store.mark_published(commits[:37])  # idempotent
        assert len(await store.unpublished({0, 1}, 100)) == 3
    finally:
        await client.drop_database(f"t_{unique}")
        await store.close()
