"""Build schemas: each projection's tables live in a schema `<projection>_b<n>`; readers see `read.*`.

The `read` schema holds one view per projection table pointing at the *active* build. Activating a
build replaces those views in one transaction, which is how a rebuilt copy is swapped in without
readers ever seeing a half-built table. `projector.builds` records which build is active.
Migrations run under an advisory lock, so replicas starting together apply each one exactly once.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import asyncpg

from cqrs_shared.read_models import check_identifier
from cqrs_shared.read_models.notifications import CHANNEL, RUNTIME_TABLES, encode_overflow, read_view_name
from projector_svc.pg import Connection
from projector_svc.projection import Migration, Projection

log = logging.getLogger(__name__)

_RUNTIME_MIGRATIONS = (
    Migration.from_file(0, Path(__file__).parent / "migrations" / "runtime_0001_positions.sql"),
)
#: First key of every advisory lock the projector takes ("CQRS"): keeps its lock ids apart from
#: other applications' in the same database.
LOCK_NAMESPACE = 0x43515253

_CONTROL_DDL = """
CREATE SCHEMA IF NOT EXISTS projector;
CREATE SCHEMA IF NOT EXISTS read;
CREATE TABLE IF NOT EXISTS projector.builds (
    projection    text        NOT NULL,
    build         integer     NOT NULL,
    schema_name   text        NOT NULL UNIQUE,
    status        text        NOT NULL CHECK (status IN ('building', 'active', 'retired')),
    created_at    timestamptz NOT NULL DEFAULT now(),
    activated_at  timestamptz,
    PRIMARY KEY (projection, build)
);
CREATE UNIQUE INDEX IF NOT EXISTS builds_one_active ON projector.builds (projection) WHERE status = 'active';
"""


@dataclass(frozen=True, slots=True)
class Build:
    """One build of a projection: its tables live in schema `<projection>_b<number>`."""

    projection: str
    number: int

    @property
    def schema(self) -> str:
        return f"{self.projection}_b{self.number}"


@dataclass(frozen=True, slots=True)
class BuildInfo:
    """A build as `projector.builds` records it."""

    build: Build
    status: str
    created_at: datetime
    activated_at: datetime | None


def _checked(name: str) -> str:
    return check_identifier(name, "build")


async def _advisory_lock(connection: Connection, projection: str) -> None:
    await connection.execute("SELECT pg_advisory_xact_lock($1, hashtext($2))", LOCK_NAMESPACE, projection)


async def ensure_active_build(connection: Connection, projection: Projection) -> Build:
    """The active build of the projection, created (build 1) and migrated as needed."""
    name = _checked(projection.name)
    async with connection.transaction():
        await _advisory_lock(connection, name)
        await connection.execute(_CONTROL_DDL)
        number = await connection.fetchval(
            "SELECT build FROM projector.builds WHERE projection = $1 AND status = 'active'", name
        )
        if number is None:
            build = Build(name, 1)
            await _create_build(connection, projection, build, status="active")
            await _publish_views(connection, projection, build)
            return build
        build = Build(name, number)
        if await _pending_migrations(connection, projection, build):
            # A migration may change the type of a column the `read` views select, which
            # PostgreSQL refuses while a view depends on it: the views go first and come back in
            # this transaction, so readers see the old build or the migrated one, never neither.
            await _drop_views(connection, projection)
            await _migrate(connection, projection, build)
            await _publish_views(connection, projection, build)
        return build


async def create_build(connection: Connection, projection: Projection) -> Build:
    """A fresh, empty build (for a rebuild), numbered after every existing one."""
    name = _checked(projection.name)
    async with connection.transaction():
        await _advisory_lock(connection, name)
        await connection.execute(_CONTROL_DDL)
        last = await connection.fetchval(
            "SELECT max(build) FROM projector.builds WHERE projection = $1", name
        )
        build = Build(name, (last or 0) + 1)
        await _create_build(connection, projection, build, status="building")
        return build


async def migrate_build(connection: Connection, projection: Projection, build: Build) -> None:
    """Bring a build that is not active (a rebuild being resumed) up to the current migrations."""
    async with connection.transaction():
        await _advisory_lock(connection, build.projection)
        await _migrate(connection, projection, build)


async def activate(connection: Connection, projection: Projection, build: Build) -> None:
    """Point `read.*` at `build` and retire the previous active build, atomically."""
    async with connection.transaction():
        await _advisory_lock(connection, build.projection)
        await connection.execute(
            "UPDATE projector.builds SET status = 'retired' WHERE projection = $1 AND status = 'active'",
            build.projection,
        )
        await connection.execute(
            "UPDATE projector.builds SET status = 'active', activated_at = now() "
            "WHERE projection = $1 AND build = $2",
            build.projection,
            build.number,
        )
        await _publish_views(connection, projection, build)
        # Every row readers see may have changed: wake all waiters and streams to re-read (on commit).
        await connection.execute(
            "SELECT pg_notify($1, $2)",
            CHANNEL,
            encode_overflow(build.projection, build.schema),
        )


async def active_schema(connection: Connection, projection: str) -> str | None:
    return await connection.fetchval(  # type: ignore[no-any-return]  # asyncpg is untyped
        "SELECT schema_name FROM projector.builds WHERE projection = $1 AND status = 'active'", projection
    )


async def _create_build(connection: Connection, projection: Projection, build: Build, *, status: str) -> None:
    await connection.execute(f'CREATE SCHEMA "{build.schema}"')
    await connection.execute(
        f'CREATE TABLE "{build.schema}".schema_migrations '
        "(version integer PRIMARY KEY, name text NOT NULL, applied_at timestamptz NOT NULL DEFAULT now())"
    )
    await connection.execute(
        "INSERT INTO projector.builds (projection, build, schema_name, status) VALUES ($1, $2, $3, $4)",
        build.projection,
        build.number,
        build.schema,
        status,
    )
    await _migrate(connection, projection, build)


async def _pending_migrations(
    connection: Connection, projection: Projection, build: Build
) -> list[Migration]:
    """The migrations this build lacks, in order."""
    applied = {
        r["version"]
        for r in await connection.fetch(f'SELECT version FROM "{build.schema}".schema_migrations')  # noqa: S608  # checked identifier
    }
    every = sorted((*_RUNTIME_MIGRATIONS, *projection.migrations), key=lambda m: m.version)
    return [m for m in every if m.version not in applied]


async def _migrate(connection: Connection, projection: Projection, build: Build) -> bool:
    """Apply the migrations this build lacks; True if any ran. Runs inside the caller's transaction."""
    ran = False
    for migration in await _pending_migrations(connection, projection, build):
        await connection.execute(f'SET LOCAL search_path TO "{build.schema}"')
        await connection.execute(migration.sql)
        await connection.execute(
            f'INSERT INTO "{build.schema}".schema_migrations (version, name) VALUES ($1, $2)',  # noqa: S608  # checked identifier
            migration.version,
            migration.name,
        )
        log.info("applied migration %s to %s", migration.name, build.schema)
        ran = True
    await connection.execute("SET LOCAL search_path TO public")
    return ran


