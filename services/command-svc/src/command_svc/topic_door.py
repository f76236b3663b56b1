"""The topic door: commands consumed from `commands` in a consumer group.

Offsets are committed only after every command of a batch has its outcome stored and its result
record acknowledged by Kafka (at-least-once in; the idempotent pipeline makes the effect once).
Within a batch, commands of different aggregates run concurrently and one aggregate's commands run
in their topic order. If the store or Kafka fails, the batch is not committed: the consumer seeks
back and the same records come again after a pause. Any other exception is a bug in handling that
one command: retrying cannot help and would block its partition, so the record is dead-lettered
with the error and the batch goes on.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import defaultdict
from collections.abc import Sequence

from aiokafka.errors import KafkaError

from command_svc.intake import DeadLetter, outcome_label
from command_svc.metrics import COMMAND_SECONDS, COMMANDS
from command_svc.pipeline import CommandPipeline
from command_svc.results_publisher import ResultsPublisher
from cqrs_shared.kafka_io import KafkaRecord
from cqrs_shared.results import CommandResult
from cqrs_shared.write_store import WriteStoreUnavailableError

log = logging.getLogger(__name__)

Record = KafkaRecord


class TopicDoor:
    def __init__(
        self,
        pipeline: CommandPipeline,
        results: ResultsPublisher,
        *,
        max_command_bytes: int,
        concurrency: int,
    ) -> None:
        self._pipeline = pipeline
        self._results = results
        self._max_bytes = max_command_bytes
        self._slots = asyncio.Semaphore(concurrency)

    async def handle_batch(self, records: Sequence[Record]) -> None:
        """Handle every record; returns once all outcomes are acknowledged (then offsets may commit)."""
        by_key: dict[tuple[int, bytes | None], list[Record]] = defaultdict(list)
        for record in records:
            by_key[(record.partition, record.key)].append(record)
        # A task group cancels the other aggregates' work as soon as one fails: the batch is read
        # again anyway, and nothing keeps running unobserved behind the retry.
        try:
            async with asyncio.TaskGroup() as group:
                tasks = [group.create_task(self._handle_in_order(records)) for records in by_key.values()]
        except ExceptionGroup as failures:
            raise failures.exceptions[0] from failures
        await asyncio.gather(*(delivery for task in tasks for delivery in task.result()))

    async def _handle_in_order(self, records: list[Record]) -> list[asyncio.Future[object]]:
        async with self._slots:
            return [await self._handle(record) for record in records]

    async def _handle_command(self, record: Record, value: bytes) -> CommandResult | DeadLetter:
        authorization = dict(record.headers or ()).get("authorization")
        try:
            return await self._pipeline.handle(
                value, authorization.decode(errors="replace") if authorization is not None else None
            )
        except (WriteStoreUnavailableError, KafkaError):
            raise
        except Exception as exc:
            log.exception("handling %s[%d]@%d crashed", record.topic, record.partition, record.offset)
            return DeadLetter("handler_error", f"{type(exc).__name__}: {exc}")

    async def _handle(self, record: Record) -> asyncio.Future[object]:
        started = time.perf_counter()
        value = record.value or b""
        outcome: CommandResult | DeadLetter
        if len(value) > self._max_bytes:
            outcome = DeadLetter("too_large", f"{len(value)} bytes exceeds the limit of {self._max_bytes}")
        else:
            outcome = await self._handle_command(record, value)
        COMMAND_SECONDS.labels("topic").observe(time.perf_counter() - started)
        COMMANDS.labels("topic", outcome_label(outcome)).inc()
        if isinstance(outcome, DeadLetter):
            log.warning(
                "dead-lettered %s[%d]@%d: %s", record.topic, record.partition, record.offset, outcome.detail
            )
            return await self._results.send_dead_letter(record, outcome)
        return await self._results.send_outcome(outcome)
