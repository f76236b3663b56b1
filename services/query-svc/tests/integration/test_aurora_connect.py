"""Aurora's connection options against a real server: TLS verified as `verify-full` says, and IAM
authentication with a fresh token for every new connection.

The server is a private PostgreSQL cluster of this module's (the shared one is never restarted)
with a certificate for 127.0.0.1 only, signed by a throwaway CA, and an `hba_file` that refuses
every TCP connection in clear and logs `iam_app` in with a password, the way Aurora checks an IAM
token (a cleartext password over TLS). The stand-in signer makes each token the role's only valid
password as it signs it, so a connection opened with an old token is refused by the server.
"""

from __future__ import annotations

import os
import shutil
import ssl
import tempfile
from collections.abc import AsyncIterator
from pathlib import Path

import asyncpg
import pytest

from cqrs_shared.postgres_connect import PostgresConnectSettings
from cqrs_shared.read_models.shop import SHOP
from cqrs_shared.testing.tls import ServerCertificate, make_ca, make_server_certificate
from query_svc.database import Reader
from query_svc.hub import ChangeHub
from query_svc.listener import ProjectionListener
from query_svc.testing import NOTIFY_CHANNEL, wait_until
from query_svc.testing.outages import PrivatePostgres

pytestmark = pytest.mark.integration

IAM_USER = "iam_app"
_HBA = f"""
local     all all                  trust
hostssl   all {IAM_USER} 127.0.0.1/32 password
hostssl   all all      127.0.0.1/32 trust
host      all all      0.0.0.0/0    reject
"""
_SSL_IN_USE = "SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()"


class TlsServer:
    def __init__(self, server: PrivatePostgres, certificate: ServerCertificate) -> None:
        self.server = server
        self.certificate = certificate

    def dsn(self, *, host: str = "127.0.0.1", user: str = "postgres") -> str:
        return f"postgresql://{user}@{host}:{self.server.port}/postgres"

    def settings(
        self, mode: str, root_cert: Path | None = None, *, iam: bool = False
    ) -> PostgresConnectSettings:
        return PostgresConnectSettings(
            database_sslmode=mode,
            database_sslrootcert=root_cert or self.certificate.ca_file,
            database_iam_auth=iam,
        )


@pytest.fixture(scope="module")
async def tls_server() -> AsyncIterator[TlsServer]:
    # The server reads these files as its own OS user, so they live in a directory it owns.
    files = Path(tempfile.mkdtemp(prefix="aurora-tls-"))
    certificate = make_server_certificate(files)
    hba = files / "pg_hba.conf"
    hba.write_text(_HBA)
    if os.geteuid() == 0:
        for path in (files, certificate.ca_file, certificate.cert_file, certificate.key_file, hba):
            shutil.chown(path, "postgres")
    server = PrivatePostgres(
        settings={
            "ssl": "on",
            "ssl_cert_file": str(certificate.cert_file),
            "ssl_key_file": str(certificate.key_file),
            "hba_file": str(hba),
        }
    )
    await server.init()
    await server.start()
    admin = await asyncpg.connect(server.dsn)
    try:
        await admin.execute(f"CREATE ROLE {IAM_USER} LOGIN")
    finally:
        await admin.close()
    yield TlsServer(server, certificate)
    await server.destroy()
    shutil.rmtree(files, ignore_errors=True)


async def test_verify_full_connects_over_tls_to_a_server_whose_certificate_names_the_host(
    tls_server: TlsServer,
) -> None:
    options = tls_server.settings("verify-full").connect_options()
    dsn = tls_server.dsn()
    reader = Reader(
        dsn, min_size=1, max_size=1, statement_timeout_ms=1000, acquire_timeout=5, connect=options
    )
    await reader.start()
    try:
        async with reader.connection() as connection:
            assert await connection.fetchval(_SSL_IN_USE) is True
    finally:
        await reader.close()


async def test_verify_full_refuses_a_server_whose_certificate_another_ca_signed(
    tls_server: TlsServer, tmp_path: Path
) -> None:
    other_ca, _ = make_ca(tmp_path, "other-ca")
    options = tls_server.settings("verify-full", other_ca).connect_options()
    dsn = tls_server.dsn()
    with pytest.raises(ssl.SSLCertVerificationError, match="unable to get local issuer certificate"):
        await asyncpg.connect(dsn, timeout=5, **options.for_dsn(dsn))


async def test_verify_full_refuses_a_certificate_for_another_host_name_which_verify_ca_accepts(
    tls_server: TlsServer,
) -> None:
    # The certificate names 127.0.0.1 only; "localhost" reaches the same server under another name.
    dsn = tls_server.dsn(host="localhost")
    full = tls_server.settings("verify-full").connect_options()
    with pytest.raises(ssl.SSLCertVerificationError, match="mismatch"):
        await asyncpg.connect(dsn, timeout=5, **full.for_dsn(dsn))
    ca_only = tls_server.settings("verify-ca").connect_options()
    connection = await asyncpg.connect(dsn, timeout=5, **ca_only.for_dsn(dsn))
    try:
        assert await connection.fetchval(_SSL_IN_USE) is True
    finally:
        await connection.close()


