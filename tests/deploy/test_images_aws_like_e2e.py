"""The aws-like compose path with the images users deploy (host network, nothing pulled): command-svc
on DynamoDB (moto) publishing nothing itself, the stream publisher run from the command-svc image with
compose's entrypoint and healthcheck (deploy/compose/stream_publisher_alive.py, mounted read-only), and
`cqrs setup`, projector-svc and query-svc reaching a PostgreSQL that accepts TLS only, with
DATABASE_SSLMODE=verify-full against the CA made by deploy/compose/postgres-tls.sh. A command sent
over HTTP must be readable from query-svc, which only the stream path can deliver.

What compose's own infrastructure images would run (apache/kafka, postgres:16, motoserver/moto) cannot
be pulled on this machine: the native stack's Kafka and moto and a private PostgreSQL cluster set up
as compose's `postgres` (tests/deploy/postgres_tls.py) stand in for them.
"""

from __future__ import annotations

import contextlib
import time
import uuid
from collections.abc import AsyncIterator
from typing import Any

import asyncpg
import httpx
import pytest

from command_svc.write_store.dynamo_client import DynamoSettings, open_dynamodb
from command_svc.write_store.dynamo_tables import TableNames, create_tables, delete_tables
from cqrs_shared.auth import mint_token
from cqrs_shared.testing.service_processes import AUDIENCE, E2E_SECRET, ISSUER, free_port
from tests.deploy.compose_config import resolve
from tests.deploy.containers import Container, Engine, run_once
from tests.deploy.postgres_tls import TlsCluster, tls_cluster
from tests.deploy.rendering import ROOT

pytestmark = [pytest.mark.e2e, pytest.mark.integration, pytest.mark.timeout(900)]

PROBE = ROOT / "deploy/compose/stream_publisher_alive.py"


@pytest.fixture
async def cluster() -> AsyncIterator[TlsCluster]:
    async with tls_cluster() as started:
        yield started


@contextlib.asynccontextmanager
async def tables(endpoint: str, region: str, prefix: str) -> AsyncIterator[None]:
    """What compose's `dynamodb-tables` one-shot makes (moto keeps tables per region)."""
    async with contextlib.AsyncExitStack() as stack:
        settings = DynamoSettings(endpoint_url=endpoint, region=region, table_prefix=prefix)
        admin = await open_dynamodb(settings, stack)
        await create_tables(admin, TableNames(prefix), protect=False)
        try:
            yield
        finally:
            await delete_tables(admin, TableNames(prefix))


def bearer(*roles: str) -> dict[str, str]:
    token = mint_token(
        E2E_SECRET, subject="aws-like-e2e", roles=list(roles), issuer=ISSUER, audience=AUDIENCE
    )
    return {"Authorization": f"Bearer {token}"}


