"""B1 and B2, the command path, with its references measured in the same run.

References: raw Kafka produce and consume of real command and event envelopes; the raw store calls
of one accepted command at command-svc's batch concurrency; R5 (`bench.reference.null_pipeline`).
B1: command-svc (FerretDB write store) and the projector run as real processes; the open-loop
generator registers new customers at stepped rates. A step passes when every accepted command was
projected, the backlog did not grow and errors stayed under 0.1 %; B1 is the highest passing rate.
B2: Kafka ack of the command -> its row visible (the projector's NOTIFY), per step.
"""

from __future__ import annotations

import json
import os
import tempfile
import uuid
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import asyncpg

from bench.command_bench import (
    BOOTSTRAP,
    MONGODB_URI,
    bench_token,
    make_commands,
    produce,
    raw_kafka,
    raw_store,
    start_command_service,
)
from bench.ladder import run_ladder
from bench.proc_cpu import Role, infra_pids
from bench.reference.null_pipeline import run_null_pipeline
from cqrs_shared.envelopes import EventEnvelope, utc_now
from cqrs_shared.testing.postgres import drop_database
from cqrs_shared.testing.service_processes import E2E_SECRET, ServiceProcess, free_port
from cqrs_shared.topics import TopicNames, ensure_topics
from projector_svc.operations import prepare_topics
from projector_svc.settings import ProjectorSettings

ADMIN_DSN = os.environ.get("DATABASE_URL", "postgresql://cqrs:cqrs@127.0.0.1:5432/cqrs")
#: command-svc's default `batch_concurrency`: the raw store runs at the service's concurrency.
SERVICE_CONCURRENCY = 32
MAX_ERROR_SHARE = 0.001


def passes(step: dict[str, Any]) -> bool:
    """B1's rule for one step: all accepted were projected, no growing lag, errors under 0.1 %."""
    return (
        step["accepted"] == step["projected"]
        and step["accepted"] == step["sent"] - step["errors"]
        and not step["lag_growing"]
        and step["error_share"] < MAX_ERROR_SHARE
    )


def _event_sample() -> bytes:
    event = EventEnvelope(
        event_id=EventEnvelope.id_for("customer", "c-1", 1), type="CustomerRegistered", schema_version=1,
        aggregate_type="customer", aggregate_id="c-1", version=1, occurred_at=utc_now(),
        correlation_id=str(uuid.uuid4()), causation_id=str(uuid.uuid4()),
        payload={"name": "Bench", "email": "c-1@example.com"},
    )  # fmt: skip
    return event.model_dump_json().encode()


async def references(count: int) -> dict[str, float]:
    command = json.dumps(make_commands(1, 1)[0]).encode()
    produce_commands, consume_commands = await raw_kafka(count * 4, command)
    produce_events, consume_events = await raw_kafka(count * 4, _event_sample())
    serial, concurrent = await raw_store(min(count, 2000), SERVICE_CONCURRENCY)
    # R5 reads only through indexes (as the service's store does), so its rate no longer falls
    # with its own history: it drains the full size.
    r5 = await _null_pipeline(count, read_heads=True)
    r5_no_head_reads = await _null_pipeline(count, read_heads=False)
    return {
        "kafka_produce_commands_per_s": produce_commands,
        "kafka_consume_commands_per_s": consume_commands,
        "kafka_produce_events_per_s": produce_events,
        "kafka_consume_events_per_s": consume_events,
        "store_serial_commands_per_s": serial,
        f"store_concurrency_{SERVICE_CONCURRENCY}_commands_per_s": concurrent,
        "r5_commands_per_s": r5,
        "r5_no_head_reads_commands_per_s": r5_no_head_reads,
    }


async def _null_pipeline(count: int, *, read_heads: bool) -> float:
    topics = TopicNames(f"benchr5{uuid.uuid4().hex[:6]}.")
    names = [topics.commands, topics.command_results, topics.events("customer")]
    await ensure_topics(BOOTSTRAP, names, partitions=3, replication_factor=1)
    commands = make_commands(count, 1)
    await produce(
        topics.commands, [(c["aggregate_id"].encode(), json.dumps(c).encode()) for c in commands], []
    )
    return await run_null_pipeline(BOOTSTRAP, MONGODB_URI, topics, len(commands), read_heads=read_heads)


