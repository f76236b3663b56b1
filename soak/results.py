"""A live reader of `command-results` and `commands.dlq`: what a topic-door client learns, as it happens.

It reads both topics from their beginning for the whole run and survives broker restarts (a failing
consumer is replaced). The checker does not rely on it: it reads the topics again at the end.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time

from aiokafka import AIOKafkaConsumer, TopicPartition

from cqrs_shared.topics import TopicNames
from projector_svc.testing.kafka_feed import partitions_of
from soak.ledger import Ack

log = logging.getLogger(__name__)


class ResultsReader:
    def __init__(self, bootstrap: str, topics: TopicNames) -> None:
        self._bootstrap = bootstrap
        self._topics = (topics.command_results, topics.commands_dlq)
        self._results_topic = topics.command_results
        #: command id -> every outcome record seen for it (more than one after redelivery).
        self.outcomes: dict[str, list[Ack]] = {}
        #: Command ids and garbage markers found in dead letters.
        self.dead_lettered: set[str] = set()
        self._waiters: dict[str, asyncio.Future[Ack]] = {}
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="results-reader")

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    def answered(self, command_id: str) -> bool:
        return command_id in self.outcomes or command_id in self.dead_lettered

    async def wait_for(self, command_id: str, within: float) -> Ack:
        """The first outcome record for `command_id` (TimeoutError after `within` s)."""
        if command_id in self.outcomes:
            return self.outcomes[command_id][0]
        future = self._waiters.setdefault(command_id, asyncio.get_running_loop().create_future())
        async with asyncio.timeout(within):
            return await asyncio.shield(future)

    async def _run(self) -> None:
        # Positions survive a replaced consumer, so nothing is read twice or skipped.
        positions: dict[TopicPartition, int] = {}
        while True:
            consumer = AIOKafkaConsumer(
                bootstrap_servers=self._bootstrap, group_id=None, auto_offset_reset="earliest"
            )
            try:
                await consumer.start()
                await self._consume(consumer, positions)
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # noqa: BLE001  # the broker restarts during a soak; start over
                log.info("results reader restarting after %s", exc)
                await asyncio.sleep(1.0)
            finally:
                with contextlib.suppress(Exception):
                    await consumer.stop()

    async def _consume(self, consumer: AIOKafkaConsumer, positions: dict[TopicPartition, int]) -> None:
        partitions = await partitions_of(self._bootstrap, self._topics)
        if not partitions:
            raise RuntimeError("result topics not found yet")
        consumer.assign(partitions)
        for tp in partitions:
            if tp in positions:
                consumer.seek(tp, positions[tp])
        while True:
            batches = await consumer.getmany(timeout_ms=500, max_records=5000)
            for tp, records in batches.items():
                for record in records:
                    self._take(record.topic, record.value)
                positions[tp] = records[-1].offset + 1

    def _take(self, topic: str, value: bytes | None) -> None:
        text = (value or b"").decode(errors="replace")
        if topic != self._results_topic:
            with contextlib.suppress(ValueError, TypeError, KeyError):
                self.dead_lettered.add(str(json.loads(text)["command_id"]))
            if text.startswith("soak garbage "):
                self.dead_lettered.add(text.split()[2])
            return
        try:
            ack = Ack.from_outcome(json.loads(text), "results-topic", time.monotonic())
        except (ValueError, AttributeError):
            return
        self.outcomes.setdefault(ack.command_id, []).append(ack)
        waiter = self._waiters.pop(ack.command_id, None)
        if waiter is not None and not waiter.done():
            waiter.set_result(ack)