def _view_names(projection: Projection) -> list[str]:
    return [read_view_name(projection.name, t) for t in (*projection.tables, *RUNTIME_TABLES)]


async def _drop_views(connection: Connection, projection: Projection) -> None:
    for view in _view_names(projection):
        await connection.execute(f'DROP VIEW IF EXISTS read."{view}"')


async def _publish_views(connection: Connection, projection: Projection, build: Build) -> None:
    for table in (*projection.tables, *RUNTIME_TABLES):
        view = read_view_name(projection.name, table)
        source = f'SELECT * FROM "{build.schema}"."{_checked(table)}"'  # noqa: S608  # checked identifiers
        try:
            # Replacing keeps the view's identity: a query waiting on its lock runs on the new
            # build, where DROP + CREATE would make it fail on a relation that no longer exists.
            async with connection.transaction():
                await connection.execute(f'CREATE OR REPLACE VIEW read."{view}" AS {source}')
        except (asyncpg.InvalidTableDefinitionError, asyncpg.FeatureNotSupportedError):
            # A migration renamed, retyped or dropped a column: only a new view can express that.
            await connection.execute(f'DROP VIEW IF EXISTS read."{view}"')
            await connection.execute(f'CREATE VIEW read."{view}" AS {source}')


async def list_builds(connection: Connection, projection: str) -> list[BuildInfo]:
    rows = await connection.fetch(
        "SELECT build, status, created_at, activated_at FROM projector.builds "
        "WHERE projection = $1 ORDER BY build",
        projection,
    )
    return [
        BuildInfo(Build(projection, r["build"]), r["status"], r["created_at"], r["activated_at"])
        for r in rows
    ]


async def drop_build(connection: Connection, build: Build) -> None:
    """Drop a build that is not active (an abandoned rebuild or a retired copy)."""
    async with connection.transaction():
        await _advisory_lock(connection, build.projection)
        status = await connection.fetchval(
            "DELETE FROM projector.builds WHERE projection = $1 AND build = $2 RETURNING status",
            build.projection,
            build.number,
        )
        if status == "active":
            raise ValueError(f"{build.schema} is the active build; it cannot be dropped")
        await connection.execute(f'DROP SCHEMA IF EXISTS "{_checked(build.schema)}" CASCADE')
