"""B2's budget: where the time between a command's Kafka ack and its row's notification goes.

The real command-svc (FerretDB write store) and projector-svc run with tracing on, exporting to an
in-process OTLP collector; the bench produces commands onto the topic door at a constant rate, each
with a sampled `traceparent` of its own, and listens for the projector's NOTIFY. The spans the
services already make give every stage's boundaries (wall clock, one machine, one clock):

  ack -> door span start                 Kafka -> command-svc: the topic door's fetch wait
  door start -> "store commit" start     queue, validation, authorization, decision
  "store commit"                         the write store's insert
  store end -> publish span start        relay hand-over (in memory; the scan only recovers)
  publish span                           Kafka produce of the events, until acknowledged
  publish end -> projector batch start   Kafka -> projector: its fetch wait
  batch start -> NOTIFY seen             decode, fold, upsert, offsets, commit (PostgreSQL sends the
                                         NOTIFY at commit, before the batch span ends)

The query itself is B3's point read (a NOTIFY listener is what a live stream or a consistency
wait wakes on). command-svc samples only the bench's traces (`parentbased_traceidratio` 0), the
projector every batch (a batch span is a root with links); tracing costs about 1 ms of CPU per
command, so the budget's total runs a little above the untraced B2 figure at the same rate.
Run: `python -m bench.staleness_budget --rate 100 --seconds 10` (or as the `staleness` suite).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import secrets
import statistics
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

import asyncpg
from aiokafka import AIOKafkaProducer

from bench.command_bench import BOOTSTRAP, bench_token, command_record
from bench.suite_commands import start_services
from cqrs_shared.read_models.notifications import CHANNEL, decode
from cqrs_shared.testing.otlp_collector import OtlpCollector, ReceivedSpan
from cqrs_shared.testing.postgres import fresh_database
from cqrs_shared.testing.service_processes import ServiceProcess
from cqrs_shared.topics import TopicNames

#: command-svc traces only the commands the bench sent with a sampled traceparent.
COMMAND_SAMPLING = {"OTEL_TRACES_SAMPLER": "parentbased_traceidratio", "OTEL_TRACES_SAMPLER_ARG": "0"}
ADMIN_DSN = os.environ.get("DATABASE_URL", "postgresql://cqrs:cqrs@127.0.0.1:5432/cqrs")
#: The stages in the order a command passes them: (name, start boundary, end boundary).
STAGES = (
    ("Kafka -> command-svc (door fetch)", "acked", "door_start"),
    ("queue + validate + authorize + decide", "door_start", "store_start"),
    ("write store insert", "store_start", "store_end"),
    ("relay hand-over", "store_end", "publish_start"),
    ("Kafka produce of the events", "publish_start", "publish_end"),
    ("Kafka -> projector (fetch)", "publish_end", "batch_start"),
    ("projector transaction until NOTIFY seen", "batch_start", "visible"),
)
TOTAL = ("total: ack -> NOTIFY seen", "acked", "visible")


@dataclass
class Sent:
    aggregate: str
    trace_id: str
    acked: int = 0
    visible: int = 0


def boundaries(
    sent: Sent, by_trace: dict[str, list[ReceivedSpan]], batches: list[ReceivedSpan]
) -> dict[str, int]:
    """One command's stage boundaries (ns) from its trace's spans and the batch span linking to its
    publish span; empty when a span is missing (not exported, or the command was not handled)."""
    spans = by_trace.get(sent.trace_id, [])
    door = next((s for s in spans if s.kind == "CONSUMER" and s.service.startswith("command")), None)
    store = next((s for s in spans if s.name == "store commit"), None)
    publish = next((s for s in spans if s.kind == "PRODUCER" and s.name.startswith("publish ")), None)
    if door is None or store is None or publish is None or not sent.visible:
        return {}
    # The batch whose commit sent the NOTIFY seen: the last one to start before it (a later one
    # would be a redelivery's).
    linked = [
        b for b in batches if (sent.trace_id, publish.span_id) in b.links and b.start_ns <= sent.visible
    ]
    if not linked:
        return {}
    batch = max(linked, key=lambda b: b.start_ns)
    return {
        "acked": sent.acked,
        "door_start": door.start_ns,
        "store_start": store.start_ns,
        "store_end": store.end_ns,
        "publish_start": publish.start_ns,
        "publish_end": publish.end_ns,
        "batch_start": batch.start_ns,
        "visible": sent.visible,
    }


def percentiles(values_ms: list[float]) -> dict[str, float]:
    cuts = (
        statistics.quantiles(values_ms, n=100)
        if len(values_ms) > 1
        else [values_ms[0] if values_ms else 0.0] * 99
    )
    return {"p50_ms": cuts[49], "p90_ms": cuts[89], "p99_ms": cuts[98], "max_ms": max(values_ms, default=0.0)}


def budget(rows: list[dict[str, int]]) -> list[dict[str, Any]]:
    """Per stage, its p50/p90/p99/max over the commands with every boundary known."""
    out = []
    for name, start, end in (*STAGES, TOTAL):
        values = [(row[end] - row[start]) / 1e6 for row in rows]
        out.append({"stage": name, **percentiles(values)})
    return out


def _traceparent() -> tuple[str, str]:
    trace_id = secrets.token_hex(16)
    return trace_id, f"00-{trace_id}-{secrets.token_hex(8)}-01"


@asynccontextmanager
async def traced_pipeline(
    collector: OtlpCollector,
) -> AsyncIterator[tuple[TopicNames, str, list[ServiceProcess]]]:
    """A fresh database and topic prefix, with command-svc and projector-svc exporting spans."""
    prefix = f"benchb2{uuid.uuid4().hex[:6]}."
    async with fresh_database(ADMIN_DSN, f"bench_{uuid.uuid4().hex[:8]}") as dsn:
        processes: list[ServiceProcess] = []
        try:
            processes += await start_services(
                prefix,
                dsn,
                extra_env=collector.env(),
                projector_env={"OTEL_TRACES_SAMPLER": "always_on"},
                command_env={
                    "OTEL_TRACES_SAMPLER": "parentbased_traceidratio",
                    "OTEL_TRACES_SAMPLER_ARG": "0",
                },
                log_name="bench-b2",
            )
            yield TopicNames(prefix), dsn, processes
        finally:
            for process in processes:
                process.stop()


async def send_at_rate(topics: TopicNames, dsn: str, rate: float, seconds: float) -> list[Sent]:
    """Register one new customer every 1/rate s (open loop), each under its own sampled trace; each
    one's Kafka ack and NOTIFY times (wall clock, ns)."""
    run = uuid.uuid4().hex[:6]
    sent: dict[str, Sent] = {}
    seen: list[Sent] = []
    listener = await asyncpg.connect(dsn)

    all_visible = asyncio.Event()
    count = int(rate * seconds)

    def on_notify(_c: object, _pid: int, _channel: str, payload: object) -> None:
        now = time.time_ns()
        notification = decode(str(payload))
        for change in notification.changes if notification else ():
            one = sent.get(change.aggregate_id)
            if one is not None and not one.visible:
                one.visible = now
                seen.append(one)
        if len(seen) == count:
            all_visible.set()

    await listener.add_listener(CHANNEL, on_notify)
    producer = AIOKafkaProducer(bootstrap_servers=BOOTSTRAP, linger_ms=2, acks="all", enable_idempotence=True)
    await producer.start()
    authorization = f"Bearer {bench_token()}".encode()

    async def one(index: int) -> None:
        aggregate = f"{run}-{index}"
        trace_id, traceparent = _traceparent()
        record = Sent(aggregate, trace_id)
        sent[aggregate] = record
        body = command_record(
            "RegisterCustomer", aggregate, {"name": "Bench", "email": f"{aggregate}@example.com"}
        )
        delivery = await producer.send(
            topics.commands,
            json.dumps(body).encode(),
            key=aggregate.encode(),
            headers=[("authorization", authorization), ("traceparent", traceparent.encode())],
        )
        await delivery
        record.acked = time.time_ns()

    try:
        started = time.perf_counter()
        tasks = []
        for index in range(count):
            await asyncio.sleep(max(0.0, started + index / rate - time.perf_counter()))
            tasks.append(asyncio.create_task(one(index)))
        await asyncio.gather(*tasks)
        with contextlib.suppress(TimeoutError):  # what never became visible counts as such
            async with asyncio.timeout(15):
                await all_visible.wait()
    finally:
        await producer.stop()
        await listener.close()
    return list(sent.values())


