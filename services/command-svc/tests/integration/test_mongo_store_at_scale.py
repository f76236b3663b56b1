"""With a large history, every hot-path write-store call is served by an index, as FerretDB runs it.

FerretDB turns MongoDB queries into SQL on PostgreSQL, and only some of them can use an index
(see infra/postgres/ferretdb-indexes.sql). So this test asks PostgreSQL itself, not MongoDB's
semantics: with 30,000 commits stored, the calls a command and the relay make must not read the
commits table sequentially even once. Timing-free: a scan shows up in the counters whatever the
machine's speed, and a design whose calls read the whole history fails here at any size.
"""

from __future__ import annotations

import asyncio
import os
import uuid
import zlib
from collections.abc import AsyncIterator, Awaitable, Callable
from urllib.parse import urlsplit, urlunsplit

import asyncpg
import pytest

from command_svc.write_store.mongo_store import MongoWriteStore
from cqrs_shared.testing.write_store_contract import make_commit
from cqrs_shared.write_store import Commit

pytestmark = pytest.mark.integration

AGGREGATES = 3_000
PER_AGGREGATE = 10
CALLS = 20  # above PostgreSQL's 5 custom plans before it may switch to a generic one


def commit(aggregate_id: str, base: int, *, published: bool = True) -> Commit:
    """A one-event commit on `base` (the contract suite's), published or not."""
    made = make_commit(aggregate_id, base + 1, shard=zlib.crc32(aggregate_id.encode()) % 64)
    return made.model_copy(update={"published": published})


def ferretdb_backend_dsn(database_url: str) -> str:
    """The PostgreSQL database behind the local FerretDB (`ferretdb` on the read store's server)."""
    if explicit := os.environ.get("FERRETDB_POSTGRESQL_URL"):
        return explicit
    parts = urlsplit(database_url)
    return urlunsplit(parts._replace(path="/ferretdb"))


@pytest.fixture
async def big_store(mongodb_uri: str, unique: str) -> AsyncIterator[MongoWriteStore]:
    store = await MongoWriteStore.open(mongodb_uri, f"scale_{unique}")
    info = await store.database.client.admin.command("buildInfo")
    if "ferretdbVersion" not in info:
        pytest.fail(f"this test checks FerretDB's SQL plans; {mongodb_uri} is not FerretDB")
    slots = asyncio.Semaphore(2)

    async def seed(first: int) -> None:
        async with slots:
            await store.import_commits(
                [commit(f"a{i}", b) for i in range(first, first + 200) for b in range(PER_AGGREGATE)]
            )

    await asyncio.gather(*(seed(first) for first in range(0, AGGREGATES, 200)))
    yield store
    await store.database.client.drop_database(store.database.name)
    await store.close()


async def commits_table(pg: asyncpg.Connection[asyncpg.Record], schema: str) -> str:
    name = await pg.fetchval(
        "SELECT relname FROM pg_stat_user_tables WHERE schemaname = $1 AND relname LIKE 'commits\\_%'", schema
    )
    assert name is not None, f"no commits table in schema {schema}"
    return str(name)


async def commits_table_counters(pg: asyncpg.Connection[asyncpg.Record], schema: str) -> tuple[int, int]:
    """(sequential scans, index scans) of the commits table, once every backend has reported.

    An idle PostgreSQL backend that reported less than a second ago reports again only after 10 s
    (PGSTAT_IDLE_INTERVAL), so counters are read after that long a pause.
    """
    await asyncio.sleep(11.0)
    row = await pg.fetchrow(
        "SELECT seq_scan, COALESCE(idx_scan, 0) AS idx_scan FROM pg_stat_user_tables "
        "WHERE schemaname = $1 AND relname = $2",
        schema,
        await commits_table(pg, schema),
    )
    assert row is not None
    return int(row["seq_scan"]), int(row["idx_scan"])


async def test_hot_path_calls_use_indexes_with_a_large_history(
    big_store: MongoWriteStore, database_url: str
) -> None:
    pg = await asyncpg.connect(ferretdb_backend_dsn(database_url))
    try:
        schema = big_store.database.name
        calls: dict[str, Callable[[int], Awaitable[object]]] = {
            "find_outcome": lambda i: big_store.find_outcome(uuid.uuid4()),
            "load_head": lambda i: big_store.load_head("tally", f"a{i * 7}"),
            "append": lambda i: big_store.append(commit(f"new{i}", 0, published=False)),
            "unpublished": lambda i: big_store.unpublished(range(64), 500),
            "unpublished_in_stream": lambda i: big_store.unpublished_in_stream("tally", f"new{i}"),
            "mark_published": lambda i: big_store.mark_published([commit(f"new{i}", 0)]),
        }
        seq_before, idx_before = await commits_table_counters(pg, schema)
        for call in calls.values():
            for i in range(CALLS):
                await call(i)
        seq_after, idx_after = await commits_table_counters(pg, schema)
        assert seq_after == seq_before, f"one of {sorted(calls)} read the whole commits table"
        # Reads of each kind except the inserts: at least one index scan for every call.
        assert idx_after - idx_before >= CALLS * (len(calls) - 1)
        head = await big_store.load_head("tally", "a42")
        assert head is not None and head.version == PER_AGGREGATE
        assert await big_store.unpublished(range(64), 500) == []
        # Last, as it is a sequential scan itself (and not `count_documents`: on FerretDB that
        # reads and decodes every document).
        stored = await pg.fetchval(
            f'SELECT count(*) FROM "{schema}".{await commits_table(pg, schema)}'  # noqa: S608  # names from the catalog
        )
        assert stored == AGGREGATES * PER_AGGREGATE + CALLS
    finally:
        await pg.close()
