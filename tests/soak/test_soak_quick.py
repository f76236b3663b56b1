"""The quick soak: each fault kind once under an open-loop load, on a private stack, in under 5 minutes.

It runs `python -m soak --quick` as a process (its own private Kafka, PostgreSQL and FerretDB, so
nothing here touches the servers other tests use) and asserts on the report the checker wrote, which
stays in bench/results/soak-<time>/. `make soak` runs the same harness for 30 minutes.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from soak.config import REPO_ROOT

pytestmark = [pytest.mark.integration, pytest.mark.e2e]

#: Fixed, so a failure can be replayed with `python -m soak --quick --seed <seed>`; SOAK_SEED overrides.
SEED = int(os.environ.get("SOAK_SEED", "20261130"))
QUICK_LIMIT_S = 300
#: A failing system makes every fault wait out its recovery give-up: let the run finish its report.
RUN_LIMIT_S = 540


def run_quick_soak() -> tuple[int, str]:
    """Exit status and output of the quick soak; on overrun it gets SIGTERM and tears its stack down."""
    argv = [sys.executable, "-m", "soak", "--quick", "--seed", str(SEED)]
    with subprocess.Popen(
        argv, cwd=REPO_ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    ) as process:
        try:
            output, _ = process.communicate(timeout=RUN_LIMIT_S)
        except subprocess.TimeoutExpired:
            process.terminate()
            output, _ = process.communicate(timeout=90)
        return process.returncode, output


@pytest.mark.timeout(RUN_LIMIT_S + 120)
def test_quick_soak_reports_zero_violations_within_five_minutes() -> None:
    status, output = run_quick_soak()
    print(output[-30_000:])
    started = re.search(r"results in (\S+)", output)
    assert started is not None, f"the soak did not start (exit status {status})"
    report_file = Path(started.group(1)) / "report.json"
    assert report_file.exists(), f"no report (exit status {status})"
    report = json.loads(report_file.read_text())

    kinds = {fault["fault"]["kind"] for fault in report["faults"]}
    assert kinds >= {"kill", "stop", "crash", "restart", "cut"}, kinds
    assert report["violations"] == [], json.dumps(report["violations"], indent=2)[:20_000]
    assert status == 0
    assert report["wall_s"] < QUICK_LIMIT_S, f"the quick soak took {report['wall_s']} s"
