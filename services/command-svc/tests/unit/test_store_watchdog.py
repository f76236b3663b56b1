"""The store watchdog: an outage is left to readiness, a broken client is replaced, then reported."""

from __future__ import annotations

import asyncio

from command_svc.store_watchdog import WEDGE, StoreWatchdog, Verdict, WatchdogSettings
from cqrs_shared.liveness import LivenessMonitor


class FakeClient:
    """A client whose main path and probe path can each work, fail or hang."""

    def __init__(self) -> None:
        self.main = "ok"
        self.server = "ok"
        self.reconnects = 0
        self.cured_by_reconnect = False
        self.progress_age = 60.0  # nothing succeeded recently unless a test says so
        self.outcomes = (0, 0)  # operations (succeeded, failed) since the previous round

    def seconds_since_progress(self) -> float:
        return self.progress_age

    def take_outcomes(self) -> tuple[int, int]:
        outcomes, self.outcomes = self.outcomes, (0, 0)
        return outcomes

    async def _behave(self, how: str) -> None:
        if how == "fail":
            raise ConnectionError("no answer")
        if how == "hang":
            await asyncio.Event().wait()

    async def ping(self) -> None:
        await self._behave(self.main)

    async def probe(self) -> None:
        await self._behave(self.server)

    async def reconnect(self) -> None:
        self.reconnects += 1
        if self.cured_by_reconnect:
            self.main = "ok"


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def watchdog(client: FakeClient, clock: Clock) -> tuple[StoreWatchdog, LivenessMonitor]:
    liveness = LivenessMonitor(clock)
    settings = WatchdogSettings(interval_seconds=1, timeout_seconds=0.05, wedged_after_seconds=30)
    return StoreWatchdog(client, liveness, settings, clock), liveness


async def test_a_working_client_is_left_alone() -> None:
    client, clock = FakeClient(), Clock()
    dog, liveness = watchdog(client, clock)
    assert await dog.check() is Verdict.HEALTHY
    assert client.reconnects == 0 and liveness.problems() == {}


async def test_a_busy_client_whose_operations_complete_is_not_pinged_or_replaced() -> None:
    client, clock = FakeClient(), Clock()
    client.main = "hang"  # a ping would queue behind the work in flight
    client.progress_age = 0.2
    dog, liveness = watchdog(client, clock)
    assert await dog.check() is Verdict.HEALTHY
    assert client.reconnects == 0 and liveness.problems() == {}


async def test_a_busy_client_with_a_few_failures_among_its_completions_is_not_pinged() -> None:
    client, clock = FakeClient(), Clock()
    client.main = "hang"
    client.progress_age, client.outcomes = 0.2, (40, 3)
    dog, liveness = watchdog(client, clock)
    assert await dog.check() is Verdict.HEALTHY
    assert client.reconnects == 0 and liveness.problems() == {}


async def test_a_client_that_mostly_fails_is_replaced_although_it_completed_something_lately() -> None:
    client, clock = FakeClient(), Clock()
    client.main = "hang"  # its checkouts time out; an operation gets through now and then
    client.cured_by_reconnect = True
    client.progress_age, client.outcomes = 0.2, (2, 115)
    dog, liveness = watchdog(client, clock)
    assert await dog.check() is Verdict.CLIENT_REPLACED
    assert client.reconnects == 1
    client.progress_age, client.outcomes = 0.1, (300, 0)
    assert await dog.check() is Verdict.HEALTHY
    assert liveness.problems() == {}


async def test_a_mostly_failing_client_during_a_store_outage_is_left_to_readiness() -> None:
    client, clock = FakeClient(), Clock()
    client.main = client.server = "fail"
    for _ in range(3):
        client.progress_age, client.outcomes = 0.5, (1, 50)
        dog, liveness = watchdog(client, clock)
        assert await dog.check() is Verdict.STORE_DOWN
    assert client.reconnects == 0 and liveness.problems() == {}


async def test_a_store_outage_is_not_blamed_on_the_client() -> None:
    client, clock = FakeClient(), Clock()
    client.main = client.server = "fail"
    dog, liveness = watchdog(client, clock)
    for _ in range(5):
        assert await dog.check() is Verdict.STORE_DOWN
        clock.now += 60
    assert client.reconnects == 0 and liveness.problems() == {}


async def test_a_client_that_fails_while_the_store_answers_is_replaced_at_once() -> None:
    client, clock = FakeClient(), Clock()
    client.main = "fail"
    client.cured_by_reconnect = True
    dog, liveness = watchdog(client, clock)
    assert await dog.check() is Verdict.CLIENT_REPLACED
    assert client.reconnects == 1
    assert await dog.check() is Verdict.HEALTHY
    assert liveness.problems() == {}


async def test_a_hanging_client_that_replacing_does_not_cure_is_reported_until_it_answers() -> None:
    client, clock = FakeClient(), Clock()
    client.main = "hang"
    dog, liveness = watchdog(client, clock)
    assert await dog.check() is Verdict.CLIENT_REPLACED
    clock.now += 29
    assert await dog.check() is Verdict.CLIENT_REPLACED
    assert liveness.problems() == {}
    clock.now += 1
    assert await dog.check() is Verdict.WEDGED
    assert WEDGE in liveness.problems()
    assert client.reconnects == 3
    client.main = "ok"
    assert await dog.check() is Verdict.HEALTHY
    assert liveness.problems() == {}
