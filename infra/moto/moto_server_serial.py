"""moto's server with two DynamoDB fidelity fixes (run by scripts/infra/moto.sh with moto's own venv).

1. One request at a time. Real DynamoDB decides a conditional write or a `TransactWriteItems`
   atomically: of ten concurrent transactions that each require an item to be absent, exactly one
   succeeds. moto 5.2's server runs each request on its own thread and its DynamoDB backend checks
   conditions and then writes without a lock, so two of them can both succeed (measured: 6 double
   winners in 60 rounds of 10). Serialising the requests restores the atomicity the write store
   relies on and its contract suite checks; moto holds everything in memory, so this costs little.
2. A cancelled transaction leaves no stream record. moto applies a transaction's writes one by one
   (each appending a record to the table's stream) and, when a later condition fails, puts back a
   deep copy of each table taken before. The records of the writes it undid stay in the stream
   objects that open shard iterators still read, and those iterators never see a later record (the
   copy has a stream of its own): a stream reader would publish a commit that was never stored and
   then nothing more. Real DynamoDB streams only what was written. Here the tables keep their
   identity: the undone state goes back into the original objects and their streams are cut back.
"""

from __future__ import annotations

import sys
import threading
from typing import Any

from moto import server
from moto.dynamodb.models import DynamoDBBackend

FIDELITY_PATH = "/cqrs-moto-fidelity"


class _OneAtATime:
    def __init__(self, app: Any) -> None:
        self._app = app
        self._lock = threading.Lock()

    def __call__(self, environ: Any, start_response: Any) -> Any:
        if environ.get("PATH_INFO") == FIDELITY_PATH:
            # Tests ask for this, so a moto started before these fixes fails them with a clear word.
            start_response("200 OK", [("Content-Type", "text/plain")])
            return [b"serial-requests,transactions-keep-streams"]
        with self._lock:
            # Drain the body inside the lock: a lazy iterable would run backend code outside it.
            return list(self._app(environ, start_response))

    def __getattr__(self, name: str) -> Any:
        return getattr(self._app, name)


_dispatcher = server.DomainDispatcherApplication


def _serial_dispatcher(*args: Any, **kwargs: Any) -> Any:
    return _OneAtATime(_dispatcher(*args, **kwargs))


server.DomainDispatcherApplication = _serial_dispatcher  # type: ignore[misc]  # moto's main builds its app through this name

_transact_write_items = DynamoDBBackend.transact_write_items


def _transact_keeping_tables(self: Any, transact_items: Any) -> Any:
    tables = dict(self.tables)
    streamed = {name: len(t.stream_shard.items) for name, t in tables.items() if t.stream_shard is not None}
    try:
        return _transact_write_items(self, transact_items)
    except Exception:
        for name, table in tables.items():
            restored = self.tables.get(name)
            if restored is not None and restored is not table:
                shard = table.stream_shard
                table.__dict__.update(restored.__dict__)
                table.stream_shard = shard  # the object open iterators read
                self.tables[name] = table
            if name in streamed and table.stream_shard is not None:
                del table.stream_shard.items[streamed[name] :]
        raise


DynamoDBBackend.transact_write_items = _transact_keeping_tables  # type: ignore[method-assign]  # see 2. above

if __name__ == "__main__":
    server.main(sys.argv[1:])
