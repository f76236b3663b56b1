"""The topic door's consumer loop, on aiokafka for exact offset control: a failure costs only what failed.

Guarantees:
- At-least-once: a partition's offset is committed only past records the door reports done (outcome
  stored, result acknowledged by Kafka). A commit that fails is tried again after the next turn.
- Progress under failures: after each batch every partition commits the longest prefix of done
  records, is sought back to its first record not done and paused for the retry pause; only that
  suffix is read again, while other partitions keep flowing. Records of the suffix that are already
  done (other aggregates) are remembered for the current assignment and skipped, so their results
  are not sent twice. A re-read after a rebalance or a crash repeats commands: the pipeline answers
  a repeat with the stored outcome and its result record is sent again.
- Per-aggregate order: the door never handles an aggregate's command before the earlier ones of that
  aggregate are done, and a re-read starts at the first record not done.
- Rebalances: on revoke, the batch in flight is abandoned (each aggregate stops after its current
  command; nothing is cancelled), what is done is committed and the partitions are forgotten; on
  assign, aiokafka starts from the committed offsets. A consumer evicted from the group (a frozen
  process, a Kafka restart) rejoins in the background and flows again.
- Liveness: every Kafka call and every batch is bounded, so every turn of the loop ends; the loop
  beats its heartbeat after each turn that did work, found nothing or failed on a dependency, and
  goes silent only when an await never returns, which `/healthz` then reports.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from dataclasses import dataclass

from aiokafka import AIOKafkaConsumer, ConsumerRebalanceListener, TopicPartition
from aiokafka.errors import KafkaError

from command_svc.partition_progress import PartitionProgress
from command_svc.topic_door import TopicDoor, position
from cqrs_shared.kafka_io import KafkaRecord
from cqrs_shared.liveness import LivenessMonitor

log = logging.getLogger(__name__)

#: The name of the loop's heartbeat in `/healthz`.
HEARTBEAT = "topic_door"


@dataclass(frozen=True, slots=True)
class ConsumerSettings:
    bootstrap_servers: str
    topic: str
    group_id: str
    client_id: str
    max_records: int = 500
    fetch_timeout_ms: int = 500
    #: Bound on every Kafka call of the loop (fetch, commit, stop).
    kafka_timeout_seconds: float = 10.0
    retry_pause_seconds: float = 1.0
    session_timeout_ms: int = 10_000
    heartbeat_interval_ms: int = 3_000
    max_poll_interval_ms: int = 90_000
    #: Below aiokafka's 40 s request timeout, which also bounds the JoinGroup round trip.
    rebalance_timeout_ms: int = 30_000
    #: `/healthz` fails once no turn completed for this long; more than the longest bounded turn.
    liveness_seconds: float = 90.0
    #: Static group membership (Kafka's group.instance.id): a replica restarted under the same id
    #: takes its partitions back at once instead of waiting for its previous session to time out.
    group_instance_id: str | None = None

    @property
    def handover_seconds(self) -> float:
        """How long a revocation or a shutdown waits for the batch in flight to wind down."""
        return self.rebalance_timeout_ms / 1000 * 2 / 3


class TopicConsumer:
    """Feeds the topic door from its consumer group and commits what the door finished."""

    def __init__(self, door: TopicDoor, settings: ConsumerSettings, liveness: LivenessMonitor) -> None:
        self._door = door
        self._settings = settings
        self._liveness = liveness
        self._consumer: AIOKafkaConsumer | None = None
        self._task: asyncio.Task[None] | None = None
        self._progress = PartitionProgress()
        self._paused_until: dict[TopicPartition, float] = {}
        # Held while a batch is handled and committed; a revocation waits for it.
        self._turn_lock = asyncio.Lock()
        self._abandon: asyncio.Event | None = None
        self._stopping = asyncio.Event()
        # +1 on every revocation and assignment: a batch fetched in an older epoch is stale.
        self._epoch = 0
        self._member = False
        self._outside_since = time.monotonic()

    # --- lifecycle --------------------------------------------------------------------------------

    async def start(self) -> None:
        s = self._settings
        consumer = AIOKafkaConsumer(
            bootstrap_servers=s.bootstrap_servers,
            group_id=s.group_id,
            client_id=s.client_id,
            enable_auto_commit=False,
            auto_offset_reset="earliest",
            session_timeout_ms=s.session_timeout_ms,
            heartbeat_interval_ms=s.heartbeat_interval_ms,
            max_poll_interval_ms=s.max_poll_interval_ms,
            rebalance_timeout_ms=s.rebalance_timeout_ms,
            group_instance_id=s.group_instance_id,
        )
        consumer.subscribe([s.topic], listener=_listener(self))
        # Set before `start`: the first rebalance may call the listener while `start` runs.
        self._consumer = consumer
        self._stopping.clear()
        try:
            async with asyncio.timeout(s.kafka_timeout_seconds):
                await consumer.start()
        except BaseException:
            self._consumer = None
            await consumer.stop()
            raise
        self._task = asyncio.create_task(self._run(), name="topic-door")

    async def stop(self) -> None:
        """Stop fetching, let the batch in flight wind down (bounded), commit, leave the group."""
        self._stopping.set()
        if self._abandon is not None:
            self._abandon.set()
        task, self._task = self._task, None
        if task is not None:
            _, running = await asyncio.wait([task], timeout=self._settings.handover_seconds)
            for stuck in running:
                log.warning("the topic door did not wind down in time; cancelling it")
                stuck.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await stuck
        await self._door.drain(within=self._settings.kafka_timeout_seconds)
        if self._consumer is not None:
            try:
                async with asyncio.timeout(self._settings.kafka_timeout_seconds):
                    await self._consumer.stop()
            except TimeoutError:
                log.warning("the topic door's consumer did not leave its group in time")
            self._consumer = None
        self._liveness.retire(HEARTBEAT)

    def check_member(self) -> None:
        """Raise unless the loop runs and the consumer has been a group member lately (readiness).

        Membership lapses during every rebalance; only a lapse longer than the session timeout counts."""
        if self._task is None:
            raise RuntimeError("the topic door is not started")
        if self._task.done():
            raise RuntimeError("the topic door's loop stopped")
        outside = time.monotonic() - self._outside_since
        if not self._member and outside > self._settings.session_timeout_ms / 1000:
            raise RuntimeError(
                f"not a member of consumer group {self._settings.group_id} for {outside:.0f} s"
            )

    # --- the loop ---------------------------------------------------------------------------------

    async def _run(self) -> None:
        heartbeat = self._liveness.heartbeat(HEARTBEAT, self._settings.liveness_seconds)
        while not self._stopping.is_set():
            try:
                await self._turn()
            except (KafkaError, TimeoutError) as exc:
                log.warning("the topic door's turn failed; retrying: %r", exc)
                await self._pause()
            except Exception:
                # A bug, not an outage: no heartbeat, so one that repeats makes /healthz fail.
                log.exception("the topic door's turn crashed; retrying")
                await self._pause()
                continue
            heartbeat.beat()
        async with self._turn_lock:
            await self._commit()

    async def _turn(self) -> None:
        consumer = self._require_consumer()
        self._resume_due()
        # getmany's own timeout does not cover waiting for a rebalance to finish.
        async with asyncio.timeout(self._settings.kafka_timeout_seconds):
            fetched = await consumer.getmany(
                timeout_ms=self._settings.fetch_timeout_ms, max_records=self._settings.max_records
            )
        # getmany returns records of the assignment current when it returns (it waits out a rebalance),
        # so the epoch is taken after it: records returned just after a rebalance are the new owner's.
        epoch = self._epoch
        async with self._turn_lock:
            # Rebalanced while waiting for the lock: the new assignment has reset the positions to the
            # committed offsets, so this batch is stale. Or stopping: it will be read again.
            if self._epoch != epoch or self._stopping.is_set():
                return
            if fetched:
                await self._handle(consumer, fetched, epoch)
            await self._commit()

    async def _handle(
        self, consumer: AIOKafkaConsumer, fetched: dict[TopicPartition, list[KafkaRecord]], epoch: int
    ) -> None:
        fresh = [r for tp, rs in fetched.items() for r in rs if not self._progress.is_done(tp, r.offset)]
        self._abandon = asyncio.Event()
        try:
            progress = await self._door.handle_records(fresh, abandon=self._abandon)
        finally:
            self._abandon = None
        if self._epoch > epoch + 1:
            return  # a revocation stopped waiting for this batch and forgot its partitions
        retry: dict[TopicPartition, int] = {}
        for tp, records in fetched.items():
            done = [r.offset for r in records if position(r) in progress.done]
            first_open = self._progress.settle(tp, [r.offset for r in records], done)
            if first_open is not None:
                retry[tp] = first_open
        if progress.failures:
            log.warning(
                "%d commands failed (first: %r); reading again from %s",
                len(progress.failures),
                progress.failures[0],
                {f"{tp.topic}[{tp.partition}]": offset for tp, offset in retry.items()},
            )
        if self._epoch != epoch:
            return  # a revocation waits: the next owner starts from the committed offsets
        resume_at = time.monotonic() + self._settings.retry_pause_seconds
        for tp, offset in retry.items():
            consumer.seek(tp, offset)
            consumer.pause(tp)
            self._paused_until[tp] = resume_at

    async def _commit(self) -> None:
        consumer = self._require_consumer()
        assigned = consumer.assignment()
        offsets = {tp: offset for tp, offset in self._progress.to_commit().items() if tp in assigned}
        if not offsets:
            return
        try:
            async with asyncio.timeout(self._settings.kafka_timeout_seconds):
                await consumer.commit(offsets)
        except (KafkaError, TimeoutError) as exc:
            log.warning("committing offsets failed; trying again after the next turn: %r", exc)
            return
        self._progress.committed(offsets)

    def _resume_due(self) -> None:
        consumer = self._require_consumer()
        now = time.monotonic()
        for tp, until in list(self._paused_until.items()):
            if until <= now:
                del self._paused_until[tp]
                if tp in consumer.assignment():
                    consumer.resume(tp)

    async def _pause(self) -> None:
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(self._settings.retry_pause_seconds):
                await self._stopping.wait()

    def _require_consumer(self) -> AIOKafkaConsumer:
        if self._consumer is None:
            raise RuntimeError("the topic door is not started")
        return self._consumer

    # --- rebalances -------------------------------------------------------------------------------

    async def _on_revoked(self, revoked: set[TopicPartition]) -> None:
        self._epoch += 1
        self._member = False
        self._outside_since = time.monotonic()
        if self._abandon is not None:
            self._abandon.set()
        try:
            async with asyncio.timeout(self._settings.handover_seconds), self._turn_lock:
                await self._commit()
        except TimeoutError:
            self._epoch += 1  # the batch still in flight must not settle into the next assignment
            log.warning("the batch in flight did not wind down before the rebalance; it will be re-read")
        self._progress.forget()
        self._paused_until.clear()
        if revoked:
            log.info("topic door partitions revoked: %s", sorted(str(tp) for tp in revoked))

    def _on_assigned(self, assigned: set[TopicPartition]) -> None:
        self._epoch += 1
        self._member = True
        log.info("topic door partitions assigned: %s", sorted(str(tp) for tp in assigned))


def _listener(door: TopicConsumer) -> ConsumerRebalanceListener:
    class _Listener(ConsumerRebalanceListener):  # type: ignore[misc]  # aiokafka is untyped
        async def on_partitions_revoked(self, revoked: set[TopicPartition]) -> None:
            await door._on_revoked(revoked)

        async def on_partitions_assigned(self, assigned: set[TopicPartition]) -> None:
            door._on_assigned(assigned)

    return _Listener()
