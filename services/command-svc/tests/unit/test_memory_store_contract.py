from collections.abc import Callable

import pytest

from command_svc.write_store.memory_store import MemoryLeaseStore, MemoryWriteStore
from cqrs_shared.testing.write_store_contract import LeaseStoreContract, WriteStoreContract


class TestMemoryWriteStore(WriteStoreContract):
    @pytest.fixture
    def store(self) -> MemoryWriteStore:
        return MemoryWriteStore()


class TestMemoryLeaseStore(LeaseStoreContract):
    @pytest.fixture
    def clock(self) -> list[float]:
        return [1000.0]

    @pytest.fixture
    def leases(self, clock: list[float]) -> MemoryLeaseStore:
        return MemoryLeaseStore(clock=lambda: clock[0])

    @pytest.fixture
    def advance_clock(self, clock: list[float]) -> Callable[[float], None]:
        def advance(seconds: float) -> None:
            clock[0] += seconds

        return advance
