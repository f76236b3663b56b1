"""Open-loop load: requests at a constant arrival rate, stepped upward, from a process of its own.

Request i of a step is due at `start + i / rate`, whether or not earlier ones were answered, and its
latency counts from that due time: a slow answer cannot lower the offered load or hide the wait of
the requests queued behind it (no coordinated omission). The generator runs in its own process
(`python -m bench.openloop`, started by `run_generator`) so its CPU is neither the service's nor
the orchestrator's, and it is counted on its own.

Protocol on stdout, one JSON object a line: `{"event": "step", "index": i}` when step i starts
(the orchestrator samples CPU there), then `{"event": "done", "steps": [...], "extra": {...}}`.
A step that cannot keep up (answers < 90 % of offered, or the backlog growing) ends the ladder.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import sys
import time
from dataclasses import dataclass, field
from typing import Any

import uvloop

from bench.load_targets import TARGETS, Target

#: A backlog growing faster than this share of the offered rate per second is "growing".
LAG_GROWTH_SHARE = 0.05
WARM_UP_SECONDS = 1.0
#: The ladder stops once this many seconds of arrivals are outstanding.
MAX_BACKLOG_SECONDS = 2.0


@dataclass
class StepRecord:
    rate: float
    seconds: float
    #: When the step's window closes (perf_counter); answers after it do not count as throughput.
    ends: float = 0.0
    sent: int = 0
    ok: int = 0
    ok_in_window: int = 0
    errors: int = 0
    latencies: list[float] = field(default_factory=list)
    backlog: list[tuple[float, int]] = field(default_factory=list)

    def summary(self) -> dict[str, Any]:
        cuts = statistics.quantiles(self.latencies, n=100) if len(self.latencies) > 1 else [0.0] * 99
        slope = _slope(self.backlog)
        return {
            "offered_per_s": self.rate,
            "seconds": self.seconds,
            "sent": self.sent,
            "ok": self.ok,
            "errors": self.errors,
            "unfinished": self.sent - self.ok - self.errors,
            # The step's own arrivals answered before it ended, per second: what the system kept
            # up with (`ok` also counts answers that came during the drain).
            "throughput_per_s": self.ok_in_window / self.seconds,
            "error_share": self.errors / self.sent if self.sent else 0.0,
            "p50_ms": cuts[49] * 1000,
            "p90_ms": cuts[89] * 1000,
            "p99_ms": cuts[98] * 1000,
            "max_ms": max(self.latencies, default=0.0) * 1000,
            "backlog_slope_per_s": slope,
            "lag_growing": slope > LAG_GROWTH_SHARE * self.rate,
        }


def _slope(points: list[tuple[float, int]]) -> float:
    """Least-squares growth per second of the outstanding requests sampled during a step."""
    if len(points) < 3:
        return 0.0
    xs, ys = [p[0] for p in points], [float(p[1]) for p in points]
    mx, my = statistics.fmean(xs), statistics.fmean(ys)
    den = sum((x - mx) ** 2 for x in xs)
    return sum((x - mx) * (y - my) for x, y in zip(xs, ys, strict=True)) / den if den else 0.0


def _emit(message: dict[str, Any]) -> None:
    sys.stdout.write(json.dumps(message) + "\n")
    sys.stdout.flush()


async def _one(target: Target, record: StepRecord, step: int, index: int, due: float) -> None:
    try:
        ok = await target.call(step, index)
    except Exception:  # noqa: BLE001  # any failure of one request is one error, counted
        ok = False
    if ok:
        done = time.perf_counter()
        record.ok += 1
        record.ok_in_window += done <= record.ends
        record.latencies.append(done - due)
    else:
        record.errors += 1


async def run_ladder(
    target: Target, rates: list[float], seconds: float, drain: float
) -> list[dict[str, Any]]:
    """Offer each rate for `seconds`; stop after the first step that cannot keep up."""
    records: list[StepRecord] = []
    tasks: set[asyncio.Task[None]] = set()
    index = 0
    # A first, unrecorded second at the lowest rate: connections, statement caches and the
    # service's first-request costs are paid before any figure counts.
    for step, rate, duration in [
        (-1, rates[0], WARM_UP_SECONDS),
        *((i, r, seconds) for i, r in enumerate(rates)),
    ]:
        record = StepRecord(rate, duration)
        if step >= 0:
            records.append(record)
            _emit({"event": "step", "index": step})
        start = time.perf_counter()
        record.ends = start + duration
        total = int(rate * duration)
        next_sample = start
        for i in range(total):
            due = start + i / rate
            now = time.perf_counter()
            if due > now:
                await asyncio.sleep(due - now)
            task = asyncio.create_task(_one(target, record, step, index, due))
            tasks.add(task)
            task.add_done_callback(tasks.discard)
            record.sent += 1
            index += 1
            if due >= next_sample:
                record.backlog.append((due - start, record.sent - record.ok - record.errors))
                next_sample += 0.1
        behind = record.sent - record.ok - record.errors
        if step >= 0 and (behind > rate * MAX_BACKLOG_SECONDS or record.ok < 0.9 * record.sent - rate * 0.5):
            break
    _emit({"event": "step", "index": len(records)})
    if tasks:
        await asyncio.wait(tasks, timeout=drain)
    return [r.summary() for r in records]


async def generate(target_name: str, config: dict[str, Any], rates: list[float], seconds: float) -> None:
    target = TARGETS[target_name](config)
    await target.start()
    try:
        steps = await run_ladder(target, rates, seconds, drain=float(config.get("drain_seconds", 5.0)))
        extra = await target.finish(steps)
    finally:
        await target.stop()
    _emit({"event": "done", "steps": steps, "extra": extra})


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("target", choices=sorted(TARGETS))
    parser.add_argument("--rates", required=True, help="comma-separated arrivals per second")
    parser.add_argument("--seconds", type=float, default=3.0, help="per step")
    args = parser.parse_args()
    config = json.loads(sys.stdin.readline())  # secrets and DSNs travel on stdin, not in argv
    rates = [float(r) for r in args.rates.split(",")]
    # uvloop: the generator's own CPU per request is lower, so more of the cores go to the service.
    uvloop.run(generate(args.target, config, rates, args.seconds))


if __name__ == "__main__":
    main()
