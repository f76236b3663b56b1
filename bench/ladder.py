"""Runs the open-loop generator (`bench.openloop`) in its own process and measures each step's CPU.

The orchestrator samples the CPU of every role (services, generator, visible infrastructure) when
the generator announces a step, so each step carries `cpu_ms_per_op`: CPU milliseconds of all
those processes per successful request, a figure that survives a noisy, shared machine better
than a rate does.
"""

from __future__ import annotations

import asyncio
import json
import sys
from typing import Any

from bench.proc_cpu import CpuMeter, Role, descendants


async def run_ladder(
    target: str,
    config: dict[str, Any],
    rates: list[float],
    seconds: float,
    roles: dict[str, Role],
) -> list[dict[str, Any]]:
    """The generator's per-step figures for `target`, each with CPU per role and per operation."""
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "bench.openloop", target,
        "--rates", ",".join(f"{r:g}" for r in rates), "--seconds", str(seconds),
        stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE,
    )  # fmt: skip
    if process.stdin is None or process.stdout is None:
        raise RuntimeError("the generator's pipes were not opened")
    process.stdin.write(json.dumps(config).encode() + b"\n")
    await process.stdin.drain()
    meter = CpuMeter({**roles, "generator": descendants(process.pid)})
    spent: list[dict[str, float]] = []
    result: dict[str, Any] = {}
    async for line in process.stdout:
        message = json.loads(line)
        if message["event"] == "step":
            if message["index"] > 0:
                spent.append(meter.stop())
            meter.start()
        elif message["event"] == "done":
            result = message
    if await process.wait() != 0 or not result:
        raise RuntimeError(f"the load generator for {target} failed (exit {process.returncode})")
    steps: list[dict[str, Any]] = result["steps"]
    for step, cpu in zip(steps, spent, strict=False):
        step["cpu_s"] = cpu
        step["cpu_ms_per_op"] = 1000 * cpu["total"] / step["ok"] if step["ok"] else None
    return steps
