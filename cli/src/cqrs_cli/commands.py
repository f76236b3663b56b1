"""`cqrs command send`: put a command onto `commands` (or POST it), optionally awaiting its outcome;
`cqrs command trace` (in `command_trace`): what happened to one."""

from __future__ import annotations

import asyncio
import json
import os
import uuid
from typing import Annotated, Any

import httpx
import typer
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from pydantic import ValidationError

from cqrs_cli import command_trace
from cqrs_shared.envelopes import CommandEnvelope
from cqrs_shared.topics import TopicNames

app = typer.Typer(help="Send commands, and trace what happened to one.", no_args_is_help=True)
app.command("trace", epilog=command_trace.EPILOG)(command_trace.trace)


def _envelope(
    type_: str, aggregate: str, payload: str, expected_version: int | None, correlation: str | None
) -> dict[str, Any]:
    """A validated command envelope built from command-line text."""
    try:
        body = json.loads(payload)
    except json.JSONDecodeError as exc:
        raise typer.BadParameter(f"not JSON: {exc}", param_hint="--payload") from exc
    envelope = {
        "command_id": str(uuid.uuid4()),
        "type": type_,
        "aggregate_id": aggregate,
        "payload": body,
        "metadata": {"correlation_id": correlation} if correlation else {},
    }
    if expected_version is not None:
        envelope["expected_version"] = expected_version
    try:
        CommandEnvelope.model_validate(envelope)
    except ValidationError as exc:
        raise typer.BadParameter(str(exc)) from exc
    return envelope


async def send_on_topic(
    envelope: dict[str, Any], token: str | None, wait: float | None
) -> dict[str, Any] | None:
    """Produce the command keyed by its aggregate; with `wait`, return its outcome (TimeoutError if none)."""
    bootstrap = os.environ.get("KAFKA_BOOTSTRAP_SERVERS", "127.0.0.1:9092")
    topics = TopicNames(os.environ.get("CQRS_TOPIC_PREFIX", ""))
    results = None
    if wait is not None:
        results = AIOKafkaConsumer(topics.command_results, bootstrap_servers=bootstrap, group_id=None)
        await results.start()
        await results.seek_to_end()  # before sending, so the outcome cannot slip past
    try:
        producer = AIOKafkaProducer(bootstrap_servers=bootstrap, enable_idempotence=True, acks="all")
        await producer.start()
        try:
            headers = [("authorization", f"Bearer {token}".encode())] if token else []
            await producer.send_and_wait(
                topics.commands,
                json.dumps(envelope).encode(),
                key=envelope["aggregate_id"].encode(),
                headers=headers,
            )
        finally:
            await producer.stop()
        if results is None or wait is None:
            return None
        return await _await_outcome(results, envelope["command_id"], wait)
    finally:
        if results is not None:
            await results.stop()


async def _await_outcome(consumer: AIOKafkaConsumer, command_id: str, wait: float) -> dict[str, Any]:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + wait
    while loop.time() < deadline:
        for records in (await consumer.getmany(timeout_ms=250)).values():
            for record in records:
                if record.key == command_id.encode():
                    outcome: dict[str, Any] = json.loads(record.value)
                    return outcome
    raise TimeoutError(f"no outcome for {command_id} within {wait}s")


@app.command("send")
def send(
    type_: Annotated[str, typer.Argument(metavar="TYPE", help="Command type, e.g. RegisterCustomer.")],
    aggregate: Annotated[str, typer.Option("--aggregate", "-a", help="The aggregate id.")],
    payload: Annotated[str, typer.Option("--payload", "-p", help="The payload as JSON.")] = "{}",
    expected_version: Annotated[int | None, typer.Option(min=0)] = None,
    correlation_id: Annotated[str | None, typer.Option()] = None,
    http: Annotated[bool, typer.Option("--http", help="POST to command-svc instead of the topic.")] = False,
    wait: Annotated[bool, typer.Option("--wait", help="Print the outcome from command-results.")] = False,
    timeout: Annotated[float, typer.Option(min=0.1, help="Seconds to wait for the outcome.")] = 30.0,
    token: Annotated[
        str | None, typer.Option(envvar="CQRS_TOKEN", help="Bearer token (see `cqrs token`).")
    ] = None,
    url: Annotated[str, typer.Option(envvar="COMMAND_URL")] = "http://127.0.0.1:8081",
) -> None:
    """Send one command. Exits 0 accepted (or sent), 1 rejected, 2 bad arguments, 3 no outcome in time."""
    envelope = _envelope(type_, aggregate, payload, expected_version, correlation_id)
    if http:
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        response = httpx.post(f"{url}/v1/commands", json=envelope, headers=headers, timeout=timeout)
        typer.echo(json.dumps(response.json(), indent=2))
        raise typer.Exit(0 if response.is_success else 1)
    try:
        outcome = asyncio.run(send_on_topic(envelope, token, timeout if wait else None))
    except TimeoutError as exc:
        typer.echo(str(exc), err=True)
        raise typer.Exit(3) from exc
    if outcome is None:
        typer.echo(json.dumps({"sent": envelope["command_id"]}))
        return
    typer.echo(json.dumps(outcome, indent=2))
    raise typer.Exit(0 if outcome.get("status") == "accepted" else 1)
