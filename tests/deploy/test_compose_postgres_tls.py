"""The aws-like compose stack's PostgreSQL TLS, against a real server: deploy/compose/postgres-tls.sh
makes a CA and a server certificate PostgreSQL accepts, deploy/compose/pg_hba.conf refuses every TCP
connection in clear, and the services' own connection options on verify-full connect with the CA
certificate alone (the CA's key is gone) and refuse a host name the certificate does not carry.

The server is a private cluster of this module's (tests/deploy/postgres_tls.py; the shared one is
never restarted).
"""

from __future__ import annotations

import ssl
from collections.abc import AsyncIterator
from pathlib import Path

import asyncpg
import pytest

from tests.deploy.postgres_tls import TlsCluster, generate, tls_cluster

pytestmark = pytest.mark.integration

_SSL_IN_USE = "SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()"


@pytest.fixture(scope="module")
async def cluster() -> AsyncIterator[TlsCluster]:
    async with tls_cluster() as started:
        yield started


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