def _by_trace(spans: list[ReceivedSpan]) -> dict[str, list[ReceivedSpan]]:
    out: dict[str, list[ReceivedSpan]] = {}
    for s in spans:
        out.setdefault(s.trace_id, []).append(s)
    return out


def _batches(spans: list[ReceivedSpan]) -> Iterator[ReceivedSpan]:
    return (s for s in spans if s.kind == "CONSUMER" and s.service.startswith("projector") and s.links)


async def measure(rate: float, seconds: float) -> dict[str, Any]:
    with OtlpCollector() as collector:
        async with traced_pipeline(collector) as (topics, dsn, _processes):
            await send_at_rate(topics, dsn, 5.0, 2.0)  # warm-up: connections, caches, first fetches
            commands = await send_at_rate(topics, dsn, rate, seconds)
            wanted = {c.trace_id for c in commands if c.visible}

            def arrived(spans: list[ReceivedSpan]) -> bool:
                published = {
                    s.trace_id for s in spans if s.kind == "PRODUCER" and s.name.startswith("publish ")
                }
                return wanted <= published

            await collector.wait_for(arrived, within=20)
            await asyncio.sleep(1.0)  # the projector's batch spans follow the publish spans
            spans = collector.received()
    by_trace, batches = _by_trace(spans), list(_batches(spans))
    rows = [row for c in commands if (row := boundaries(c, by_trace, batches))]
    return {
        "rate_per_s": rate,
        "seconds": seconds,
        "sent": len(commands),
        "visible": sum(1 for c in commands if c.visible),
        "traced": len(rows),
        "stages": budget(rows) if rows else [],
    }


def table(result: dict[str, Any]) -> str:
    lines = [
        f"B2 budget at {result['rate_per_s']:g} commands/s for {result['seconds']:g} s: "
        f"{result['traced']} of {result['sent']} commands traced end to end ({result['visible']} visible)",
        "| stage | p50 ms | p90 ms | p99 ms | max ms |",
        "|---|---|---|---|---|",
    ]
    lines += [
        f"| {s['stage']} | {s['p50_ms']:.1f} | {s['p90_ms']:.1f} | {s['p99_ms']:.1f} | {s['max_ms']:.1f} |"
        for s in result["stages"]
    ]
    return "\n".join(lines)


async def staleness_suite(*, quick: bool, rate: float | None = None) -> dict[str, Any]:
    """The budget at `rate` (half of B1 when the commands suite ran first, else 100/s)."""
    return await measure(rate or 100.0, 5.0 if quick else 15.0)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--rate", type=float, default=100.0, help="commands per second")
    parser.add_argument("--seconds", type=float, default=10.0)
    args = parser.parse_args()
    print(table(asyncio.run(measure(args.rate, args.seconds))))


if __name__ == "__main__":
    main()
