"""The write store contract against a real MongoDB wire server (FerretDB locally)."""

import asyncio
from collections.abc import AsyncIterator, Callable

import pytest

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