async def start_services(
    prefix: str,
    dsn: str,
    *,
    extra_env: dict[str, str] | None = None,
    command_env: dict[str, str] | None = None,
    projector_env: dict[str, str] | None = None,
    log_name: str = "bench-b1",
) -> tuple[ServiceProcess, ServiceProcess]:
    """command-svc (FerretDB store, JWT) and the projector on `prefix` and `dsn`, both ready; the
    `*_env` variables go to one of them, `extra_env` to both."""
    env = {
        **os.environ,
        **(extra_env or {}),
        "CQRS_TOPIC_PREFIX": prefix,
        "DATABASE_URL": dsn,
        "MONGODB_DATABASE": f"bench_{uuid.uuid4().hex[:8]}",
        "CQRS_AUTH_MODE": "jwt",
        "JWT_SECRET": E2E_SECRET,
        "LOG_LEVEL": "WARNING",
    }
    settings = ProjectorSettings(database_url=dsn, topic_prefix=prefix, kafka_bootstrap_servers=BOOTSTRAP)
    await prepare_topics(settings, "shop")
    port = free_port()
    log = Path(tempfile.gettempdir()) / f"{log_name}-projector-{port}.log"
    projector_env = {**env, **(projector_env or {}), "PROJECTOR_SVC_PORT": str(port)}
    projector = ServiceProcess("projector_svc", port, projector_env, log).start()
    try:
        projector.wait_ready()
        return start_command_service({**env, **(command_env or {})}, log_name), projector
    except BaseException:
        projector.stop()
        raise


async def command_suite(*, quick: bool) -> dict[str, Any]:
    reference = await references(2000 if quick else 10_000)
    # The ladder stops at the first step that fails, so the upper steps cost nothing once B1 is found.
    quick_rates = [50.0, 100.0, 200.0, 400.0, 600.0, 800.0]
    rates = quick_rates if quick else [50.0, 100.0, 200.0, 300.0, 400.0, 600.0, 800.0, 1000.0, 1200.0, 1600.0]
    prefix = f"bench{uuid.uuid4().hex[:6]}."
    database = f"bench_{uuid.uuid4().hex[:8]}"
    admin = await asyncpg.connect(ADMIN_DSN)
    await admin.execute(f'CREATE DATABASE "{database}"')
    dsn = urlunsplit(urlsplit(ADMIN_DSN)._replace(path=f"/{database}"))
    commands, projector = await start_services(prefix, dsn)
    try:
        config = {"bootstrap": BOOTSTRAP, "prefix": prefix, "dsn": dsn, "token": bench_token()}
        roles: dict[str, Role] = {
            "command_svc": [commands.process.pid] if commands.process else [],
            "projector": [projector.process.pid] if projector.process else [],
            "infra": infra_pids,
        }
        ladder = await run_ladder("commands", config, rates, 3.0 if quick else 6.0, roles)
    finally:
        commands.stop()
        projector.stop()
        await admin.close()
        await drop_database(ADMIN_DSN, database)
    for step in ladder:
        step["passes"] = passes(step)
    passing = [s["offered_per_s"] for s in ladder if s["passes"]]
    b1 = max(passing, default=0.0)
    half = min(ladder, key=lambda s: abs(s["offered_per_s"] - b1 / 2)) if ladder else {}
    return {
        "references": reference,
        "ladder": ladder,
        "b1_commands_per_s": b1,
        "b1_over_r5": b1 / reference["r5_commands_per_s"],
        "b1_over_r5_no_head_reads": b1 / reference["r5_no_head_reads_commands_per_s"],
        "b2_at_rate": half.get("offered_per_s"),
        "b2_visible_p50_ms": half.get("visible_p50_ms"),
        "b2_visible_p99_ms": half.get("visible_p99_ms"),
    }
