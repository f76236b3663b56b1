"""The outbox relay: events reach Kafka only from commits already stored.

Guarantees:
- At-least-once: a commit is marked published only after Kafka acknowledged all of its events
  (`acks=all`, idempotent producer); a crash in between republishes it (duplicates are counted by
  consumers through event versions, never lost).
- Per-aggregate order: commits of one aggregate are published in version order by one worker; a
  commit whose predecessor is not known to be published makes the worker publish the aggregate's
  pending commits from the store first.
- One publisher per aggregate across replicas: aggregates fall into shards, and only the holder of
  a shard's lease publishes it. Fair shares rebalance as replicas come and go.

Fresh commits are handed over in memory (`notify`) so staleness is one Kafka round trip; the scan
of unpublished commits only recovers what a crash, a lost lease or a Kafka outage left behind.
Publish marks are written behind the publishing (`publish_marks`), not between two batches.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import time
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass

from command_svc.metrics import RELAY_PUBLISHED, RELAY_SHARDS_OWNED, observe_outbox_scan
from command_svc.publish_marks import PublishMarks
from cqrs_shared.kafka_io import EventPublisher, publish_commits
from cqrs_shared.liveness import Heartbeat, LivenessMonitor
from cqrs_shared.write_store import Commit, LeaseStore, WriteStore, WriteStoreUnavailableError

log = logging.getLogger(__name__)

__all__ = ["EventPublisher", "OutboxRelay", "RelaySettings"]


def _lease(shard: int) -> str:
    return f"relay-shard-{shard}"


@dataclass(frozen=True, slots=True)
class RelaySettings:
    shards: int = 64
    lease_ttl_seconds: float = 10.0
    scan_interval_seconds: float = 1.0
    batch_size: int = 500
    #: Fresh commits waiting for Kafka; beyond this they are left to the scan (bounded memory).
    fresh_queue_size: int = 10_000
    #: Streams whose last published version is remembered, to skip a store read on the hot path.
    remembered_streams: int = 100_000
    #: New commands are refused (503 / read again later) once the leases have been invalid this
    #: long, so an overloaded store serves the relay's renewals before more writes.
    intake_pause_after_seconds: float = 2.0
    #: `/healthz` fails when a relay loop has not completed a turn for this long (every call in a
    #: turn is bounded, so only a hang can exceed it).
    liveness_seconds: float = 90.0
    #: How long a scan, or a stop, waits for the queued publish marks to be written (on stop the
    #: rest is published again by the shard's next owner, counted duplicates).
    flush_marks_seconds: float = 5.0


class OutboxRelay:
    def __init__(
        self,
        store: WriteStore,
        leases: LeaseStore,
        publisher: EventPublisher,
        *,
        member_id: str,
        settings: RelaySettings = RelaySettings(),
        liveness: LivenessMonitor | None = None,
    ) -> None:
        self._store = store
        self._leases = leases
        self._publisher = publisher
        self._member = member_id
        self._settings = settings
        self._owned: set[int] = set()
        self._fresh: asyncio.Queue[Commit] = asyncio.Queue(maxsize=settings.fresh_queue_size)
        self._scan_requested = True
        #: The last scan returned a full batch: more unpublished commits are waiting behind it.
        self._backlog_left = False
        self._last_scan = 0.0
        self._published_upto: OrderedDict[tuple[str, str], int] = OrderedDict()
        self._tasks: list[asyncio.Task[None]] = []
        self._valid_until = 0.0
        self._liveness = liveness or LivenessMonitor()
        self._beats: dict[str, Heartbeat] = {}
        self._marks = PublishMarks(store, max_pending=settings.fresh_queue_size)

    # --- lifecycle --------------------------------------------------------------------------------

    async def start(self) -> None:
        try:
            await self._balance_leases()
        except WriteStoreUnavailableError as exc:
            # Not fatal: the lease loop keeps trying, and publishing waits for its leases.
            log.warning("relay starts without leases: %s", exc)
        for name in ("relay-leases", "relay-publish"):
            self._beats[name] = self._liveness.heartbeat(name, self._settings.liveness_seconds)
        self._marks.start()
        self._tasks = [
            asyncio.create_task(self._keep_leases(), name="relay-leases"),
            asyncio.create_task(self._publish_loop(), name="relay-publish"),
        ]

    async def stop(self) -> None:
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._tasks = []
        if not await self._marks.flush(self._settings.flush_marks_seconds):
            log.warning("relay stopped with %d commits published but not marked", self._marks.pending)
        await self._marks.stop()
        for name in self._beats:
            self._liveness.retire(name)
        # Hand shards over at once instead of making the next owner wait for the TTL.
        with contextlib.suppress(WriteStoreUnavailableError):
            await self._leases.leave(self._member)
        for shard in sorted(self._owned):
            with contextlib.suppress(WriteStoreUnavailableError):
                await self._leases.release(_lease(shard), self._member)
        self._owned.clear()
        RELAY_SHARDS_OWNED.set(0)

    @property
    def owned_shards(self) -> frozenset[int]:
        return frozenset(self._owned)

    def check_running(self) -> None:
        """Raise unless the relay's loops are alive (a readiness check)."""
        for task in self._tasks:
            if task.done():
                raise RuntimeError(f"relay task {task.get_name()} stopped")
        if not self._tasks:
            raise RuntimeError("relay not started")
        self._marks.check_running()

    def intake_paused(self) -> str | None:
        """Why new commands should wait, or None.

        When this relay cannot keep its leases (each renewal queued behind the doors' writes on an
        overloaded store), it publishes nothing while the doors keep storing: the backlog grows
        and nothing reaches Kafka. Refusing new commands for a moment gives the store back to the
        relay; they come again (HTTP clients on Retry-After, the topic door from its offsets).
        """
        if not self._tasks:
            return None  # not started: nothing to protect (tests drive the pipeline alone)
        behind = time.monotonic() - self._valid_until
        if behind > self._settings.intake_pause_after_seconds:
            return f"the outbox relay has held no valid lease for {behind:.1f} s; try again shortly"
        return None

    def notify(self, commit: Commit) -> None:
        """Hand a fresh commit over; commits of shards owned elsewhere are left to their owner."""
        if commit.shard not in self._owned:
            return
        try:
            self._fresh.put_nowait(commit)
        except asyncio.QueueFull:
            # Kafka is slower than the store (or down): leave it to the scan instead of growing.
            self._scan_requested = True

    # --- leases -----------------------------------------------------------------------------------

    async def _keep_leases(self) -> None:
        # Rounds start every third of a TTL, however long the last one took: sleeping a fixed
        # time after a slow round would space the renewals further apart than the leases last.
        period = self._settings.lease_ttl_seconds / 3
        next_round = time.monotonic() + period  # `start` ran the first round
        while True:
            await asyncio.sleep(max(0.0, next_round - time.monotonic()))
            next_round = time.monotonic() + period
            try:
                await self._balance_leases()
            except WriteStoreUnavailableError as exc:
                log.warning("relay could not renew leases: %s", exc)
            self._beats["relay-leases"].beat()

    async def _balance_leases(self) -> None:
        ttl = self._settings.lease_ttl_seconds
        names = {_lease(shard): shard for shard in self._owned}
        # Renew first, and count the validity from before the call: every lease held after it
        # was renewed (or, below, acquired) after this moment.
        valid_from = time.monotonic()
        held = await self._leases.renew(set(names), self._member, ttl)
        for name, shard in names.items():
            if name not in held:
                log.warning("relay lost the lease on shard %d", shard)
                self._owned.discard(shard)
        # Keep a margin for clock drift between this process and the store.
        self._valid_until = valid_from + ttl * 0.8
        await self._leases.heartbeat(self._member, ttl)
        members = await self._leases.live_members()
        target = math.ceil(self._settings.shards / max(1, len(members)))
        for shard in sorted(self._owned)[target:]:
            await self._leases.release(_lease(shard), self._member)
            self._owned.discard(shard)
        gained = False
        acquiring_since = time.monotonic()
        for shard in range(self._settings.shards):
            # Acquiring is one call per shard: on a slow store, acquiring them all in one round
            # would outlast the TTL of those renewed above. The next round takes the rest.
            if len(self._owned) >= target or time.monotonic() - acquiring_since > ttl / 4:
                break
            if shard not in self._owned and await self._leases.acquire(_lease(shard), self._member, ttl):
                self._owned.add(shard)
                gained = True
        if gained:
            self._scan_requested = True  # a new shard may hold commits its previous owner never published
        RELAY_SHARDS_OWNED.set(len(self._owned))

    def _leases_valid(self) -> bool:
        """False once renewals have failed for most of a TTL: another replica may own our shards."""
        return time.monotonic() < self._valid_until

    # --- publishing -------------------------------------------------------------------------------

    async def _publish_loop(self) -> None:
        while True:
            batch: list[Commit] = []
            try:
                batch = await self._next_batch()
                published = await self._publish(batch)
                if published and self._backlog_left:
                    # A full scan means more is waiting (a restart into a backlog, a healed outage):
                    # drain it at Kafka's pace instead of one scan per interval.
                    self._scan_requested = True
            except Exception:
                # Kafka or the store is down: nothing was marked, the recovery scan will find it all.
                log.exception("relay failed to publish %d commits; retrying from the store", len(batch))
                await asyncio.sleep(1.0)
                self._scan_requested = True
            self._beats["relay-publish"].beat()

    async def _next_batch(self) -> list[Commit]:
        """Fresh commits if any are waiting, plus a recovery scan whenever one is asked for or due.

        Scans run at least every `scan_interval_seconds` even while fresh commits keep coming, so
        commits dropped from a full hand-over queue are never left behind for long.
        """
        batch: list[Commit] = []
        if not self._scan_due():
            wait = max(0.0, self._last_scan + self._settings.scan_interval_seconds - time.monotonic())
            # `asyncio.timeout`, not `wait_for`: on Python 3.11 `wait_for` can swallow the
            # cancellation that `stop` sends when the get completes at the same moment, and the
            # loop would then run on forever (seen as a hung shutdown in the relay tests).
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(wait):
                    batch.append(await self._fresh.get())
            while not self._fresh.empty() and len(batch) < self._settings.batch_size:
                batch.append(self._fresh.get_nowait())
        if self._scan_due():
            if self._backlog_left:
                # The scan sees what is marked: after a full scan, with its marks still queued, the
                # next would find the same published commits (skipped, so a backlog would drain one
                # scan interval at a time). Otherwise the fresh path must not wait for the marks.
                await self._marks.flush(self._settings.flush_marks_seconds)
            self._scan_requested = False
            self._last_scan = time.monotonic()
            pending = await self._store.unpublished(self._owned, self._settings.batch_size)
            # A full scan means a backlog only if it found something this relay has not published:
            # a scan full of its own commits whose marks are still queued (at saturation) must not
            # make the next one wait for those marks.
            self._backlog_left = len(pending) >= self._settings.batch_size and any(
                self._published_upto.get((c.aggregate_type, c.aggregate_id), 0) < c.version for c in pending
            )
            observe_outbox_scan(pending)
            batch.extend(pending)
        return batch

    def _scan_due(self) -> bool:
        return (
            self._scan_requested or time.monotonic() - self._last_scan >= self._settings.scan_interval_seconds
        )

    async def _publish(self, batch: Sequence[Commit]) -> int:
        """Publish what this replica owns of `batch`, in order per stream; how many commits it published."""
        if not self._leases_valid():
            log.warning(
                "relay leases not renewed in time; leaving %d commits to the recovery scan", len(batch)
            )
            return 0
        ordered: list[Commit] = []
        # Highest version per stream known to be published, or queued ahead in this batch.
        upto: dict[tuple[str, str], int] = {}
        for commit in batch:
            stream = (commit.aggregate_type, commit.aggregate_id)
            if commit.shard not in self._owned:
                continue
            known = upto.get(stream, self._published_upto.get(stream))
            if known is not None and known >= commit.version:
                continue  # already published or queued: the scan and the fresh path can both carry it
            if commit.base_version == 0 or known == commit.base_version:
                chain = [commit]
            else:
                # The predecessor's fate is unknown here: publish the stream's backlog in order first.
                chain = await self._store.unpublished_in_stream(*stream)
            for link in chain:
                if known is None or link.version > known:
                    ordered.append(link)
                    known = link.version
            if known is not None:
                upto[stream] = known
        if not ordered:
            return 0
        await publish_commits(self._publisher, ordered)
        for commit in ordered:
            self._remember(commit)
        RELAY_PUBLISHED.inc(sum(len(c.events) for c in ordered))
        # Marked behind the next batch's publishing (see `publish_marks`); waits only when too
        # many marks are queued.
        await self._marks.add(ordered)
        return len(ordered)

    def _remember(self, commit: Commit) -> None:
        stream = (commit.aggregate_type, commit.aggregate_id)
        self._published_upto[stream] = max(commit.version, self._published_upto.get(stream, 0))
        self._published_upto.move_to_end(stream)
        while len(self._published_upto) > self._settings.remembered_streams:
            self._published_upto.popitem(last=False)
