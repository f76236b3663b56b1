"""B4 and the projector's staleness, from `bench.projector_bench`, with the raw upsert beside them.

The projector's own figures (steady drain of a backlog by the live process, the rebuild through
the CLI under a live load of 250 events/s with the live staleness before and during it) and the
raw limits (bare consume, envelope decode, set-based `unnest` upsert) come from one
run of that benchmark; this suite adds the ratios the issue sets targets for and the CPU of the
whole run (this process and its children, the projector and the CLI included, plus PostgreSQL).
"""

from __future__ import annotations

import os
from typing import Any

from bench.proc_cpu import CpuMeter, descendants, infra_pids
from bench.projector_bench import measure, percentile

REBUILD_TARGET = 50_000.0


async def projector_suite(*, quick: bool) -> dict[str, Any]:
    events = 10_000 if quick else 100_000
    meter = CpuMeter({"bench": lambda: descendants(os.getpid()), "infra": infra_pids})
    meter.start()
    figures = await measure(events, 500, 3.0 if quick else 10.0)
    cpu = meter.stop()
    visible, raw = figures["lag"]["visible"], figures["lag"]["raw"]
    backlog = events - 200  # the drain's warm-up events are not in its rate
    rebuild = figures["rebuild"]
    return {
        "events": events,
        "steady_events_per_s": figures["steady"],
        "steady_cpu_ms_per_event": {r: 1000 * s / backlog for r, s in figures["steady_cpu"].items()},
        "rebuild_events_per_s": rebuild["rebuild_events_per_s"],
        "rebuild_applied": rebuild["rebuild_applied"],
        "rebuild_line": rebuild["rebuild_line"],
        "rebuild_progress": rebuild["progress"],
        "rebuild_live_rate": rebuild["live_rate"],
        "rebuild_staleness_before": rebuild["staleness_before"],
        "rebuild_staleness_during": rebuild["staleness_during"],
        "rebuild_staleness_p50_ratio": rebuild["staleness_p50_ratio"],
        "rebuild_staleness_p99_ratio": rebuild["staleness_p99_ratio"],
        "raw_consume_per_s": figures["consume"],
        "raw_decode_per_s": figures["decode"],
        "raw_upsert_rows_per_s": figures["insert"],
        "steady_over_upsert": figures["steady"] / figures["insert"],
        "rebuild_over_target": rebuild["rebuild_events_per_s"] / REBUILD_TARGET,
        "staleness_rate": figures["rate"],
        "visible_p50_ms": percentile(visible, 0.5) if visible else None,
        "visible_p99_ms": percentile(visible, 0.99) if visible else None,
        "raw_consume_p50_ms": percentile(raw, 0.5) if raw else None,
        "cpu_s_whole_run": cpu,
    }
