"""The topic door: commands consumed from `commands`, one fetched batch at a time.

A record is *done* once its outcome is stored and its result record (or dead letter) is acknowledged
by Kafka; only done records may have their offsets committed (at-least-once in; the idempotent
pipeline makes the effect once). Within a batch, commands of different aggregates run concurrently
(bounded) and one aggregate's commands run in their topic order.

A failure costs only what failed: when the store or Kafka fails on a command, that aggregate's later
commands in the batch wait for the retry (their order is kept) while every other aggregate's work
goes on and is reported done. Nothing is cancelled: cancelling in-flight write-store operations is
what wedged the database client, so a command that outlives the batch's time bound is left to finish
on its own (its aggregate stops there) and is reported not done. Any other exception is a bug in
handling that one command: retrying cannot help and would block its partition, so the record is
dead-lettered with the error and the batch goes on.

`topic_consumer.py` turns what is done into committed offsets and re-reads what is not.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import defaultdict
from collections.abc import Coroutine, Sequence
from dataclasses import dataclass, field

from aiokafka.errors import KafkaError
from opentelemetry.trace import SpanKind

from command_svc.intake import DeadLetter, flow_of, outcome_label
from command_svc.metrics import COMMAND_SECONDS, COMMANDS
from command_svc.pipeline import CommandPipeline
from command_svc.results_publisher import ResultsPublisher
from cqrs_shared.kafka_io import KafkaRecord
from cqrs_shared.logging_setup import bind_ids
from cqrs_shared.results import CommandResult
from cqrs_shared.tracing import context_from_headers, span, trace_id_in_headers
from cqrs_shared.write_store import WriteStoreUnavailableError

log = logging.getLogger(__name__)

Record = KafkaRecord
#: Where a record sits: (topic, partition, offset).
Position = tuple[str, int, int]

#: Failures of a dependency: the command may succeed when read again.
DEPENDENCY_ERRORS = (WriteStoreUnavailableError, KafkaError)


def position(record: Record) -> Position:
    return (record.topic, record.partition, record.offset)


@dataclass
class BatchProgress:
    """What handling a batch achieved: the records done, and why the others are not."""

    done: set[Position] = field(default_factory=set)
    failures: list[BaseException] = field(default_factory=list)


class TopicDoor:
    def __init__(
        self,
        pipeline: CommandPipeline,
        results: ResultsPublisher,
        *,
        max_command_bytes: int,
        concurrency: int,
        command_timeout_seconds: float = 30.0,
        ack_timeout_seconds: float = 10.0,
    ) -> None:
        self._pipeline = pipeline
        self._results = results
        self._max_bytes = max_command_bytes
        self._timeout = command_timeout_seconds
        self._ack_timeout = ack_timeout_seconds
        # Shared by every batch: work left running past a batch's bound keeps its slot, so a store
        # that stopped answering cannot collect an unbounded pile of abandoned calls.
        self._slots = asyncio.Semaphore(concurrency)
        self._running: set[asyncio.Task[None]] = set()

    async def handle_batch(self, records: Sequence[Record]) -> None:
        """Handle every record; return once all are done, else raise the first failure.

        Raises only after every other aggregate's commands have finished."""
        progress = await self.handle_records(records)
        if progress.failures:
            raise progress.failures[0]

    async def handle_records(
        self, records: Sequence[Record], *, abandon: asyncio.Event | None = None
    ) -> BatchProgress:
        """Handle the records for at most the command timeout, then wait at most the ack timeout
        for Kafka to acknowledge their results; report which are done.

        Setting `abandon` (a rebalance, a shutdown) makes every aggregate stop after its current
        command; what finished by then is reported done."""
        abandon = abandon if abandon is not None else asyncio.Event()
        progress = BatchProgress()
        sent: list[tuple[Record, asyncio.Future[object]]] = []
        chains = [
            self._start(self._handle_in_order(chain, sent, progress, abandon)) for chain in _chains(records)
        ]
        if chains:
            _, unfinished = await asyncio.wait(chains, timeout=self._timeout)
            if unfinished:
                abandon.set()
                progress.failures.append(
                    TimeoutError(f"{len(unfinished)} aggregates still busy after {self._timeout:g} s")
                )
        # Commands finishing after this point are not counted done: they will be read again.
        await self._collect_acks(list(sent), progress)
        return progress

    async def _collect_acks(
        self, handed_over: list[tuple[Record, asyncio.Future[object]]], progress: BatchProgress
    ) -> None:
        if not handed_over:
            return
        _, unacknowledged = await asyncio.wait([d for _, d in handed_over], timeout=self._ack_timeout)
        if unacknowledged:
            progress.failures.append(
                TimeoutError(f"{len(unacknowledged)} results unacknowledged after {self._ack_timeout:g} s")
            )
        for record, delivery in handed_over:
            if not delivery.done() or delivery.cancelled():
                continue
            failure = delivery.exception()
            if failure is None:
                progress.done.add(position(record))
            else:
                progress.failures.append(failure)

    async def drain(self, *, within: float) -> None:
        """Wait up to `within` seconds for commands left running by earlier batches, then cancel them
        (at shutdown, when the store and producer are about to close anyway)."""
        if not self._running:
            return
        _, unfinished = await asyncio.wait(set(self._running), timeout=within)
        for task in unfinished:
            task.cancel()
        for task in unfinished:
            with contextlib.suppress(asyncio.CancelledError):
                await task

    def _start(self, work: Coroutine[object, object, None]) -> asyncio.Task[None]:
        task = asyncio.create_task(work)
        self._running.add(task)
        task.add_done_callback(self._running.discard)
        return task

    async def _handle_in_order(
        self,
        records: list[Record],
        sent: list[tuple[Record, asyncio.Future[object]]],
        progress: BatchProgress,
        abandon: asyncio.Event,
    ) -> None:
        if not await self._take_slot(abandon):
            return
        try:
            for record in records:
                if abandon.is_set():
                    return
                try:
                    delivery = await self._handle(record)
                except DEPENDENCY_ERRORS as exc:
                    COMMANDS.labels("topic", "unavailable").inc()
                    progress.failures.append(exc)
                    return  # this aggregate's later commands must not overtake this one
                except Exception as exc:  # sending the outcome failed in an unforeseen way
                    log.exception("%s[%d]@%d failed", record.topic, record.partition, record.offset)
                    progress.failures.append(exc)
                    return
                delivery.add_done_callback(_retrieve_exception)
                sent.append((record, delivery))
        finally:
            self._slots.release()

    async def _take_slot(self, abandon: asyncio.Event) -> bool:
        """Wait for a concurrency slot unless the batch is abandoned first (True: a slot was taken).

        Giving up the wait when the batch is abandoned keeps tasks from piling up behind slots that
        a hung store holds: only a semaphore wait is cancelled, never a store call."""
        if not self._slots.locked():
            # A free slot is taken without waiting: no tasks to race the batch's abandonment
            # (two tasks and a wait per aggregate: 10 % of command-svc's samples under load).
            await self._slots.acquire()
            return True
        acquiring = asyncio.ensure_future(self._slots.acquire())
        abandoned = asyncio.ensure_future(abandon.wait())
        try:
            await asyncio.wait({acquiring, abandoned}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            abandoned.cancel()
            acquiring.cancel()  # a no-op once the slot is taken
        return acquiring.done() and not acquiring.cancelled()

    async def _handle_command(self, record: Record, value: bytes) -> CommandResult | DeadLetter:
        authorization = dict(record.headers or ()).get("authorization")
        try:
            return await self._pipeline.handle(
                value, authorization.decode(errors="replace") if authorization is not None else None
            )
        except DEPENDENCY_ERRORS:
            raise
        except Exception as exc:
            log.exception("handling %s[%d]@%d crashed", record.topic, record.partition, record.offset)
            return DeadLetter("handler_error", f"{type(exc).__name__}: {exc}")

    async def _handle(self, record: Record) -> asyncio.Future[object]:
        # The record's `traceparent` (if any) parents the command's span; its trace id names the
        # log lines even when tracing is off here.
        with (
            bind_ids(trace_id=trace_id_in_headers(record.headers)),
            span(
                f"{record.topic} process",
                kind=SpanKind.CONSUMER,
                parent=context_from_headers(record.headers),
                attributes={
                    "messaging.system": "kafka",
                    "messaging.operation.type": "process",
                    "messaging.destination.name": record.topic,
                    "messaging.destination.partition.id": str(record.partition),
                    "messaging.kafka.offset": record.offset,
                },
            ),
        ):
            return await self._handle_in_span(record)

    async def _handle_in_span(self, record: Record) -> asyncio.Future[object]:
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
            correlation_id, causation_id = flow_of(value, outcome)
            with bind_ids(correlation_id=correlation_id, causation_id=causation_id):
                log.warning(
                    "dead-lettered %s[%d]@%d: %s",
                    record.topic,
                    record.partition,
                    record.offset,
                    outcome.detail,
                )
            return await self._results.send_dead_letter(record, outcome)
        return await self._results.send_outcome(outcome)


def _chains(records: Sequence[Record]) -> list[list[Record]]:
    """The records per (partition, key), each list in topic order: one aggregate's commands."""
    by_key: dict[tuple[str, int, bytes | None], list[Record]] = defaultdict(list)
    for record in records:
        by_key[(record.topic, record.partition, record.key)].append(record)
    return list(by_key.values())


def _retrieve_exception(delivery: asyncio.Future[object]) -> None:
    # A delivery that fails after its batch stopped waiting is reported by the re-read, not by
    # asyncio's "exception was never retrieved".
    if not delivery.cancelled():
        delivery.exception()
