"""Heads guessed absent (aggregates this process knows nothing of) on the real MongoDB wire server.

A command creating an aggregate costs no head read; a wrong guess is found by the commit colliding
with the aggregate's first one and decided again on the stored head, so every answer is the one the
stored state gives.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from typing import Any

import pytest

from command_svc.domain.shop import SHOP_AGGREGATES
from command_svc.pipeline import CommandPipeline
from command_svc.registry import CommandRegistry
from command_svc.write_store.mongo_store import MongoWriteStore
from cqrs_shared.auth import TokenVerifier
from cqrs_shared.results import Accepted, Rejected, RejectionCode
from cqrs_shared.settings import AuthSettings
from cqrs_shared.write_store import Commit

pytestmark = pytest.mark.integration


class HeadReadCountingStore(MongoWriteStore):
    head_reads = 0

    async def load_head(self, aggregate_type: str, aggregate_id: str) -> Commit | None:
        self.head_reads += 1
        return await super().load_head(aggregate_type, aggregate_id)


@pytest.fixture
async def store(mongodb_uri: str, unique: str) -> AsyncIterator[HeadReadCountingStore]:
    plain = await MongoWriteStore.open(mongodb_uri, f"guess_{unique}")
    counting = HeadReadCountingStore(plain._client, plain.database)
    yield counting
    await plain.database.client.drop_database(plain.database.name)
    await plain.close()


def command(type_: str, aggregate_id: str, payload: dict[str, Any], **extra: Any) -> dict[str, Any]:
    return {
        "command_id": str(uuid.uuid4()),
        "type": type_,
        "aggregate_id": aggregate_id,
        "payload": payload,
        **extra,
    }


def register(customer: str) -> dict[str, Any]:
    return command("RegisterCustomer", customer, {"name": "Ada", "email": f"{customer}@example.com"})


def replica(store: MongoWriteStore, auth_settings: AuthSettings) -> CommandPipeline:
    """A pipeline with an empty head cache, as a replica that never saw the aggregates."""
    return CommandPipeline(CommandRegistry(SHOP_AGGREGATES), store, TokenVerifier(auth_settings))


async def test_commands_creating_aggregates_read_no_heads(
    store: HeadReadCountingStore, auth_settings: AuthSettings, token_for: Any
) -> None:
    pipeline = replica(store, auth_settings)
    auth = token_for("customers:write")
    outcomes = [await pipeline.handle(register(f"c-{i}"), auth) for i in range(20)]
    assert all(isinstance(o, Accepted) and o.version == 1 for o in outcomes)
    assert store.head_reads == 0
    head = await store.load_head("customer", "c-7")
    assert head is not None and head.state["email"] == "c-7@example.com"


async def test_a_wrong_guess_is_decided_again_on_the_stored_head(
    store: HeadReadCountingStore, auth_settings: AuthSettings, token_for: Any
) -> None:
    auth = token_for("customers:write")
    first = register("c-1")
    original = await replica(store, auth_settings).handle(first, auth)
    assert isinstance(original, Accepted)

    # Accepted on no state, refused on the stored one: the guess shows only in the collision.
    again = await replica(store, auth_settings).handle(register("c-1"), auth)
    assert isinstance(again, Rejected) and again.code is RejectionCode.RULE_VIOLATED
    # Refused on no state: confirmed on the stored head, where it is accepted.
    rename = command("RenameCustomer", "c-1", {"name": "Grace"})
    renamed = await replica(store, auth_settings).handle(rename, auth)
    assert isinstance(renamed, Accepted) and renamed.version == 2
    # A pinned version is judged against the stored head, not the guess.
    pinned = command("RenameCustomer", "c-1", {"name": "Lin"}, expected_version=0)
    conflict = await replica(store, auth_settings).handle(pinned, auth)
    assert isinstance(conflict, Rejected) and conflict.code is RejectionCode.CONFLICT
    assert conflict.message == "expected version 0 but the aggregate is at version 2"
    head = await store.load_head("customer", "c-1")
    assert head is not None and (head.version, head.state["name"]) == (2, "Grace")


async def test_a_repeat_unknown_to_the_replica_gets_its_first_outcome(
    store: HeadReadCountingStore, auth_settings: AuthSettings, token_for: Any
) -> None:
    auth = token_for("customers:write")
    first = register("c-2")
    original = await replica(store, auth_settings).handle(first, auth)
    rename = command("RenameCustomer", "c-2", {"name": "B"})
    renamed = await replica(store, auth_settings).handle(rename, auth)
    assert isinstance(renamed, Accepted) and renamed.version == 2
    repeat = await replica(store, auth_settings).handle(first, auth)
    assert repeat == original
    assert [c.version async for c in store.history()] == [1, 2]
