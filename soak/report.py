"""The soak's report: a readable summary on stdout and `report.txt`, everything in `report.json`."""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from soak.checker import Violation
from soak.config import SoakConfig
from soak.faults import Fault
from soak.recovery import Recovery
from soak.services import Incident


@dataclass
class FaultOutcome:
    fault: Fault
    at_s: float
    #: From injecting the fault to its end (a restart returned, a pause or cut ended).
    duration_s: float
    recovery: Recovery | None = None
    error: str | None = None


@dataclass
class Report:
    config: SoakConfig
    started: str
    schedule: list[Fault]
    faults: list[FaultOutcome] = field(default_factory=list)
    violations: list[Violation] = field(default_factory=list)
    convergence_s: float | None = None
    convergence_state: str = ""
    incidents: list[Incident] = field(default_factory=list)
    load: dict[str, Any] = field(default_factory=dict)
    observed: dict[str, Any] = field(default_factory=dict)
    wall_s: float = 0.0

    def judge_timing(self) -> None:
        """Recovery and convergence beyond the thresholds are violations like the others."""
        limit = self.config.thresholds.recovery_s
        slow = []
        for outcome in self.faults:
            recovery = outcome.recovery
            if outcome.error is not None:
                slow.append(f"{outcome.fault.describe()}: the fault itself failed: {outcome.error}")
            elif recovery is None or recovery.total_s is None:
                missing = ", ".join(recovery.missing()) if recovery else "not measured"
                slow.append(f"{outcome.fault.describe()}: not recovered ({missing})")
            elif recovery.total_s > limit:
                slow.append(f"{outcome.fault.describe()}: recovered after {recovery.total_s:.1f} s")
        if slow:
            self.violations.append(Violation(f"recovery_over_{limit:g}s", len(slow), slow))
        if self.convergence_s is None or self.convergence_s > self.config.thresholds.convergence_s:
            detail = (
                f"converged {self.convergence_s} s after the last fault"
                if self.convergence_s is not None
                else f"not converged: {self.convergence_state}"
            )
            self.violations.append(
                Violation(f"convergence_over_{self.config.thresholds.convergence_s:g}s", 1, [detail])
            )

    @property
    def passed(self) -> bool:
        return not self.violations

    def to_json(self) -> str:
        body = asdict(self)
        body["config"] = {k: str(v) if isinstance(v, Path) else v for k, v in body["config"].items()}
        body["passed"] = self.passed
        body["schedule"] = [f.describe() for f in self.schedule]
        for outcome, raw in zip(self.faults, body["faults"], strict=True):
            raw["description"] = outcome.fault.describe()
            raw["recovery_total_s"] = outcome.recovery.total_s if outcome.recovery else None
        return json.dumps(body, indent=2, default=str)

    def to_text(self) -> str:
        lines = [
            f"soak {'quick' if self.config.quick else 'full'} run, seed {self.config.seed}, "
            f"started {self.started}, {self.wall_s:.0f} s wall",
            f"load: {self.load.get('summary', '')}",
            "",
            "faults, how long each lasted, then its recovery (s after it ended):",
        ]
        for outcome in self.faults:
            r = outcome.recovery
            figures = f"{r.total_s} s: {r.describe()}" if r else "-"
            error = f" ERROR {outcome.error}" if outcome.error else ""
            at = f"+{outcome.at_s:.0f}s"
            lines.append(
                f"  {at:>7} {outcome.fault.describe():48} {outcome.duration_s:5.1f}s  {figures}{error}"
            )
        lines.append(f"convergence after the last fault: {self.convergence_s} s ({self.convergence_state})")
        if self.incidents:
            lines.append("supervisor incidents (restarts no fault asked for):")
            counts = Counter(f"{i.service}: {i.what}" for i in self.incidents)
            lines += [f"  {n} x {what}" for what, n in counts.items()]
        lines.append(f"observed: {json.dumps(self.observed)}")
        lines.append("")
        if self.passed:
            lines.append("PASSED: zero violations")
        else:
            lines.append(f"FAILED: {sum(v.count for v in self.violations)} violations")
            for v in self.violations:
                lines.append(f"  {v.kind}: {v.count}")
                lines += [f"    {example}" for example in v.examples]
        return "\n".join(lines)

    def write(self, directory: Path) -> None:
        directory.mkdir(parents=True, exist_ok=True)
        (directory / "report.json").write_text(self.to_json())
        (directory / "report.txt").write_text(self.to_text() + "\n")
