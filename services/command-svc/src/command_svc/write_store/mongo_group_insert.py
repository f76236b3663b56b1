"""Group insert: concurrent single-document inserts coalesced into unordered bulk inserts.

Each accepted command is one new document, and the doors handle many commands at once. On
FerretDB every insert is its own round trip and PostgreSQL transaction, so one insert per command
caps the command rate at about 1,800/s at 32 in flight on this project's 2-core machine, while
unordered bulks of 32 reach about 6,900/s (`bench/`). So the callers' inserts queue here and go
out together: at most `max_in_flight` bulks are on their way, and whatever arrives meanwhile goes
in the next one. A bulk takes what is queued when it starts, on the event loop's next turn, so
inserts made in the same turn leave together; a lone insert leaves then too, as a bulk of one: no
timer, no added latency.

Each caller still gets its own answer: `None`, or the error of its own document (a
`DuplicateKeyError` for a taken unique key, a `WriteError` otherwise), or the error that failed the
whole bulk. An unordered bulk keeps inserting past a failed document, so one caller's collision
never fails another's insert. Documents of one aggregate are never in the same bulk as each other
from this process, because the pipeline holds each aggregate's lock around its insert.

A caller that stops waiting (cancelled) does not withdraw its document: it may be stored, which
a stored commit's relay scan and a repeated command's duplicate answer already cover, as they did
for a cancelled single insert.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable
from typing import Any

from pymongo.asynchronous.collection import AsyncCollection
from pymongo.errors import BulkWriteError, DocumentTooLarge, DuplicateKeyError, PyMongoError, WriteError

Document = dict[str, Any]
_DUPLICATE_KEY = 11000


class GroupInsert:
    def __init__(
        self,
        collection: Callable[[], AsyncCollection[Document]],
        *,
        max_batch: int = 64,
        max_in_flight: int = 2,
    ) -> None:
        #: Read at each bulk, so a client replaced by the store watchdog is used from then on.
        self._collection = collection
        self._max_batch = max_batch
        self._max_in_flight = max_in_flight
        self._queue: list[tuple[Document, asyncio.Future[None]]] = []
        self._in_flight = 0
        #: A bulk is scheduled and has not taken its documents yet.
        self._starting = False
        self._closed = False
        self._bulks: set[asyncio.Task[None]] = set()
        #: Bulks sent so far and documents in them (the grouping shows in their ratio).
        self.bulks_sent = 0
        self.documents_sent = 0

    async def insert(self, document: Document) -> None:
        if self._closed:
            raise PyMongoError("the write store was closed")
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._queue.append((document, future))
        self._send_what_fits()
        await future

    async def close(self) -> None:
        """Stop the bulks on their way; their callers and the queued ones get an error."""
        self._closed = True  # a bulk ending below must not send the queue on
        for bulk in list(self._bulks):
            bulk.cancel()
        for bulk in list(self._bulks):
            with contextlib.suppress(asyncio.CancelledError):
                await bulk
        queued, self._queue = self._queue, []
        for _, future in queued:
            _settle(future, PyMongoError("the write store was closed"))

    def _send_what_fits(self) -> None:
        # A bulk takes its documents when it starts, not when it is scheduled, so every insert
        # queued in the same turn of the event loop goes in it (the topic door starts a consumed
        # batch's commands together: their commits now leave as one bulk, not as two lone ones
        # and the rest behind them). Still no timer: a lone insert leaves on the next turn.
        if self._queue and not self._starting and self._in_flight < self._max_in_flight and not self._closed:
            self._starting = True
            self._in_flight += 1
            bulk = asyncio.create_task(self._send(), name="write-store-group-insert")
            self._bulks.add(bulk)
            bulk.add_done_callback(self._bulks.discard)

    async def _send(self) -> None:
        batch, self._queue = self._queue[: self._max_batch], self._queue[self._max_batch :]
        self._starting = False
        self._send_what_fits()  # what this bulk cannot hold goes in the next, if one is free
        try:
            if not batch:
                return
            self.bulks_sent += 1
            self.documents_sent += len(batch)
            errors = await self._insert_many([document for document, _ in batch])
            for index, (_, future) in enumerate(batch):
                _settle(future, errors.get(index))
        except BaseException as exc:  # a failed bulk fails each of its callers, then goes on
            failure = exc if isinstance(exc, Exception) else PyMongoError("the write store was closed")
            for _, future in batch:
                _settle(future, failure)
            if not isinstance(exc, Exception):
                raise
        finally:
            self._in_flight -= 1
            self._send_what_fits()

    async def _insert_many(self, documents: list[Document]) -> dict[int, Exception]:
        """The error of each failed document by its position; raises when the bulk itself failed."""
        collection = self._collection()
        try:
            await collection.insert_many(documents, ordered=False)
        except BulkWriteError as exc:
            return {error["index"]: _write_error(error) for error in exc.details.get("writeErrors", [])}
        except DocumentTooLarge:
            if len(documents) == 1:
                raise
            # One document over the size limit fails the whole bulk client-side: the others go alone.
            return await self._insert_each(collection, documents)
        return {}

    @staticmethod
    async def _insert_each(
        collection: AsyncCollection[Document], documents: list[Document]
    ) -> dict[int, Exception]:
        errors: dict[int, Exception] = {}
        for index, document in enumerate(documents):
            try:
                await collection.insert_one(document)
            except (WriteError, DocumentTooLarge) as exc:
                errors[index] = exc
        return errors


def _write_error(error: dict[str, Any]) -> Exception:
    code, message = error.get("code"), str(error.get("errmsg", "write error"))
    if code == _DUPLICATE_KEY:
        return DuplicateKeyError(message, code, error)
    return WriteError(message, code, error)


def _settle(future: asyncio.Future[None], error: BaseException | None) -> None:
    if future.done():  # its caller stopped waiting
        return
    if error is None:
        future.set_result(None)
    else:
        future.set_exception(error)