async def test_the_aws_like_path_carries_a_command_through_the_stream_and_tls_to_the_query_api(
    engine: Engine,
    cluster: TlsCluster,
    dynamodb_endpoint: str,
    kafka_bootstrap: str,
    topic_prefix: str,
    unique: str,
) -> None:
    # Each container gets the environment docker-compose.aws-like.yml resolves to (with .env.example),
    # with this test's addresses, names and token key in place of compose's.
    services = resolve("aws-like")

    def environment(service: str, **ours: str) -> dict[str, str]:
        return {**services[service]["environment"], **ours}

    kafka = {"KAFKA_BOOTSTRAP_SERVERS": kafka_bootstrap, "CQRS_TOPIC_PREFIX": topic_prefix}
    dynamo = {"DYNAMODB_ENDPOINT_URL": dynamodb_endpoint, "DYNAMODB_TABLE_PREFIX": f"t{unique}-"}
    read_store = {"DATABASE_URL": cluster.dsn("localhost")}
    auth = {"CQRS_AUTH_MODE": "jwt", "JWT_SECRET": E2E_SECRET}
    (ca_volume,) = (v for v in services["projector-svc"]["volumes"] if v["source"] == "postgres-ca")
    ca_mount = (f"{cluster.ca_dir}:{ca_volume['target']}:ro",)
    publisher_spec = services["stream-publisher"]
    (probe_volume,) = publisher_spec["volumes"]
    region = services["command-svc"]["environment"]["AWS_REGION"]
    started: list[Container] = []

    def start(container: Container) -> Container:
        started.append(container.start())
        return container

    async with tables(dynamodb_endpoint, region, dynamo["DYNAMODB_TABLE_PREFIX"]):
        try:
            ready = time.monotonic()
            setup = run_once(
                engine, "cqrs-cli", environment("setup", **kafka, **read_store),
                *services["setup"]["command"], volumes=ca_mount,
            )  # fmt: skip
            assert setup.returncode == 0, setup.stdout + setup.stderr
            assert "read model shop: build 1 active and migrated" in setup.stdout

            publisher = start(
                Container(
                    engine, "command-svc", 0,
                    environment("stream-publisher", **kafka, **dynamo),
                    volumes=(f"{PROBE}:{probe_volume['target']}:ro",),
                    entrypoint=publisher_spec["entrypoint"][0],
                    args=tuple(publisher_spec["entrypoint"][1:]),
                    health_cmd=" ".join(publisher_spec["healthcheck"]["test"][1:]),
                )
            )  # fmt: skip
            command_port, projector_port, query_port = free_port(), free_port(), free_port()
            command = start(
                Container(
                    engine, "command-svc", command_port,
                    environment("command-svc", **kafka, **dynamo, **auth, COMMAND_SVC_PORT=str(command_port)),
                )
            )  # fmt: skip
            projector = start(
                Container(
                    engine, "projector-svc", projector_port,
                    environment("projector-svc", **kafka, **read_store,
                                PROJECTOR_SVC_PORT=str(projector_port)),
                    volumes=ca_mount,
                )
            )  # fmt: skip
            query = start(
                Container(
                    engine, "query-svc", query_port,
                    environment("query-svc", **read_store, **auth, QUERY_SVC_PORT=str(query_port)),
                    volumes=ca_mount,
                )
            )  # fmt: skip
            for container in (command, projector, query):
                container.wait_ready()
            publisher.wait_healthy()
            print(f"\naws-like images ready {time.monotonic() - ready:.1f} s after setup started")

            customer = f"c-{uuid.uuid4().hex[:8]}"
            async with httpx.AsyncClient(timeout=30) as client:
                registration: dict[str, Any] = {
                    "command_id": str(uuid.uuid4()),
                    "type": "RegisterCustomer",
                    "aggregate_id": customer,
                    "payload": {"name": "Ada", "email": "ada@example.com"},
                }
                accepted = await client.post(
                    f"{command.url}/v1/commands", json=registration, headers=bearer("customers:write")
                )
                assert accepted.status_code == 200, accepted.text
                token = accepted.json()["consistency_token"]
                # Waits on the consistency token (at most 10 s a request), a few times over: moto's
                # stream is read a shard at a time, and the first read of a new shard takes a while.
                deadline = time.monotonic() + 60
                while True:
                    read = await client.get(
                        f"{query.url}/v1/customers/{customer}",
                        params={"after": token, "max_wait_ms": "10000"},
                        headers=bearer("customers:read"),
                    )
                    if read.status_code == 200 or time.monotonic() > deadline:
                        break
            assert read.status_code == 200, f"{read.text}\n{publisher.logs()}"
            assert (read.json()["name"], read.json()["version"]) == ("Ada", 1)

            # Every session the services hold on the read store is TLS (the rules admit nothing else).
            admin = await asyncpg.connect(
                host=str(cluster.server.directory), port=cluster.server.port, user="postgres"
            )
            try:
                sessions = await admin.fetch(
                    "SELECT a.application_name, s.ssl FROM pg_stat_activity a JOIN pg_stat_ssl s USING (pid)"
                    " WHERE a.backend_type = 'client backend' AND a.pid <> pg_backend_pid()"
                )
            finally:
                await admin.close()
            assert sessions and all(s["ssl"] for s in sessions), sessions
            for container in (publisher, command, projector, query):
                assert container.inspect()["Config"]["User"] == "10001:10001"
        finally:
            for container in started:
                container.remove()
