"""The aws-like compose stack's healthcheck of the stream publisher process
(deploy/compose/stream_publisher_alive.py), against the real process on moto: unhealthy (one line,
no traceback) without the tables, unhealthy before the publisher runs, healthy once its heartbeat is
in the leases table, unhealthy for another member's name, and unhealthy again after a SIGTERM (the
publisher leaves the member list as it hands its shards over)."""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from command_svc.write_store.dynamo_client import DynamoSettings, open_dynamodb
from command_svc.write_store.dynamo_tables import TableNames, create_tables, delete_tables
from cqrs_shared.testing.service_processes import ServiceProcess
from tests.deploy.rendering import ROOT

pytestmark = pytest.mark.integration

PROBE = ROOT / "deploy/compose/stream_publisher_alive.py"


@contextlib.asynccontextmanager
async def tables(endpoint: str, prefix: str) -> AsyncIterator[None]:
    async with contextlib.AsyncExitStack() as stack:
        admin = await open_dynamodb(DynamoSettings(endpoint_url=endpoint, table_prefix=prefix), stack)
        await create_tables(admin, TableNames(prefix), protect=False)
        try:
            yield
        finally:
            await delete_tables(admin, TableNames(prefix))


def probe(env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    """The healthcheck as compose runs it: the script, exit status 0 or not."""
    return subprocess.run(  # this interpreter and the project's script
        [sys.executable, str(PROBE)], env=env, capture_output=True, text=True, timeout=30, check=False
    )


def wait_for_probe(env: dict[str, str], publisher: ServiceProcess, seconds: float = 60.0) -> None:
    """Until the probe passes (compose's start period and retries do the same); fails on a dead process."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        assert publisher.process is not None and publisher.process.poll() is None, publisher.tail()
        if probe(env).returncode == 0:
            return
        time.sleep(0.5)
    raise AssertionError(f"the probe never passed:\n{probe(env).stderr}\n{publisher.tail()}")


async def test_the_probe_follows_the_publishers_heartbeat(
    dynamodb_endpoint: str, kafka_bootstrap: str, unique: str, tmp_path: Path
) -> None:
    env = {
        **os.environ,
        "KAFKA_BOOTSTRAP_SERVERS": kafka_bootstrap,
        "CQRS_TOPIC_PREFIX": f"t{unique}.",
        "WRITE_STORE": "dynamodb",
        "DYNAMODB_ENDPOINT_URL": dynamodb_endpoint,
        "DYNAMODB_TABLE_PREFIX": f"t{unique}-",
        "COMMAND_SVC_INSTANCE_ID": f"publisher-{unique}",
        "COMMAND_SVC_RELAY_LEASE_TTL_SECONDS": "3",
        "LOG_FORMAT": "text",
        "CQRS_AUTH_MODE": "disabled",  # the publisher takes no commands
    }
    missing = probe({**env, "DYNAMODB_TABLE_PREFIX": f"missing{unique}-"})
    assert missing.returncode == 1
    assert "leases table unreadable" in missing.stderr and "Traceback" not in missing.stderr
    async with tables(dynamodb_endpoint, f"t{unique}-"):
        before = probe(env)
        assert before.returncode == 1, before.stderr
        assert f"'publisher-{unique}' has no live heartbeat" in before.stderr
        publisher = ServiceProcess(
            "command_svc.stream_publishing", 0, env, tmp_path / "publisher.log"
        ).start()
        try:
            wait_for_probe(env, publisher)
            other = probe({**env, "COMMAND_SVC_INSTANCE_ID": "someone-else"})
            assert other.returncode == 1
            assert f"publisher-{unique}" in other.stderr  # the live list it saw
        finally:
            assert publisher.stop() == 0, publisher.tail()
        after = probe(env)
        assert after.returncode == 1, after.stderr
