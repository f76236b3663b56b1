"""Recovery after a fault: when every service is ready again, and when the pipeline flows again.

"Flows" means a probe command sent through a door was accepted and is then visible through the
query service; both doors are probed, since one can recover while the other stays stuck. Times
count from the moment the fault ended (the process restarted or resumed, the server was up, the
link healed). Acceptance and visibility are reported apart: a command accepted but never visible
points past the command service (relay, Kafka, projector), one never accepted points at it.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass

import httpx

from soak.ledger import Ledger
from soak.load import Backoff, HttpDoor, TopicDoor
from soak.results import ResultsReader
from soak.services import ServiceProcess
from soak.workload import Door, Workload

POLL_S = 0.2
#: Probes measure recovery: they poll at a steady pace instead of backing off like the load.
PROBE_PACE = Backoff(POLL_S, POLL_S)


@dataclass(frozen=True)
class Flow:
    """Seconds after the fault's end until a probe was accepted, and until it was readable."""

    accepted_s: float | None
    visible_s: float | None


@dataclass(frozen=True)
class Recovery:
    """Seconds from the end of a fault; None where the give-up time passed first."""

    ready_s: float | None
    http: Flow
    topic: Flow

    @property
    def total_s(self) -> float | None:
        parts = (self.ready_s, self.http.visible_s, self.topic.visible_s)
        return None if any(p is None for p in parts) else max(p for p in parts if p is not None)

    def missing(self) -> list[str]:
        missing = [] if self.ready_s is not None else ["services not all ready"]
        for door, flow in (("HTTP", self.http), ("topic", self.topic)):
            if flow.accepted_s is None:
                missing.append(f"{door} probe not accepted")
            elif flow.visible_s is None:
                missing.append(f"{door} probe accepted after {flow.accepted_s} s, never readable")
        return missing

    def describe(self) -> str:
        def flow(f: Flow) -> str:
            return f"{f.accepted_s}/{f.visible_s}"

        return f"ready {self.ready_s}, http {flow(self.http)}, topic {flow(self.topic)} (accepted/readable)"


@dataclass
class Prober:
    workload: Workload
    ledger: Ledger
    client: httpx.AsyncClient
    http: HttpDoor
    topic: TopicDoor
    results: ResultsReader
    services: list[ServiceProcess]
    query: ServiceProcess
    reader_token: str

    async def measure(self, healed_at: float, give_up_s: float) -> Recovery:
        deadline = healed_at + give_up_s
        ready, http_flow, topic_flow = await asyncio.gather(
            self._all_ready(deadline), self._flow("http", deadline), self._flow("topic", deadline)
        )

        def since(at: float | None) -> float | None:
            return None if at is None else round(max(0.0, at - healed_at), 2)

        return Recovery(
            since(ready),
            Flow(since(http_flow[0]), since(http_flow[1])),
            Flow(since(topic_flow[0]), since(topic_flow[1])),
        )

    async def _all_ready(self, deadline: float) -> float | None:
        while time.monotonic() < deadline:
            statuses = await asyncio.gather(*(s.status(self.client, "/readyz") for s in self.services))
            if all(status == 200 for status in statuses):
                return time.monotonic()
            await asyncio.sleep(POLL_S)
        return None

    async def _flow(self, door: Door, deadline: float) -> tuple[float | None, float | None]:
        """When a fresh probe command through `door` was accepted, and when it was readable."""
        planned = self.workload.probe(door)
        self.ledger.sends.append(planned)
        remaining = deadline - time.monotonic()
        if door == "http":
            ack = await self.http.send(planned, within=remaining, backoff=PROBE_PACE)
        elif await self.topic.send(planned, within=remaining, backoff=PROBE_PACE):
            try:
                ack = await self.results.wait_for(planned.command_id, within=deadline - time.monotonic())
            except TimeoutError:
                ack = None
        else:
            ack = None
        if ack is None or ack.status != "accepted":
            return None, None
        accepted = time.monotonic()
        return accepted, await self._visible(planned.aggregate_id, deadline)

    async def _visible(self, customer: str, deadline: float) -> float | None:
        url = f"{self.query.url}/v1/customers/{customer}"
        headers = {"Authorization": self.reader_token}
        while time.monotonic() < deadline:
            try:
                response = await self.client.get(url, headers=headers, timeout=2.0)
            except httpx.HTTPError as exc:
                self.ledger.status("query-probe", "error", type(exc).__name__)
            else:
                self.ledger.status("query-probe", response.status_code, f"GET {url}: {response.text}")
                if response.status_code == 200:
                    return time.monotonic()
            await asyncio.sleep(POLL_S)
        return None
