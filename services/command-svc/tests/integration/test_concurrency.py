"""Optimistic concurrency on the real MongoDB wire server, with several independent writers racing."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from typing import Any

import pytest

from command_svc.domain.decider import AggregateDefinition
from command_svc.pipeline import CommandPipeline
from command_svc.registry import CommandRegistry
from command_svc.write_store.mongo_store import MongoWriteStore
from cqrs_shared.auth import TokenVerifier
from cqrs_shared.results import Accepted, Rejected, RejectionCode
from cqrs_shared.settings import AuthSettings
from cqrs_shared.write_store import Commit, ConcurrencyConflictError

pytestmark = pytest.mark.integration

WRITERS = 5
COMMANDS = 50


class CountingStore(MongoWriteStore):
    """Counts lost races, so the test can prove the writers really collided."""

    conflicts = 0

    async def append(self, commit: Commit) -> None:
        try:
            await super().append(commit)
        except ConcurrencyConflictError:
            CountingStore.conflicts += 1
            raise


@pytest.fixture
async def writers(mongodb_uri: str, unique: str) -> AsyncIterator[list[MongoWriteStore]]:
    stores: list[MongoWriteStore] = []
    for _ in range(WRITERS):
        plain = await MongoWriteStore.open(mongodb_uri, f"race_{unique}")
        stores.append(CountingStore(plain._client, plain.database))
    yield stores
    await stores[0].database.client.drop_database(stores[0].database.name)
    for store in stores:
        await store.close()


async def test_concurrent_commands_on_one_aggregate_get_versions_without_gaps_or_duplicates(
    writers: list[MongoWriteStore],
    tally: AggregateDefinition[Any],
    auth_settings: AuthSettings,
    token_for: Any,
) -> None:
    CountingStore.conflicts = 0
    registry = CommandRegistry([tally])
    pipelines = [
        CommandPipeline(registry, store, TokenVerifier(auth_settings), max_attempts=5) for store in writers
    ]
    token = token_for("tally:write")
    commands = [
        {"command_id": str(uuid.uuid4()), "type": "Increment", "aggregate_id": "t-1", "payload": {"by": 1}}
        for _ in range(COMMANDS)
    ]
    outcomes = await asyncio.gather(
        *(pipelines[i % WRITERS].handle(cmd, token) for i, cmd in enumerate(commands))
    )
    accepted = [o for o in outcomes if isinstance(o, Accepted)]
    rejected = [o for o in outcomes if isinstance(o, Rejected)]
    assert len(accepted) + len(rejected) == COMMANDS
    assert all(o.code is RejectionCode.CONFLICT for o in rejected)
    assert sorted(o.version for o in accepted) == list(range(1, len(accepted) + 1))
    stored = [c async for c in writers[0].history()]
    assert [c.version for c in stored] == list(range(1, len(accepted) + 1))
    assert {c.command_id for c in stored} == {o.command_id for o in accepted}
    head = await writers[0].load_head("tally", "t-1")
    assert head is not None
    assert head.state["total"] == len(accepted)
    assert CountingStore.conflicts > 0, "the writers never collided, so nothing was proven"
