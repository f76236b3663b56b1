"""The open-loop load: commands through both doors and reads from the query service, at fixed rates.

Open loop: arrivals follow the clock, never the answers, so a slow or stalled system meets the same
demand a real one would (requests pile up instead of the load politely slowing down). Clients behave
like careful real ones: a 503 or a broken connection is retried with the same command id, after an
exponential, jittered pause; and each client caps its concurrent requests (beyond that, arrivals
wait their turn, and past `max_in_flight` they are shed and counted), so the soak's own process
never becomes the bottleneck it would then measure.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import httpx
from aiokafka import AIOKafkaProducer

from soak.ledger import Ack, Ledger
from soak.workload import Planned

log = logging.getLogger(__name__)

REQUEST_TIMEOUT_S = 10.0


@dataclass(frozen=True)
class Backoff:
    """Pauses between resends: `first`, doubling up to `most`, each jittered down by up to half."""

    first: float = 1.0
    most: float = 5.0

    def pause(self, attempt: int) -> float:
        return min(self.most, self.first * 2.0**attempt) * random.uniform(0.5, 1.0)


LOAD_BACKOFF = Backoff()


class HttpDoor:
    """`POST /v1/commands`, resent with the same body on 503 and connection failures."""

    def __init__(
        self,
        client: httpx.AsyncClient,
        url: str,
        token: str,
        ledger: Ledger,
        give_up_s: float,
        *,
        concurrency: int = 64,
    ) -> None:
        self._client = client
        self._url = f"{url}/v1/commands"
        self._headers = {"Authorization": token, "Content-Type": "application/json"}
        self._ledger = ledger
        self._give_up_s = give_up_s
        self._slots = asyncio.Semaphore(concurrency)

    async def send(
        self, planned: Planned, *, within: float | None = None, backoff: Backoff = LOAD_BACKOFF
    ) -> Ack | None:
        """The answer, resending on 5xx and broken connections for `within` s (default: give-up time)."""
        deadline = time.monotonic() + (self._give_up_s if within is None else within)
        attempt = 0
        while time.monotonic() < deadline:
            async with self._slots:
                response = await self._post(planned)
            if response is not None and response.status_code < 500:
                ack = _http_ack(planned, response)
                self._ledger.http_acks.append(ack)
                return ack
            await asyncio.sleep(backoff.pause(attempt))
            attempt += 1
        self._ledger.http_gave_up.append(planned.command_id)
        return None

    async def _post(self, planned: Planned) -> httpx.Response | None:
        try:
            response = await self._client.post(
                self._url, content=planned.body, headers=self._headers, timeout=REQUEST_TIMEOUT_S
            )
        except httpx.HTTPError as exc:
            self._ledger.status("command-http", "error", type(exc).__name__)
            return None
        self._ledger.status("command-http", response.status_code, response.text)
        return response


def _http_ack(planned: Planned, response: httpx.Response) -> Ack:
    now = time.monotonic()
    try:
        body: dict[str, Any] = response.json()
    except ValueError:
        body = {}
    if response.status_code == 200:
        return Ack.from_outcome(body, "http", now)
    if body.get("reason"):  # not a command at all (not JSON, no id): the HTTP twin of a dead letter
        return Ack(planned.command_id, "http", "dead-letter", code=str(body["reason"]), at=now)
    return Ack(planned.command_id, "http", "rejected", code=body.get("code"), at=now)


class TopicDoor:
    """Produces commands onto the commands topic with the JWT header; retries until Kafka acknowledges."""

    def __init__(
        self,
        bootstrap: str,
        topic: str,
        token: str,
        ledger: Ledger,
        give_up_s: float,
        *,
        concurrency: int = 256,
    ) -> None:
        self._producer = AIOKafkaProducer(
            bootstrap_servers=bootstrap, acks="all", linger_ms=5, request_timeout_ms=10_000
        )
        self._topic = topic
        self._headers = [("authorization", token.encode())]
        self._ledger = ledger
        self._give_up_s = give_up_s
        self._slots = asyncio.Semaphore(concurrency)

    async def start(self) -> None:
        await self._producer.start()

    async def close(self) -> None:
        with contextlib.suppress(Exception):
            await self._producer.stop()

    async def send(
        self, planned: Planned, *, within: float | None = None, backoff: Backoff = LOAD_BACKOFF
    ) -> bool:
        """Whether Kafka acknowledged the record, producing again on failures for `within` s."""
        deadline = time.monotonic() + (self._give_up_s if within is None else within)
        attempt = 0
        while time.monotonic() < deadline:
            async with self._slots:
                produced = await self._produce(planned, max(0.5, min(15.0, deadline - time.monotonic())))
            if produced:
                self._ledger.produced.add(planned.command_id)
                return True
            await asyncio.sleep(backoff.pause(attempt))
            attempt += 1
        self._ledger.unproduced.add(planned.command_id)
        return False

    async def _produce(self, planned: Planned, within: float) -> bool:
        key = planned.aggregate_id.encode() if planned.aggregate_id else None
        try:
            async with asyncio.timeout(within):
                await self._producer.send_and_wait(self._topic, planned.body, key=key, headers=self._headers)
        except Exception as exc:  # noqa: BLE001  # any produce failure is retried the same way
            self._ledger.status("command-topic", "error", type(exc).__name__)
            return False
        self._ledger.status("command-topic", "produced")
        return True


class QueryReader:
    """Reads of items, lists and relations of the query service; only the status codes matter."""

    def __init__(
        self, client: httpx.AsyncClient, url: str, token: str, ledger: Ledger, rng: random.Random, slots: int
    ) -> None:
        self._client = client
        self._url = url
        self._headers = {"Authorization": token}
        self._ledger = ledger
        self._rng = rng
        self._slots = slots

    async def read_once(self) -> None:
        slot = self._rng.randrange(self._slots)
        path = self._rng.choice(
            (
                f"/v1/customers/c-{slot}-0",
                f"/v1/orders/o-{slot}-0",
                f"/v1/customers/c-{slot}-0/orders",
                "/v1/customers?limit=20",
                "/v1/orders?status=placed&limit=20",
            )
        )
        try:
            response = await self._client.get(
                f"{self._url}{path}", headers=self._headers, timeout=REQUEST_TIMEOUT_S
            )
        except httpx.HTTPError as exc:
            self._ledger.status("query", "error", type(exc).__name__)
            return
        self._ledger.status("query", response.status_code, f"GET {path}: {response.text}")


class OpenLoop:
    """Starts `arrival()` `rate` times a second until stopped; never waits for one to finish."""

    def __init__(
        self,
        name: str,
        rate: float,
        arrival: Callable[[], Awaitable[object]],
        ledger: Ledger,
        *,
        max_in_flight: int = 1000,
    ) -> None:
        self.name = name
        self._interval = 1.0 / rate
        self._arrival = arrival
        self._ledger = ledger
        self._max_in_flight = max_in_flight
        self._in_flight: set[asyncio.Task[object]] = set()
        self._stop = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name=f"load-{self.name}")

    async def stop(self, *, drain: bool = True) -> None:
        """Stop arrivals; with `drain`, wait for the requests still in flight (their retries included)."""
        self._stop.set()
        if self._task is not None:
            await self._task
        if drain and self._in_flight:
            await asyncio.gather(*self._in_flight, return_exceptions=True)
        for task in list(self._in_flight):
            task.cancel()

    @property
    def in_flight(self) -> int:
        return len(self._in_flight)

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        due = loop.time()
        while not self._stop.is_set():
            pause = due - loop.time()
            if pause > 0:
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(pause):
                        await self._stop.wait()
                continue
            due += self._interval
            if len(self._in_flight) >= self._max_in_flight:
                self._ledger.shed += 1
                continue
            task = asyncio.create_task(self._guarded())
            self._in_flight.add(task)
            task.add_done_callback(self._in_flight.discard)

    async def _guarded(self) -> object:
        try:
            return await self._arrival()
        except Exception:
            log.exception("%s arrival failed", self.name)
            return None
