"""The flow's ids in log lines, and tracing's switch: off unless the standard variables name an exporter."""

from __future__ import annotations

import asyncio
import json
import logging

from cqrs_shared.logging_setup import JsonFormatter, bind_ids
from cqrs_shared.tracing import current_carrier, current_headers, trace_id_of, tracing_requested

TRACE = "4bf92f3577b34da6a3ce929d0e0e4736"


def _line(message: str, **extra: object) -> dict[str, object]:
    record = logging.makeLogRecord({"name": "t", "levelname": "WARNING", "msg": message, **extra})
    decoded: dict[str, object] = json.loads(JsonFormatter("svc").format(record))
    return decoded


def test_log_lines_carry_the_ids_bound_for_the_work_and_nothing_outside_it() -> None:
    with bind_ids(correlation_id="signup-7", causation_id="c-1", trace_id=TRACE):
        inside = _line("inside")
        with bind_ids(causation_id="c-2"):
            nested = _line("nested")
    outside = _line("outside")
    assert (inside["correlation_id"], inside["causation_id"], inside["trace_id"]) == (
        "signup-7",
        "c-1",
        TRACE,
    )
    assert (nested["correlation_id"], nested["causation_id"]) == ("signup-7", "c-2")
    assert not {"correlation_id", "causation_id", "trace_id"} & outside.keys()


def test_an_explicit_extra_wins_over_the_bound_id() -> None:
    with bind_ids(correlation_id="bound"):
        assert _line("m", correlation_id="explicit")["correlation_id"] == "explicit"


async def test_concurrent_tasks_keep_their_own_ids() -> None:
    async def work(name: str) -> dict[str, object]:
        with bind_ids(correlation_id=name):
            await asyncio.sleep(0)
            return _line(name)

    lines = await asyncio.gather(*(work(f"flow-{i}") for i in range(5)))
    assert [line["correlation_id"] for line in lines] == [f"flow-{i}" for i in range(5)]


def test_tracing_is_off_unless_an_exporter_is_named() -> None:
    assert not tracing_requested({})
    assert not tracing_requested({"OTEL_TRACES_EXPORTER": "none"})
    assert tracing_requested({"OTEL_TRACES_EXPORTER": "otlp"})
    assert not tracing_requested({"OTEL_TRACES_EXPORTER": "otlp", "OTEL_SDK_DISABLED": "true"})


def test_with_tracing_off_nothing_is_stored_or_sent() -> None:
    # The unit tests never turn tracing on: this process is the "off" case.
    assert current_carrier() is None
    assert current_headers() == []


def test_trace_ids_are_read_from_traceparent_values_and_bad_ones_refused() -> None:
    assert trace_id_of(f"00-{TRACE}-00f067aa0ba902b7-01") == TRACE
    assert trace_id_of(f"00-{TRACE.upper()}-00f067aa0ba902b7-01".encode()) == TRACE
    assert trace_id_of(f"00-{'0' * 32}-00f067aa0ba902b7-01") is None
    assert trace_id_of("00-not-hex-01") is None
    assert trace_id_of(f"00-{'g' * 32}-00f067aa0ba902b7-01") is None
    assert trace_id_of(None) is None
