"""`python -m soak --minutes 30 --seed N` (full) or `python -m soak --quick` (under 5 minutes).

Exit status: 0 with zero violations, 1 with any, 2 when the run was interrupted.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import random
import signal
import sys
from pathlib import Path

from soak.config import SoakConfig, Thresholds
from soak.report import Report
from soak.run import run_soak, say


def parse(argv: list[str]) -> SoakConfig:
    parser = argparse.ArgumentParser(prog="python -m soak", description=__doc__)
    add = parser.add_argument
    add("--seed", type=int, default=None, help="fault schedule and workload seed (default: random)")
    add("--minutes", type=float, default=30.0, help="length of the fault phase of a full run")
    add("--quick", action="store_true", help="each fault kind once, under 5 minutes")
    add("--no-faults", action="store_true", help="a baseline: the same load and checks, no faults")
    add("--rate", type=float, default=None, help="commands per second over both doors")
    add("--results", type=Path, default=None, help="parent of the soak-<time> results directory")
    add("--keep-stack", action="store_true", help="keep the private stack's data for inspection")
    add("--max-recovery", type=float, default=10.0, help="seconds allowed to recover from a fault")
    add(
        "--max-convergence", type=float, default=30.0, help="seconds allowed to converge after the last fault"
    )
    args = parser.parse_args(argv)
    seed = args.seed if args.seed is not None else random.randrange(1_000_000)
    config = SoakConfig.quick_mode(seed) if args.quick else SoakConfig(seed=seed, minutes=args.minutes)
    config = dataclasses.replace(
        config,
        keep_stack=args.keep_stack,
        no_faults=args.no_faults,
        thresholds=Thresholds(recovery_s=args.max_recovery, convergence_s=args.max_convergence),
    )
    if args.rate is not None:
        config = dataclasses.replace(config, command_rate=args.rate)
    if args.results is not None:
        config = dataclasses.replace(config, results_root=args.results)
    return config


async def _run(config: SoakConfig) -> tuple[Report, Path]:
    # SIGTERM (a CI timeout, `kill`) cancels the run like Ctrl-C does, so the private stack is torn down.
    main_task = asyncio.current_task()
    assert main_task is not None  # always inside asyncio.run
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, main_task.cancel)
    return await run_soak(config)


def main(argv: list[str] | None = None) -> int:
    config = parse(sys.argv[1:] if argv is None else argv)
    try:
        report, run_dir = asyncio.run(_run(config))
    except (KeyboardInterrupt, asyncio.CancelledError):
        say("interrupted; the private stack was stopped")
        return 2
    print(report.to_text())
    say(f"report: {run_dir / 'report.txt'} and {run_dir / 'report.json'}")
    return 0 if report.passed else 1


if __name__ == "__main__":
    sys.exit(main())
