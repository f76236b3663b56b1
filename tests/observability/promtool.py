"""promtool for the tests of the alert rules: built once (scripts/tools/promtool.sh), then run."""

from __future__ import annotations

import subprocess
from pathlib import Path

from tests.observability.metric_names import ROOT


def build_promtool() -> str:
    """The promtool binary, built from the Go module proxy when nothing built it before."""
    built = subprocess.run(
        [str(ROOT / "scripts/tools/promtool.sh")], capture_output=True, text=True, check=False, timeout=1800
    )
    assert built.returncode == 0, f"promtool could not be built:\n{built.stderr[-3000:]}"
    return built.stdout.strip()


def run(promtool: str, *args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [promtool, *args], cwd=cwd, capture_output=True, text=True, check=False, timeout=120
    )
