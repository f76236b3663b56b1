"""The write store contract against a real MongoDB wire server (FerretDB locally)."""

from collections.abc import AsyncIterator, Callable

import pytest

from command_svc.write_store.mongo_store import MongoLeaseStore, MongoWriteStore
from cqrs_shared.testing.write_store_contract import LeaseStoreContract, WriteStoreContract

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
