"""A private PostgreSQL cluster set up as compose's aws-like `postgres`: the certificate pair made by
deploy/compose/postgres-tls.sh (for `localhost`, the name that server has on this loopback-only
machine, and `postgres`) and the client rules of deploy/compose/pg_hba.conf (TLS only)."""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import subprocess
import tempfile
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import asyncpg

from cqrs_shared.postgres_connect import ConnectOptions, PostgresConnectSettings
from query_svc.testing.outages import PrivatePostgres
from tests.deploy.rendering import ROOT

SCRIPT = ROOT / "deploy/compose/postgres-tls.sh"
HBA = ROOT / "deploy/compose/pg_hba.conf"
PASSWORD = "compose-tls-test-only"  # a throwaway role password of a private cluster


@dataclass(frozen=True)
class TlsCluster:
    server: PrivatePostgres
    server_dir: Path
    ca_dir: Path

    def dsn(self, host: str = "localhost") -> str:
        return f"postgresql://postgres:{PASSWORD}@{host}:{self.server.port}/postgres"

    def options(self, mode: str) -> ConnectOptions:
        """The services' own connection options for DATABASE_SSLMODE=mode with the generated CA."""
        settings = PostgresConnectSettings(database_sslmode=mode, database_sslrootcert=self.ca_dir / "ca.crt")
        return settings.connect_options()


def generate(server_dir: Path, ca_dir: Path) -> subprocess.CompletedProcess[str]:
    """deploy/compose/postgres-tls.sh as compose's `postgres-tls` one-shot runs it."""
    env = {"PATH": "/usr/bin:/bin", "TLS_SERVER_NAMES": "localhost,postgres"}
    if os.geteuid() == 0:
        env["TLS_KEY_OWNER"] = "postgres"  # the server's OS user, as compose's `postgres` user
    return subprocess.run(  # the project's script, fixed arguments
        ["/bin/sh", str(SCRIPT), str(server_dir), str(ca_dir)],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )


def _prepare_files() -> tuple[Path, Path, Path]:
    files = Path(tempfile.mkdtemp(prefix="compose-tls-"))
    files.chmod(0o755)  # the server's OS user reads the key, containers' uid 10001 the CA, below it
    server_dir, ca_dir = files / "server", files / "ca"
    generate(server_dir, ca_dir)
    return files, server_dir, ca_dir


@contextlib.asynccontextmanager
async def tls_cluster() -> AsyncIterator[TlsCluster]:
    files, server_dir, ca_dir = await asyncio.to_thread(_prepare_files)
    server = PrivatePostgres(
        settings={
            "ssl": "on",
            "ssl_cert_file": str(server_dir / "server.crt"),
            "ssl_key_file": str(server_dir / "server.key"),
            "ssl_min_protocol_version": "TLSv1.2",
        }
    )
    await server.init()
    await server.start()  # with initdb's trust rules, so the role can get its password first
    try:
        admin = await asyncpg.connect(server.dsn)
        try:
            await admin.execute(f"ALTER ROLE postgres PASSWORD '{PASSWORD}'")
            # Then compose's rules, as the server's hba file (compose passes it as hba_file).
            await asyncio.to_thread(shutil.copyfile, HBA, server.directory / "data/pg_hba.conf")
            assert await admin.fetchval("SELECT pg_reload_conf()")
            rules = await admin.fetch("SELECT type, error FROM pg_hba_file_rules")
            assert {(r["type"], r["error"]) for r in rules} == {("local", None), ("hostssl", None)}
        finally:
            await admin.close()
        yield TlsCluster(server, server_dir, ca_dir)
    finally:
        await server.destroy()
        shutil.rmtree(files, ignore_errors=True)
