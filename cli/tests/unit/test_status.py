"""Reading the outbox backlog out of command-svc's metrics text."""

from cqrs_cli.status import outbox_backlog


def test_the_backlog_is_the_relay_gauge_summed_and_absent_when_not_exported() -> None:
    metrics = (
        "# HELP cqrs_command_outbox_unpublished_commits Commits found unpublished\n"
        "# TYPE cqrs_command_outbox_unpublished_commits gauge\n"
        "cqrs_command_outbox_unpublished_commits 17.0\n"
        "cqrs_command_relay_published_total 3.0\n"
    )
    assert outbox_backlog(metrics) == 17
    assert outbox_backlog("process_cpu_seconds_total 1.0\n") is None
