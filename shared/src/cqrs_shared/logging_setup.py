"""Structured logging: one JSON object per line on stderr, so any log shipper can parse it.

Every line names the message flow it belongs to where that is known: `correlation_id`,
`causation_id` and `trace_id`, bound for the work of one command or one batch (`bind_ids`), the
trace id otherwise taken from the current span. Fields a call passes in `extra` win.
"""

from __future__ import annotations

import json
import logging
import sys
from contextvars import ContextVar, Token
from datetime import UTC, datetime
from typing import Any

from cqrs_shared.tracing import current_trace_id

_STANDARD = set(vars(logging.makeLogRecord({})))
#: The ids of the flow the current task works for; a task inherits its creator's.
_BOUND: ContextVar[dict[str, str]] = ContextVar("cqrs_log_ids", default={})  # noqa: B039 (never mutated)


class BoundIds:
    """The context manager `bind_ids` returns: a plain class, as it runs several times per command."""

    __slots__ = ("_ids", "_token")

    def __init__(self, ids: dict[str, str]) -> None:
        self._ids = ids
        self._token: Token[dict[str, str]] | None = None

    def __enter__(self) -> None:
        if self._ids:
            self._token = _BOUND.set({**_BOUND.get(), **self._ids})

    def __exit__(self, *_: object) -> None:
        if self._token is not None:
            _BOUND.reset(self._token)
            self._token = None


def bind_ids(
    *, correlation_id: str | None = None, causation_id: str | None = None, trace_id: str | None = None
) -> BoundIds:
    """Name the flow in every log line of the block (and of tasks it starts); None values are left out."""
    ids = {}
    if correlation_id is not None:
        ids["correlation_id"] = correlation_id
    if causation_id is not None:
        ids["causation_id"] = causation_id
    if trace_id is not None:
        ids["trace_id"] = trace_id
    return BoundIds(ids)


def bound_ids() -> dict[str, str]:
    """The ids `bind_ids` bound for the current task, with the current span's trace id if none was."""
    ids = dict(_BOUND.get())
    if "trace_id" not in ids and (trace_id := current_trace_id()) is not None:
        ids["trace_id"] = trace_id
    return ids


class JsonFormatter(logging.Formatter):
    def __init__(self, service: str) -> None:
        super().__init__()
        self._service = service

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "ts": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "service": self._service,
            "logger": record.name,
            "msg": record.getMessage(),
            **bound_ids(),
        }
        entry.update({k: v for k, v in vars(record).items() if k not in _STANDARD and not k.startswith("_")})
        if record.exc_info:
            entry["exc"] = self.formatException(record.exc_info)
        return json.dumps(entry, default=str)


def configure_logging(service: str, level: str = "INFO", fmt: str = "json") -> None:
    handler = logging.StreamHandler(sys.stderr)
    if fmt == "json":
        handler.setFormatter(JsonFormatter(service))
    else:
        handler.setFormatter(logging.Formatter(f"%(asctime)s {service} %(levelname)s %(name)s: %(message)s"))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    # aiokafka logs every coordinator hiccup at INFO; WARNING keeps the signal.
    logging.getLogger("aiokafka").setLevel(max(logging.WARNING, root.level))
