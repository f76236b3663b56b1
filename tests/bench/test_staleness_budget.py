"""The staleness budget's join of a command's spans into stage boundaries (pure: spans are built here)."""

from __future__ import annotations

from bench.staleness_budget import STAGES, TOTAL, Sent, boundaries, budget

from cqrs_shared.testing.otlp_collector import ReceivedSpan

TRACE = "ab" * 16


def _span(
    service: str,
    kind: str,
    name: str,
    span_id: str,
    start: int,
    end: int,
    links: tuple[tuple[str, str], ...] = (),
) -> ReceivedSpan:
    # A projector batch span is a root of its own trace, linked to the publish spans it consumed.
    trace = "cd" * 16 if links else TRACE
    return ReceivedSpan(service, name, kind, trace, span_id, "", links, {}, start, end)


def _command_spans() -> list[ReceivedSpan]:
    return [
        _span("command-svc", "CONSUMER", "cmds process", "01", 110, 190),
        _span("command-svc", "INTERNAL", "store commit", "02", 130, 150),
        _span("command-svc", "PRODUCER", "publish customer events", "03", 160, 175),
    ]


def test_boundaries_take_the_batch_that_started_before_the_notification() -> None:
    sent = Sent("c-1", TRACE, acked=100, visible=230)
    batches = [
        _span("projector-svc", "CONSUMER", "customers process", "10", 200, 240, links=((TRACE, "03"),)),
        # A redelivery after the row was visible, and a batch of another trace: neither is this one's.
        _span("projector-svc", "CONSUMER", "customers process", "11", 300, 320, links=((TRACE, "03"),)),
        _span("projector-svc", "CONSUMER", "customers process", "12", 180, 190, links=((TRACE, "99"),)),
    ]
    row = boundaries(sent, {TRACE: _command_spans()}, batches)
    assert row == {
        "acked": 100,
        "door_start": 110,
        "store_start": 130,
        "store_end": 150,
        "publish_start": 160,
        "publish_end": 175,
        "batch_start": 200,
        "visible": 230,
    }
    stages = {s["stage"]: s["p50_ms"] for s in budget([row])}
    assert [stages[name] for name, _, _ in STAGES] == [1e-5, 2e-5, 2e-5, 1e-5, 1.5e-5, 2.5e-5, 3e-5]
    assert stages[TOTAL[0]] == 1.3e-4  # the stages add up to the whole: no gap, no overlap


def test_a_command_missing_a_span_or_never_visible_is_left_out() -> None:
    batch = _span("projector-svc", "CONSUMER", "customers process", "10", 200, 240, links=((TRACE, "03"),))
    without_publish = _command_spans()[:2]
    assert boundaries(Sent("c-1", TRACE, 100, 230), {TRACE: without_publish}, [batch]) == {}
    assert boundaries(Sent("c-1", TRACE, 100, 0), {TRACE: _command_spans()}, [batch]) == {}
