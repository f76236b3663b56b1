"""moto's server, handling one request at a time (run by scripts/infra/moto.sh with moto's own venv).

Real DynamoDB decides a conditional write or a `TransactWriteItems` atomically: of ten concurrent
transactions that each require an item to be absent, exactly one succeeds. moto 5.2's server runs
each request on its own thread and its DynamoDB backend checks conditions and then writes without a
lock, so two of them can both succeed (measured: 6 double winners in 60 rounds of 10). Serialising the
requests restores the atomicity the write store relies on and its contract suite checks; moto holds
everything in memory, so one request at a time costs little.
"""

from __future__ import annotations

import sys
import threading
from typing import Any

from moto import server


class _OneAtATime:
    def __init__(self, app: Any) -> None:
        self._app = app
        self._lock = threading.Lock()

    def __call__(self, environ: Any, start_response: Any) -> Any:
        with self._lock:
            # Drain the body inside the lock: a lazy iterable would run backend code outside it.
            return list(self._app(environ, start_response))

    def __getattr__(self, name: str) -> Any:
        return getattr(self._app, name)


_dispatcher = server.DomainDispatcherApplication


def _serial_dispatcher(*args: Any, **kwargs: Any) -> Any:
    return _OneAtATime(_dispatcher(*args, **kwargs))


server.DomainDispatcherApplication = _serial_dispatcher  # type: ignore[misc]  # moto's main builds its app through this name

if __name__ == "__main__":
    server.main(sys.argv[1:])
