"""What tracing costs on the command path: command-svc's topic door with tracing off and on, side by side.

Off is the default (no `OTEL_*` variables: nothing is installed, the API's no-op tracer answers).
On exports every command's spans (door, handling, decide, store write with PyMongo's spans, publish)
over OTLP/HTTP to an in-process collector, sampling everything: the worst case; "1%" samples one
trace in a hundred (`parentbased_traceidratio`), as a busy deployment would. Runs alternate (off,
on, 1%, off, ...) so that a neighbour's load on a shared machine hits all alike; the median of each
is printed with every round's figure, and command-svc's CPU time per command. Last, the off path
in process: what the tracing and log-id calls one command makes cost with tracing off, in
microseconds.
Run: `make bench-tracing` (or `uv run python -m bench.tracing_bench --commands 2000 --rounds 3`).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import time
import uuid

import httpx

from bench.command_bench import (
    bench_token,
    consume_count,
    make_commands,
    metric,
    produce,
    start_command_service,
)
from cqrs_shared.logging_setup import bind_ids, bound_ids
from cqrs_shared.testing.otlp_collector import OtlpCollector
from cqrs_shared.testing.service_processes import E2E_SECRET
from cqrs_shared.topics import TopicNames
from cqrs_shared.tracing import (
    context_from_headers,
    current_carrier,
    current_headers,
    span,
    trace_id_in_headers,
)


async def one_round(n: int, per_aggregate: int, tracing: dict[str, str]) -> tuple[float, float]:
    """(commands/s end to end, command-svc's CPU ms per command) of one fresh command-svc.

    CPU time (the process's own, exporter thread included) is the steadier figure on a machine
    other work shares: a neighbour's load stretches the wall clock, not this process's CPU."""
    prefix = f"benchtr{uuid.uuid4().hex[:6]}."
    topics = TopicNames(prefix)
    env = {k: v for k, v in os.environ.items() if not k.startswith("OTEL_")}
    env.update(
        CQRS_TOPIC_PREFIX=prefix,
        MONGODB_DATABASE=f"bench_{uuid.uuid4().hex[:8]}",
        CQRS_AUTH_MODE="jwt",
        JWT_SECRET=E2E_SECRET,
        LOG_LEVEL="WARNING",
        **tracing,
    )
    commands = make_commands(n, per_aggregate)
    service = start_command_service(env, "tracing-bench")
    try:
        async with httpx.AsyncClient(base_url=service.url, timeout=5) as client:
            cpu_before = metric((await client.get("/metrics")).text, "process_cpu_seconds_total")
            started = time.perf_counter()
            await produce(
                topics.commands,
                [(c["aggregate_id"].encode(), json.dumps(c).encode()) for c in commands],
                [("authorization", f"Bearer {bench_token()}".encode())],
            )
            await consume_count(topics.command_results, len(commands))
            total = time.perf_counter() - started
            cpu_after = metric((await client.get("/metrics")).text, "process_cpu_seconds_total")
    finally:
        service.stop()
    return len(commands) / total, 1000 * (cpu_after - cpu_before) / len(commands)


def off_path_microseconds(repeat: int = 100_000) -> float:
    """The tracing calls of one command with tracing off (as the door, the pipeline and the
    results publisher make them), in microseconds per command."""
    headers = [("authorization", b"Bearer x")]
    started = time.perf_counter()
    for _ in range(repeat):
        with (
            bind_ids(trace_id=trace_id_in_headers(headers)),
            span("door", parent=context_from_headers(headers)),
            bind_ids(correlation_id="c", causation_id=None),
            span("handle"),
        ):
            current_carrier()
            with span("decide"):
                pass
            with span("store commit"):
                pass
            current_headers()
            bound_ids()
    return (time.perf_counter() - started) / repeat * 1e6


async def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--commands", type=int, default=5000)
    parser.add_argument("--per-aggregate", type=int, default=10)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    figures: dict[str, list[tuple[float, float]]] = {"off": [], "on": [], "1%": []}
    with OtlpCollector() as collector:
        sampled = {
            **collector.env(),
            "OTEL_TRACES_SAMPLER": "parentbased_traceidratio",
            "OTEL_TRACES_SAMPLER_ARG": "0.01",
        }
        for _ in range(args.rounds):
            for mode, tracing in (("off", {}), ("on", collector.env()), ("1%", sampled)):
                figures[mode].append(await one_round(args.commands, args.per_aggregate, tracing))
        spans = len(collector.received())
    print(f"machine: {os.cpu_count()} cores; {args.commands} commands x {args.rounds} rounds per mode")
    for mode, rounds in figures.items():
        rates = ", ".join(f"{rate:.0f}" for rate, _ in rounds)
        print(
            f"tracing {mode:3}: {statistics.median(r for r, _ in rounds):7.0f} commands/s median "
            f"({rates}); command-svc CPU {statistics.median(c for _, c in rounds):5.2f} ms per command"
        )
    off, on, some = (statistics.median(c for _, c in figures[m]) for m in ("off", "on", "1%"))
    print(f"CPU per command, on / off: {on / off:.2f}; 1% / off: {some / off:.2f}; spans received: {spans}")
    print(f"off path in process: {off_path_microseconds():.2f} us of tracing calls per command")


if __name__ == "__main__":
    asyncio.run(main())
