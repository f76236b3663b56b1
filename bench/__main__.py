"""`python -m bench [--quick] [--only query,commands,staleness,projector,growth]`: figures and references.

`make bench` runs the full sizes, `make bench-quick` the small ones (under 3 minutes on 2 cores).
Each suite measures its raw references in the same run, so a ratio compares like with like even on
a machine shared with other work; CPU milliseconds per operation (all processes, from /proc) are
the figure to compare across runs. Results: bench/results/<timestamp>/ (JSON, markdown, PNG).
"""

from __future__ import annotations

import argparse
import asyncio
import time
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import Any

from bench.growth_bench import growth_suite
from bench.report import machine, write
from bench.staleness_budget import staleness_suite
from bench.suite_commands import command_suite
from bench.suite_projector import projector_suite
from bench.suite_query import query_suite

SUITES: dict[str, Callable[..., Awaitable[dict[str, Any]]]] = {
    "query": query_suite,
    "commands": command_suite,
    "staleness": staleness_suite,
    "projector": projector_suite,
    "growth": growth_suite,
}


def inputs(name: str, earlier: dict[str, Any]) -> dict[str, Any]:
    """What a suite takes from the ones before it: B2's budget runs at half of B1."""
    b1 = earlier.get("commands", {}).get("b1_commands_per_s")
    return {"rate": b1 / 2} if name == "staleness" and b1 else {}


async def run(quick: bool, only: list[str]) -> None:
    results: dict[str, Any] = {
        "started": datetime.now(UTC).isoformat(timespec="seconds"),
        "quick": quick,
        "machine": machine(),
        "suites": {},
        "seconds": {},
    }
    for name in only:
        started = time.monotonic()
        print(f"bench: {name} ...", flush=True)
        results["suites"][name] = await SUITES[name](quick=quick, **inputs(name, results["suites"]))
        results["seconds"][name] = round(time.monotonic() - started, 1)
    folder = write(results)
    print((folder / "results.md").read_text())
    print(f"results: {folder}")


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--quick", action="store_true", help="small sizes, under 3 minutes")
    parser.add_argument("--only", default=",".join(SUITES), help="comma-separated suites")
    args = parser.parse_args()
    asyncio.run(run(args.quick, [s for s in args.only.split(",") if s]))


if __name__ == "__main__":
    main()
