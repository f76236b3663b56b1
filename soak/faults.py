"""The faults a soak injects, each through the real processes, and the seeded schedule of them.

Kinds:
- `kill`: SIGKILL a service process, then start it again (a crashed pod).
- `stop`: SIGSTOP a service for some seconds, then SIGCONT (a frozen VM, a long GC pause); in every
  round one consumer service stays stopped longer than the consumer session timeout, so its group
  rebalances while it sleeps and it wakes up holding partitions it no longer owns.
- `crash`: SIGKILL Kafka, PostgreSQL or FerretDB (every process of it), then start it again.
- `restart`: stop Kafka, PostgreSQL or FerretDB gracefully, then start it again.
  In every round one Kafka outage lasts longer than the producers' request timeout, so publishing
  fails outright instead of waiting the outage out.
- `cut`: close the TCP proxy between one service and one dependency for 10-30 s (connections reset,
  new ones refused), then open it again.
- `stall` (full runs): the proxy stops passing bytes for 10-30 s while every connection stays open
  (a half-open link: nothing is refused, nothing answers), then passes them on again.
"""

from __future__ import annotations

import asyncio
import random
from dataclasses import dataclass
from typing import Literal

from cqrs_shared.testing.tcp_proxy import TcpProxy
from soak.config import CONSUMER_SESSION_TIMEOUT_S, LONG_KAFKA_OUTAGE_S
from soak.private_stack import PrivateStack
from soak.services import ServiceProcess

FaultKind = Literal["kill", "stop", "crash", "restart", "cut", "stall"]
SERVICES = ("command-svc", "projector-svc", "query-svc")
CONSUMERS = ("command-svc", "projector-svc")
INFRA = ("kafka", "postgres", "ferretdb")
LINKS = ("command-svc->ferretdb", "projector-svc->postgres", "query-svc->postgres")

#: Rough seconds a fault takes with its recovery, to size a full run's schedule.
_COST = {"kill": 8.0, "stop": 6.0, "cut": 6.0, "stall": 6.0, "kafka": 25.0, "postgres": 8.0, "ferretdb": 6.0}


@dataclass(frozen=True)
class Fault:
    kind: FaultKind
    target: str
    seconds: float = 0.0

    def describe(self) -> str:
        verbs = {
            "kill": "SIGKILL {t}, start it again",
            "stop": "SIGSTOP {t} for {s:g} s, then SIGCONT",
            "crash": "SIGKILL {t}, start it again{after}",
            "restart": "stop {t} gracefully, start it again{after}",
            "cut": "cut {t} for {s:g} s",
            "stall": "stall {t} for {s:g} s",
        }
        after = f" after {self.seconds:g} s" if self.seconds else ""
        return verbs[self.kind].format(t=self.target, s=self.seconds, after=after)

    def cost(self) -> float:
        return self.seconds + _COST.get(self.target, _COST.get(self.kind, 8.0))


def one_round(rng: random.Random, *, quick: bool) -> list[Fault]:
    """Every fault kind against every target (quick: each kind and target at least once), shuffled."""
    faults = [Fault("kill", service) for service in SERVICES]
    long_stop = rng.choice(CONSUMERS)
    for service in SERVICES:
        if service == long_stop:
            seconds = CONSUMER_SESSION_TIMEOUT_S + rng.uniform(5, 10)
        else:
            seconds = rng.uniform(2, 6)
        faults.append(Fault("stop", service, round(seconds, 1)))
    if quick:
        graceful = set(rng.sample(INFRA, k=rng.choice((1, 2))))  # so both crash and restart occur
        faults += [
            Fault("restart" if c in graceful else "crash", c, LONG_KAFKA_OUTAGE_S if c == "kafka" else 0.0)
            for c in INFRA
        ]
        faults.append(Fault("cut", rng.choice(LINKS), round(rng.uniform(10, 12), 1)))
    else:
        faults += [Fault(kind, c) for c in INFRA for kind in ("crash", "restart")]
        faults.append(Fault(rng.choice(("crash", "restart")), "kafka", LONG_KAFKA_OUTAGE_S))
        faults += [Fault("cut", link, round(rng.uniform(10, 30), 1)) for link in LINKS]
        faults.append(Fault("stall", rng.choice(LINKS), round(rng.uniform(10, 30), 1)))
    rng.shuffle(faults)
    return faults


def schedule(seed: int, *, quick: bool, minutes: float, settle_mean_s: float) -> list[Fault]:
    """The seeded plan: one round in quick mode; in a full run, rounds until `minutes` are filled."""
    rng = random.Random(f"faults-{seed}")
    if quick:
        return one_round(rng, quick=True)
    planned: list[Fault] = []
    while not planned or sum(f.cost() + settle_mean_s for f in planned) < minutes * 60:
        planned += one_round(rng, quick=False)
    return planned


class FaultInjector:
    """Applies a fault; returns once it has ended (process restarted or resumed, server up, link healed)."""

    def __init__(
        self, stack: PrivateStack, services: dict[str, ServiceProcess], proxies: dict[str, TcpProxy]
    ) -> None:
        self._stack = stack
        self._services = services
        self._proxies = proxies

    async def inject(self, fault: Fault) -> None:
        if fault.kind == "kill":
            service = self._services[fault.target]
            await service.kill()
            service.start()
        elif fault.kind == "stop":
            service = self._services[fault.target]
            service.pause()
            try:
                await asyncio.sleep(fault.seconds)
            finally:
                service.resume()
        elif fault.kind in ("crash", "restart"):
            await self._stack.restart(fault.target, graceful=fault.kind == "restart", down_s=fault.seconds)
        else:
            proxy = self._proxies[fault.target]
            if fault.kind == "cut":
                await proxy.cut()
            else:
                proxy.stall()
            try:
                await asyncio.sleep(fault.seconds)
            finally:
                await proxy.restore()
