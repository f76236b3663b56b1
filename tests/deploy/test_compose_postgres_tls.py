"""The aws-like compose stack's PostgreSQL TLS, against a real server: deploy/compose/postgres-tls.sh
makes a CA and a server certificate PostgreSQL accepts, deploy/compose/pg_hba.conf refuses every TCP
connection in clear, and the services' own connection options on verify-full connect with the CA
certificate alone (the CA's key is gone) and refuse a host name the certificate does not carry.

The server is a private cluster of this module's (the shared one is never restarted); the certificate
is made for `localhost`, the name compose's `postgres` takes on this loopback-only machine. The rules
file is loaded into the cluster's own hba file after the role gets its password (through initdb's
trust rules), then reloaded.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import ssl
import subprocess
import tempfile
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import asyncpg
import pytest

from cqrs_shared.postgres_connect import ConnectOptions, PostgresConnectSettings
from query_svc.testing.outages import PrivatePostgres
from tests.deploy.rendering import ROOT

pytestmark = pytest.mark.integration

SCRIPT = ROOT / "deploy/compose/postgres-tls.sh"
HBA = ROOT / "deploy/compose/pg_hba.conf"
PASSWORD = "compose-tls-test-only"  # a throwaway role password of a private cluster
_SSL_IN_USE = "SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()"


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
    files.chmod(0o755)  # the server's OS user reads the key below it
    server_dir, ca_dir = files / "server", files / "ca"
    generate(server_dir, ca_dir)
    return files, server_dir, ca_dir


@pytest.fixture(scope="module")
async def cluster() -> AsyncIterator[TlsCluster]:
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
    await server.destroy()
    shutil.rmtree(files, ignore_errors=True)


def test_the_script_leaves_no_ca_key_and_keeps_an_existing_pair(tmp_path: Path) -> None:
    server_dir, ca_dir = tmp_path / "server", tmp_path / "ca"
    first = generate(server_dir, ca_dir)
    assert "new CA" in first.stdout
    assert sorted(p.name for p in ca_dir.iterdir()) == ["ca.crt"]
    assert sorted(p.name for p in server_dir.iterdir()) == ["server.crt", "server.key"]
    assert (server_dir / "server.key").stat().st_mode & 0o777 == 0o600
    assert (ca_dir / "ca.crt").stat().st_mode & 0o777 == 0o644
    for path in (*server_dir.iterdir(), *ca_dir.iterdir()):
        assert b"PRIVATE KEY" not in path.read_bytes() or path.name == "server.key", path
    certificate = (server_dir / "server.crt").read_bytes()
    again = generate(server_dir, ca_dir)
    assert "keeping" in again.stdout
    assert (server_dir / "server.crt").read_bytes() == certificate


async def test_verify_full_with_the_generated_ca_connects_over_tls(cluster: TlsCluster) -> None:
    dsn = cluster.dsn()
    connection = await asyncpg.connect(dsn, timeout=5, **cluster.options("verify-full").for_dsn(dsn))
    try:
        assert await connection.fetchval(_SSL_IN_USE) is True
    finally:
        await connection.close()


async def test_a_connection_in_clear_is_refused(cluster: TlsCluster) -> None:
    dsn = cluster.dsn()
    with pytest.raises(asyncpg.InvalidAuthorizationSpecificationError, match="no encryption"):
        await asyncpg.connect(dsn, timeout=5, **cluster.options("disable").for_dsn(dsn))


async def test_verify_full_refuses_a_host_name_the_certificate_does_not_carry(cluster: TlsCluster) -> None:
    dsn = cluster.dsn(host="127.0.0.1")  # the same server, under a name not in the certificate
    with pytest.raises(ssl.SSLCertVerificationError, match="mismatch"):
        await asyncpg.connect(dsn, timeout=5, **cluster.options("verify-full").for_dsn(dsn))
