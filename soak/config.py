"""What one soak run does: its length, load, thresholds and where it keeps its state and results."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent

#: At least the consumers' `session.timeout.ms` (command-svc's and projector-svc's default 6 s,
#: aiokafka's own 10 s): a consumer paused longer is evicted from its group and its partitions move.
CONSUMER_SESSION_TIMEOUT_S = 10.0
#: Longer than the services' Kafka producers wait for an acknowledgement (aiokafka's default request
#: timeout, 40 s): during a Kafka outage this long, a publish fails instead of waiting it out, which is
#: when a relay that marks commits published before Kafka acknowledged them loses them.
LONG_KAFKA_OUTAGE_S = 45.0


@dataclass(frozen=True)
class Thresholds:
    """Limits whose breach is a violation (the issue's acceptance figures)."""

    #: Every service ready and the pipeline flowing again this long after a fault ends.
    recovery_s: float = 10.0
    #: Read models equal to the write store this long after the last fault ends.
    convergence_s: float = 30.0


@dataclass(frozen=True)
class SoakConfig:
    seed: int
    #: The fault phase of a full run; the quick mode runs each fault kind once instead.
    minutes: float = 30.0
    quick: bool = False
    #: Open-loop arrival rates: commands/s over both doors, and query reads/s.
    command_rate: float = 30.0
    query_rate: float = 5.0
    customer_slots: int = 300
    order_slots: int = 300
    thresholds: Thresholds = field(default_factory=Thresholds)
    #: How long to wait for recovery after a fault before moving on (reported as not recovered).
    recovery_give_up_s: float = 60.0
    #: How long to wait for convergence after the last fault before checking anyway.
    convergence_give_up_s: float = 120.0
    #: Quiet time between a fault's recovery and the next fault: (min, max) seconds.
    settle_s: tuple[float, float] = (5.0, 15.0)
    #: Load without faults before the first one (warm-up), seconds.
    warmup_s: float = 10.0
    #: A client resends a command (same id) for this long on 503s and broken connections.
    client_give_up_s: float = 60.0
    #: Liveness probing as an orchestrator would: period and consecutive failures before a restart.
    liveness_period_s: float = 5.0
    liveness_failures: int = 3
    results_root: Path = REPO_ROOT / "bench" / "results"
    #: Where the private stacks live (one directory per run, removed afterwards unless kept).
    state_root: Path = REPO_ROOT / ".stack" / "soak"
    #: Downloaded jars and built binaries to reuse (the developer stack's), never rebuilt per run.
    cache_dir: Path = field(
        default_factory=lambda: Path(os.environ.get("STACK_CACHE_DIR", REPO_ROOT / ".stack"))
    )
    keep_stack: bool = False
    #: A baseline: the same load and checks without any fault (the harness's own sanity check).
    no_faults: bool = False

    @classmethod
    def quick_mode(cls, seed: int) -> SoakConfig:
        """Under 5 minutes: each fault kind once, short pauses, a moderate load."""
        return cls(
            seed=seed,
            quick=True,
            minutes=0.0,
            command_rate=25.0,
            query_rate=4.0,
            customer_slots=200,
            order_slots=200,
            recovery_give_up_s=15.0,
            convergence_give_up_s=45.0,
            settle_s=(2.0, 3.0),
            warmup_s=5.0,
            client_give_up_s=30.0,
        )