class RotatingSigner:
    """Signs token n and makes it `iam_app`'s only valid password, as IAM validates a token."""

    def __init__(self, admin_dsn: str) -> None:
        self._admin_dsn = admin_dsn
        self.issued: list[tuple[str, int, str, str]] = []

    async def token(self, host: str, port: int, user: str) -> str:
        token = f"token-{len(self.issued) + 1}-for-{user}@{host}:{port}"
        admin = await asyncpg.connect(self._admin_dsn)
        try:
            statement = await admin.fetchval(
                "SELECT format('ALTER ROLE %I PASSWORD %L', $1::text, $2::text)", user, token
            )
            await admin.execute(statement)
        finally:
            await admin.close()
        self.issued.append((host, port, user, token))
        return token


async def test_every_new_connection_logs_in_with_a_fresh_token(tls_server: TlsServer) -> None:
    signer = RotatingSigner(tls_server.server.dsn)
    options = tls_server.settings("verify-full", iam=True).connect_options(signer)
    dsn = tls_server.dsn(user=IAM_USER)
    reader = Reader(
        dsn, min_size=1, max_size=1, statement_timeout_ms=1000, acquire_timeout=5, connect=options
    )
    await reader.start()
    try:
        async with reader.connection() as connection:
            first_pid = connection.get_server_pid()
            assert await connection.fetchval("SELECT current_user") == IAM_USER
        assert [t[:3] for t in signer.issued] == [("127.0.0.1", tls_server.server.port, IAM_USER)]

        # The server ends the session (a failover, a restart): the pool's next connection must
        # log in again, with token 1 no longer valid.
        admin = await asyncpg.connect(tls_server.server.dsn)
        try:
            await admin.execute("SELECT pg_terminate_backend($1)", first_pid)
        finally:
            await admin.close()
        second_pid = await _backend_pid_after_reconnect(reader)
        assert second_pid != first_pid
        # At least one more login; how many depends on the pool (a background replacement for
        # min_size, a failover drop expiring the rest), but each one signed a token of its own.
        assert len(signer.issued) >= 2
        assert len({t[3] for t in signer.issued}) == len(signer.issued)
    finally:
        await reader.close()
    stale = signer.issued[0][3]
    with pytest.raises(asyncpg.InvalidPasswordError):
        await asyncpg.connect(dsn, timeout=5, **{**options.for_dsn(dsn), "password": stale})


async def _backend_pid_after_reconnect(reader: Reader) -> int:
    """The first read after the session ended may fail (503) on the dead connection; the next
    one runs on a new connection. The pid is asked of the server: the connection's cached pid
    needs no round trip, so a dead connection not yet noticed would still answer with the old one
    (the pool's release no longer runs a reset query that used to notice it)."""
    for _ in range(3):
        try:
            async with reader.connection() as connection:
                pid: int = await connection.fetchval("SELECT pg_backend_pid()")
                return pid
        except Exception:  # noqa: BLE001, S112  # the dead connection's one failure, as a 503
            continue
    raise AssertionError("no read succeeded after the session ended")


async def test_the_listen_connection_uses_tls_and_a_fresh_token_for_every_reconnect(
    tls_server: TlsServer,
) -> None:
    signer = RotatingSigner(tls_server.server.dsn)
    options = tls_server.settings("verify-full", iam=True).connect_options(signer)
    listener = ProjectionListener(
        tls_server.dsn(user=IAM_USER),
        NOTIFY_CHANNEL,
        ChangeHub([SHOP]),
        keepalive_seconds=0.05,
        connect=options,
    )
    listener.start()
    admin = await asyncpg.connect(tls_server.server.dsn)
    try:
        await wait_until(listener.connected.is_set)
        first = listener.backend_pid
        assert await admin.fetchval("SELECT ssl FROM pg_stat_ssl WHERE pid = $1", first) is True
        await admin.execute("SELECT pg_terminate_backend($1)", first)
        await wait_until(lambda: listener.backend_pid not in (None, first))
        assert [t[2] for t in signer.issued] == [IAM_USER, IAM_USER]
        assert signer.issued[0][3] != signer.issued[1][3]
    finally:
        await admin.close()
        await listener.stop()


@pytest.fixture
async def primary_and_replica() -> AsyncIterator[tuple[PrivatePostgres, PrivatePostgres]]:
    primary, replica = PrivatePostgres(), PrivatePostgres()
    await primary.init()
    await primary.start()
    try:
        await replica.init_standby_of(primary)
        await replica.start()
        yield primary, replica
    finally:
        await replica.destroy()
        await primary.destroy()


async def test_the_listen_connection_refuses_a_replica_until_it_is_promoted(
    primary_and_replica: tuple[PrivatePostgres, PrivatePostgres], caplog: pytest.LogCaptureFixture
) -> None:
    """After a failover a stale DNS answer can send the LISTEN connection to a reader, where no
    NOTIFY ever arrives: it must not count as connected, and must try again until the node it
    reaches is the writer (here: the replica promoted, as a failover does)."""
    _, replica = primary_and_replica
    listener = ProjectionListener(
        replica.dsn, NOTIFY_CHANNEL, ChangeHub([SHOP]), keepalive_seconds=0.05, max_backoff_seconds=0.2
    )
    listener.start()
    try:
        await wait_until(lambda: sum("ReadOnlyNodeError" in r.getMessage() for r in caplog.records) >= 2)
        assert not listener.connected.is_set()
        admin = await asyncpg.connect(replica.dsn)
        try:
            assert await admin.fetchval("SELECT pg_promote()") is True
        finally:
            await admin.close()
        await wait_until(listener.connected.is_set)
    finally:
        await listener.stop()
