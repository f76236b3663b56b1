"""The pure parts of `cqrs command trace` and `cqrs events tail`: `--since`, and which topics a tail reads."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
import typer
from typer.testing import CliRunner

from cqrs_cli.command_trace import parse_since
from cqrs_cli.events import event_topics
from cqrs_cli.main import app
from cqrs_shared.topics import TopicNames

NOW = datetime(2026, 11, 30, 12, 0, tzinfo=UTC)


@pytest.mark.parametrize(
    ("text", "ago"),
    [
        ("90s", timedelta(seconds=90)),
        ("30m", timedelta(minutes=30)),
        ("2h", timedelta(hours=2)),
        ("7d", timedelta(days=7)),
    ],
)
def test_since_takes_an_age(text: str, ago: timedelta) -> None:
    assert parse_since(text, NOW) == NOW - ago


def test_since_takes_an_iso_time_in_utc_unless_it_says_otherwise() -> None:
    assert parse_since("2026-11-30T10:00:00", NOW) == datetime(2026, 11, 30, 10, 0, tzinfo=UTC)
    assert parse_since("2026-11-30T10:00:00+02:00", NOW) == datetime(2026, 11, 30, 8, 0, tzinfo=UTC)
    assert parse_since(None, NOW) is None


@pytest.mark.parametrize("text", ["yesterday", "5w", "m", "-3h", ""])
def test_since_refuses_anything_else(text: str) -> None:
    with pytest.raises(typer.BadParameter, match="an age"):
        parse_since(text, NOW)


def test_a_tail_reads_the_event_topics_of_its_prefix_only() -> None:
    names = {
        "p.events.customer",
        "p.events.order",
        "p.events.dlq",
        "p.events.",
        "p.commands",
        "q.events.customer",
        "events.customer",
    }
    assert event_topics(names, TopicNames("p.")) == ["p.events.customer", "p.events.order"]
    assert event_topics(names, TopicNames("")) == ["events.customer"]


def test_trace_refuses_an_unknown_projection_before_connecting_anywhere(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Nothing listens there: a refusal that needed Kafka would say "cannot reach Kafka" instead.
    monkeypatch.setenv("KAFKA_BOOTSTRAP_SERVERS", "127.0.0.1:9")
    runner = CliRunner()
    args = ["command", "trace", "0b6f4a40-3e0e-4a55-8f0b-5f1b2c3d4e5f"]
    named = runner.invoke(app, [*args, "--projection", "nosuch"])
    assert named.exit_code == 2
    assert "no projection named 'nosuch'" in named.output
    monkeypatch.setenv("PROJECTOR_SVC_PROJECTIONS", "nosuch")
    configured = runner.invoke(app, args)
    assert configured.exit_code == 2
    assert "PROJECTOR_SVC_PROJECTIONS" in configured.output
    assert "Traceback" not in named.output + configured.output
