"""asyncpg pools configured the way the projector needs them (JSON codecs, bounded size, TLS and
IAM authentication from `cqrs_shared.postgres_connect`)."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, TypeAlias

import asyncpg
from asyncpg.pool import PoolConnectionProxy

from cqrs_shared.postgres_connect import PLAIN, ConnectOptions

if TYPE_CHECKING:
    from projector_svc.settings import ProjectorSettings

#: A connection either taken from a pool or opened alone; both offer the same API.
Connection: TypeAlias = "asyncpg.Connection[asyncpg.Record] | PoolConnectionProxy[asyncpg.Record]"


async def _init_connection(connection: asyncpg.Connection[asyncpg.Record]) -> None:
    for name in ("json", "jsonb"):
        await connection.set_type_codec(name, encoder=json.dumps, decoder=json.loads, schema="pg_catalog")


async def create_pool(
    dsn: str, *, min_size: int = 1, max_size: int = 10, connect: ConnectOptions = PLAIN
) -> asyncpg.Pool[asyncpg.Record]:
    """A pool whose connections decode `json`/`jsonb` to Python values."""
    return await asyncpg.create_pool(
        dsn, min_size=min_size, max_size=max_size, init=_init_connection, **connect.for_dsn(dsn)
    )


async def pool_for(settings: ProjectorSettings, *, max_size: int) -> asyncpg.Pool[asyncpg.Record]:
    """A pool on the configured database (`DATABASE_URL`), with its TLS and authentication."""
    return await create_pool(
        settings.database_url.get_secret_value(), max_size=max_size, connect=settings.connect_options()
    )
