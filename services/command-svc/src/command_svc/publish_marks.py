"""The relay's publish marks, written behind its publishing instead of between two batches.

Marking is bookkeeping for the recovery scan, not part of delivery: a commit is marked only after
Kafka acknowledged it (the relay hands it over only then), and a commit published but not yet
marked is at worst published again after a crash, a counted duplicate, as before. So the next
batch goes to Kafka while the previous one's marks are written. On FerretDB a mark costs about as
much as the publish round trip of a whole batch (each update rewrites the document and every
index entry of it), and marking in series held every event back by it (the B2 budget's "relay
hand-over" stage at 400 commands/s).

One task writes the marks, so no more store statements are in flight than before (the store
bounds a `mark_published` call itself). Marks that fail are kept and written again after a pause.
Memory is bounded: with `max_pending` marks waiting, `add` waits, which holds the relay's publishing
back to the store's pace.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Sequence

from cqrs_shared.write_store import Commit, WriteStore, WriteStoreUnavailableError

log = logging.getLogger(__name__)

#: Commits per `mark_published` call (the store splits a call into its own small bulks).
CHUNK = 500


class PublishMarks:
    def __init__(self, store: WriteStore, *, max_pending: int, retry_pause_seconds: float = 1.0) -> None:
        self._store = store
        self._max_pending = max_pending
        self._retry_pause = retry_pause_seconds
        self._pending: list[Commit] = []
        self._marking = 0
        self._work = asyncio.Event()
        self._room = asyncio.Event()
        self._room.set()
        self._idle = asyncio.Event()
        self._idle.set()
        self._task: asyncio.Task[None] | None = None

    @property
    def pending(self) -> int:
        """Commits published whose marks are not written yet."""
        return len(self._pending) + self._marking

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="relay-marks")

    def check_running(self) -> None:
        if self._task is None or self._task.done():
            raise RuntimeError("relay task relay-marks stopped")

    async def add(self, commits: Sequence[Commit]) -> None:
        """Queue marks of commits Kafka acknowledged; waits while `max_pending` are queued."""
        while len(self._pending) >= self._max_pending:
            self._room.clear()
            await self._room.wait()
        self._pending.extend(commits)
        self._idle.clear()
        self._work.set()

    async def flush(self, within: float) -> bool:
        """Wait up to `within` seconds for every queued mark to be written; whether they were."""
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(within):
                await self._idle.wait()
        return self._idle.is_set()

    async def stop(self) -> None:
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    async def _run(self) -> None:
        while True:
            await self._work.wait()
            self._work.clear()
            while self._pending:
                chunk, self._pending = self._pending[:CHUNK], self._pending[CHUNK:]
                self._marking = len(chunk)
                try:
                    await self._store.mark_published(chunk)
                except Exception as exc:  # any failure: a dead marker would stop the relay
                    # Kept, not dropped: unmarked, a commit this relay remembers as published
                    # would only be published again by the next owner of its shard.
                    if isinstance(exc, WriteStoreUnavailableError):
                        log.warning(
                            "relay could not mark %d commits published; retrying: %s", len(chunk), exc
                        )
                    else:
                        log.exception("relay failed to mark %d commits published; retrying", len(chunk))
                    self._pending[:0] = chunk
                    await asyncio.sleep(self._retry_pause)
                finally:
                    self._marking = 0
                    if len(self._pending) < self._max_pending:
                        self._room.set()
            self._idle.set()
