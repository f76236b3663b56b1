"""`cqrs status`: the whole platform in one table (or `--json`) for operators and scripts.

One row per service (its `/readyz`: ready, not ready with the failing checks, or down), one per
view (the projection's active build, lag behind its event topics, staleness, parked events) and one
per dead-letter topic (records on it), plus command-svc's outbox backlog (the unpublished commits
its relay last found, from its `/metrics`). Exits 0 when every service is ready, 1 otherwise.
"""

from __future__ import annotations

import asyncio
import json
import re
from dataclasses import asdict, dataclass, field
from typing import Annotated, Any

import httpx
import typer

from projector_svc import operations
from projector_svc.operations import ProjectionStatus
from projector_svc.settings import ProjectorSettings

_BACKLOG = re.compile(
    r"^cqrs_command_outbox_unpublished_commits(?:\{[^}]*\})?\s+([0-9.eE+-]+)$", re.MULTILINE
)


@dataclass
class ServiceState:
    """A service's readiness as its `/readyz` answered (`down`: it did not answer)."""

    name: str
    url: str
    state: str
    failing: dict[str, Any] = field(default_factory=dict)


@dataclass
class Report:
    """Everything `cqrs status` shows."""

    services: list[ServiceState]
    views: list[dict[str, Any]]
    dead_letters: dict[str, int]
    outbox_backlog: int | None
    #: Why the dead-letter topics could not be counted (Kafka unreachable), if so.
    dead_letters_error: str | None = None

    @property
    def ready(self) -> bool:
        return all(s.state == "ready" for s in self.services) and all("error" not in v for v in self.views)


def outbox_backlog(metrics: str) -> int | None:
    """The relay's unpublished commits in a `/metrics` text (summed over its series), if present."""
    values = [float(v) for v in _BACKLOG.findall(metrics)]
    return int(sum(values)) if values else None


async def _service(client: httpx.AsyncClient, name: str, url: str) -> ServiceState:
    try:
        response = await client.get(f"{url}/readyz")
    except httpx.HTTPError:
        return ServiceState(name, url, "down")
    if response.status_code == 200:
        return ServiceState(name, url, "ready")
    try:
        failing = response.json().get("checks", {})  # the 503 problem names the failing checks
    except (ValueError, AttributeError):
        failing = {}
    return ServiceState(name, url, "not ready", failing if isinstance(failing, dict) else {})


async def _backlog(client: httpx.AsyncClient, url: str) -> int | None:
    try:
        return outbox_backlog((await client.get(f"{url}/metrics")).text)
    except httpx.HTTPError:
        return None


async def _view_of(settings: ProjectorSettings, name: str) -> dict[str, Any]:
    try:
        return _view(await operations.status(settings, name))
    except Exception as exc:  # noqa: BLE001  # a status report shows what it could not read, and goes on
        return {"projection": name, "active_build": None, "error": f"{type(exc).__name__}: {exc}"}


def _view(status: ProjectionStatus) -> dict[str, Any]:
    return {
        "projection": status.projection,
        "active_build": status.active,
        "lag": status.lag,
        "staleness_seconds": round(status.staleness_seconds, 3),
        "parked": status.parked,
    }


async def collect(urls: dict[str, str]) -> Report:
    """Ask every service, projection and dead-letter topic, concurrently where they are independent."""
    settings = ProjectorSettings()
    async with httpx.AsyncClient(timeout=3.0) as client:
        services = await asyncio.gather(*(_service(client, n, u) for n, u in urls.items()))
        backlog = await _backlog(client, urls["command-svc"])
    views = [await _view_of(settings, name) for name in settings.projections]
    dead: dict[str, int] = {}
    error: str | None = None
    try:
        dead = await operations.dead_letter_counts(settings)
    except Exception as exc:  # noqa: BLE001  # a status report shows what it could not read, and goes on
        error = f"{type(exc).__name__}: {exc}"
    return Report(list(services), views, dead, backlog, error)


def _table(report: Report) -> list[str]:
    rows = [("NAME", "STATE", "LAG", "STALENESS", "DETAIL")]
    for s in report.services:
        detail = ", ".join(sorted(s.failing)) if s.failing else s.url
        if s.name == "command-svc":
            backlog = "?" if report.outbox_backlog is None else str(report.outbox_backlog)
            detail = f"outbox backlog {backlog}; {detail}"
        rows.append((s.name, s.state, "", "", detail))
    for v in report.views:
        if "error" in v:
            rows.append((f"view {v['projection']}", "unavailable", "", "", v["error"][:120]))
            continue
        parked = ", ".join(f"{n} {r}" for r, n in sorted(v["parked"].items())) or "none"
        state = v["active_build"] or "no build"
        rows.append(
            (
                f"view {v['projection']}",
                state,
                str(v["lag"]),
                f"{v['staleness_seconds']:.1f}s",
                f"parked {parked}",
            )
        )
    if report.dead_letters_error:
        rows.append(("dead letters", "unavailable", "", "", report.dead_letters_error[:120]))
    for topic, count in report.dead_letters.items():
        rows.append((topic, "dead letters", "", "", f"{count} record(s)"))
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    return ["  ".join(cell.ljust(w) for cell, w in zip(r, widths, strict=True)).rstrip() for r in rows]


def status(
    command_url: Annotated[str, typer.Option(envvar="COMMAND_URL")] = "http://127.0.0.1:8081",
    projector_url: Annotated[str, typer.Option(envvar="PROJECTOR_URL")] = "http://127.0.0.1:8082",
    query_url: Annotated[str, typer.Option(envvar="QUERY_URL")] = "http://127.0.0.1:8080",
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """Every service's readiness, each view's lag and staleness, the outbox backlog and the
    dead-letter counts, in one table. Exits 0 when every service is ready, 1 otherwise."""
    urls = {"command-svc": command_url, "projector-svc": projector_url, "query-svc": query_url}
    report = asyncio.run(collect(urls))
    if as_json:
        out = asdict(report) | {"ready": report.ready}
        typer.echo(json.dumps(out, indent=2, default=str))
    else:
        for line in _table(report):
            typer.echo(line)
    raise typer.Exit(0 if report.ready else 1)
