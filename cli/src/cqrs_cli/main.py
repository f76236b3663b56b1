"""`cqrs`: one entry point; each command group lives in its own module and registers here."""

from __future__ import annotations

import typer

from cqrs_cli import aws, commands, demo, dlq, events, projector, setup, status, token

app = typer.Typer(
    name="cqrs",
    help=(
        "Operate the CQRS platform: send and trace commands, follow events, mint tokens, inspect dead "
        "letters, rebuild views."
    ),
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)
app.add_typer(commands.app, name="command")
app.add_typer(dlq.app, name="dlq")
app.add_typer(events.app, name="events")
app.add_typer(projector.app, name="projector")
app.add_typer(aws.app, name="aws")
app.command("token")(token.mint)
app.command("demo")(demo.run)
app.command("setup")(setup.run)
app.command("status")(status.status)
