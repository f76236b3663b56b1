"""`RenewingProducer` retires a producer whose delivery failed and sends on a fresh one.

The failure it answers was seen in the soak: after a long Kafka outage one delivery failed with
OutOfOrderSequenceNumber, the producer's sequence for that partition stayed ahead of the broker's,
and every later batch failed the same way until the process restarted.
"""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from aiokafka.errors import KafkaConnectionError, OutOfOrderSequenceNumber

from cqrs_shared.kafka_io import RenewingProducer


class FakeProducer:
    """Acknowledges every record, or fails every delivery once `poisoned` (as the wedged one did)."""

    def __init__(self, number: int, *, start_error: Exception | None = None) -> None:
        self.number = number
        self.poisoned = False
        self.started = False
        self.stopped = False
        self.sent: list[bytes] = []
        self._start_error = start_error

    async def start(self) -> None:
        if self._start_error is not None:
            raise self._start_error
        self.started = True

    async def stop(self) -> None:
        self.stopped = True

    async def send(self, topic: str, value: bytes | None = None, key: bytes | None = None, **_: Any) -> Any:
        delivery: asyncio.Future[object] = asyncio.get_running_loop().create_future()
        if self.poisoned:
            delivery.set_exception(OutOfOrderSequenceNumber())
        else:
            self.sent.append(key or b"")
            delivery.set_result(None)
        return delivery


class Factory:
    def __init__(self) -> None:
        self.made: list[FakeProducer] = []
        self.start_errors: list[Exception] = []

    def __call__(self) -> Any:
        error = self.start_errors.pop(0) if self.start_errors else None
        producer = FakeProducer(len(self.made), start_error=error)
        self.made.append(producer)
        return producer


async def test_a_failed_delivery_retires_the_producer_and_the_next_send_uses_a_fresh_one() -> None:
    factory = Factory()
    renewed: list[int] = []
    producer = RenewingProducer(factory, on_renew=lambda: renewed.append(1))
    await producer.start()
    await producer.send_all([("t", b"a", b"1", [])])
    factory.made[0].poisoned = True

    with pytest.raises(OutOfOrderSequenceNumber):
        await producer.send_all([("t", b"b", b"2", [])])
    await producer.send_all([("t", b"b", b"2", [])])  # the caller's retry

    assert [p.sent for p in factory.made] == [[b"a"], [b"b"]]
    assert producer.renewals == 1 and renewed == [1]
    await asyncio.sleep(0)  # the retired producer is stopped in the background
    assert factory.made[0].stopped
    await producer.stop()
    assert factory.made[1].stopped


async def test_failures_of_one_generation_renew_once() -> None:
    factory = Factory()
    producer = RenewingProducer(factory)
    await producer.start()
    factory.made[0].poisoned = True
    deliveries = [await producer.send("t", key=f"{n}".encode(), headers=[]) for n in range(5)]
    results = await asyncio.gather(*deliveries, return_exceptions=True)
    assert all(isinstance(r, OutOfOrderSequenceNumber) for r in results)

    await asyncio.gather(*[producer.send_all([("t", f"r{n}".encode(), b"", [])]) for n in range(5)])
    assert len(factory.made) == 2 and producer.renewals == 1
    assert sorted(factory.made[1].sent) == [f"r{n}".encode() for n in range(5)]
    await producer.stop()


async def test_a_fresh_producer_that_cannot_start_is_tried_again_on_the_next_send() -> None:
    factory = Factory()
    producer = RenewingProducer(factory)
    await producer.start()
    factory.made[0].poisoned = True
    with pytest.raises(OutOfOrderSequenceNumber):
        await producer.send_all([("t", b"x", b"", [])])

    factory.start_errors.append(KafkaConnectionError())  # Kafka still down when it is replaced
    with pytest.raises(KafkaConnectionError):
        await producer.send_all([("t", b"y", b"", [])])
    assert factory.made[1].stopped  # a producer that failed to start is not leaked

    await producer.send_all([("t", b"y", b"", [])])
    assert factory.made[2].sent == [b"y"]
    await producer.stop()


async def test_cancelled_waits_do_not_retire_a_healthy_producer() -> None:
    factory = Factory()
    producer = RenewingProducer(factory)
    await producer.start()
    delivery: asyncio.Future[object] = asyncio.get_running_loop().create_future()

    async def never_acknowledged(*_: Any, **__: Any) -> asyncio.Future[object]:
        return delivery

    factory.made[0].send = never_acknowledged  # type: ignore[method-assign]
    waiting = await producer.send("t", key=b"k", headers=[])
    waiting.cancel()  # a caller's timeout, not a failed delivery
    await asyncio.sleep(0)
    factory.made[0].send = FakeProducer.send.__get__(factory.made[0])  # type: ignore[method-assign]
    await producer.send_all([("t", b"z", b"", [])])
    assert len(factory.made) == 1 and producer.renewals == 0
    await producer.stop()
