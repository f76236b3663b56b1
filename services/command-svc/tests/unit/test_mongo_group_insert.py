"""Group insert: concurrent inserts go out as bulks, and each caller gets its own document's answer."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from pymongo.errors import BulkWriteError, DuplicateKeyError, PyMongoError, WriteError

from command_svc.write_store.mongo_group_insert import GroupInsert


class FakeCollection:
    """Records each bulk; holds every bulk until `release` is set; fails documents by their `_id`."""

    def __init__(self, failing: dict[str, int] | None = None) -> None:
        self.bulks: list[list[str]] = []
        self.release = asyncio.Event()
        self.release.set()
        self.failing = failing or {}

    async def insert_many(self, documents: list[dict[str, Any]], ordered: bool) -> None:
        assert ordered is False
        self.bulks.append([d["_id"] for d in documents])
        await self.release.wait()
        errors = [
            {"index": i, "code": self.failing[d["_id"]], "errmsg": f"refused {d['_id']}"}
            for i, d in enumerate(documents)
            if d["_id"] in self.failing
        ]
        if errors:
            raise BulkWriteError({"writeErrors": errors, "nInserted": len(documents) - len(errors)})


async def turns() -> None:
    """Let the callers queue and the bulks start (a few turns of the event loop)."""
    for _ in range(5):
        await asyncio.sleep(0)


def group(collection: FakeCollection) -> GroupInsert:
    return GroupInsert(lambda: collection, max_batch=4, max_in_flight=2)  # type: ignore[arg-type, return-value]


async def test_a_lone_insert_goes_at_once_and_the_rest_wait_for_a_free_bulk() -> None:
    collection = FakeCollection()
    inserts = group(collection)
    await inserts.insert({"_id": "lone"})
    assert collection.bulks == [["lone"]]
    collection.release.clear()
    waiting = [asyncio.create_task(inserts.insert({"_id": f"d{i}"})) for i in range(10)]
    await turns()
    # Queued in the same turn: the two slots took a full bulk each; the two behind them queue.
    assert collection.bulks[1:] == [["d0", "d1", "d2", "d3"], ["d4", "d5", "d6", "d7"]]
    late = asyncio.create_task(inserts.insert({"_id": "late"}))
    await turns()
    collection.release.set()
    await asyncio.gather(*waiting, late)
    assert collection.bulks[3:] == [["d8", "d9", "late"]]


async def test_inserts_made_in_one_turn_leave_as_one_bulk() -> None:
    collection = FakeCollection()
    inserts = group(collection)
    await asyncio.gather(*(inserts.insert({"_id": f"d{i}"}) for i in range(3)))
    assert collection.bulks == [["d0", "d1", "d2"]]


async def test_each_caller_gets_the_answer_of_its_own_document() -> None:
    collection = FakeCollection(failing={"taken": 11000, "odd": 2})
    inserts = group(collection)
    collection.release.clear()
    results = asyncio.gather(
        *(inserts.insert({"_id": name}) for name in ("a", "b", "taken", "c", "odd", "d")),
        return_exceptions=True,
    )
    await turns()
    collection.release.set()
    answers = dict(zip(("a", "b", "taken", "c", "odd", "d"), await results, strict=True))
    assert type(answers["taken"]) is DuplicateKeyError
    assert type(answers["odd"]) is WriteError and answers["odd"].code == 2
    assert [answers[n] for n in ("a", "b", "c", "d")] == [None] * 4


async def test_a_failed_bulk_fails_its_callers_only() -> None:
    collection = FakeCollection()
    inserts = group(collection)
    calls = 0
    insert_many = collection.insert_many

    async def fails_once(documents: list[dict[str, Any]], ordered: bool) -> None:
        nonlocal calls
        calls += 1
        if calls == 1:
            raise PyMongoError("connection reset")
        await insert_many(documents, ordered)

    collection.insert_many = fails_once  # type: ignore[method-assign]
    with pytest.raises(PyMongoError, match="connection reset"):
        await inserts.insert({"_id": "first"})
    await inserts.insert({"_id": "second"})
    assert collection.bulks == [["second"]]


async def test_closing_fails_the_queued_callers_and_sends_nothing_more() -> None:
    collection = FakeCollection()
    inserts = group(collection)
    collection.release.clear()
    waiting = [asyncio.create_task(inserts.insert({"_id": f"d{i}"})) for i in range(6)]
    await turns()
    await inserts.close()
    results = await asyncio.gather(*waiting, return_exceptions=True)
    assert all(isinstance(r, PyMongoError) for r in results)
    assert collection.bulks == [["d0", "d1", "d2", "d3"], ["d4", "d5"]]
    with pytest.raises(PyMongoError, match="closed"):
        await inserts.insert({"_id": "late"})
