"""Throwaway PostgreSQL databases for tests: created fresh, dropped reliably."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from urllib.parse import urlsplit, urlunsplit

import asyncpg


async def drop_database(admin_dsn: str, name: str) -> None:
    """DROP DATABASE ... WITH (FORCE), retried: an autovacuum worker (a superuser process a
    non-superuser role may not terminate) can still be in a database a test just filled."""
    admin = await asyncpg.connect(admin_dsn)
    try:
        for attempt in range(50):
            try:
                await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
            except (asyncpg.InsufficientPrivilegeError, asyncpg.ObjectInUseError):
                await asyncio.sleep(0.1 * min(attempt + 1, 10))
            else:
                return
        raise RuntimeError(f"could not drop database {name}")
    finally:
        await admin.close()


@asynccontextmanager
async def fresh_database(admin_dsn: str, name: str) -> AsyncIterator[str]:
    """A new empty database named `name` for the duration of the block; yields its DSN."""
    admin = await asyncpg.connect(admin_dsn)
    try:
        await admin.execute(f'CREATE DATABASE "{name}"')
    finally:
        await admin.close()
    try:
        yield urlunsplit(urlsplit(admin_dsn)._replace(path=f"/{name}"))
    finally:
        await drop_database(admin_dsn, name)
