"""A benchmark run's results: `results.json`, a markdown table of every figure with its ratio, plots.

Everything goes to `bench/results/<UTC timestamp>/`. Plots: throughput vs offered load and latency
percentiles vs offered load, one line per ladder (query point, query page, commands).
"""

from __future__ import annotations

import json
import os
import platform
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import matplotlib as mpl

mpl.use("Agg")  # files only, no display
import matplotlib.pyplot as plt  # after mpl.use: the backend must be chosen before pyplot loads

from bench.growth_bench import table as growth_table
from bench.staleness_budget import table as budget_table

RESULTS = Path(__file__).parent / "results"


def machine() -> dict[str, Any]:
    load = os.getloadavg()
    return {
        "cpus": os.cpu_count(),
        "python": platform.python_version(),
        "kernel": platform.release(),
        "load_average_at_start": [round(x, 2) for x in load],
    }


def _fmt(value: Any, digits: int = 0) -> str:
    if value is None:
        return "n/a"
    if isinstance(value, float):
        return f"{value:,.{digits}f}"
    return str(value)


def _verdict(ratio: float | None, target: float) -> str:
    if ratio is None:
        return "n/a"
    return f"{ratio:.2f}x ({'met' if ratio >= target else 'missed'}, target {target:g}x)"


def _query_rows(q: dict[str, Any]) -> list[str]:
    rows = []
    for kind, label in (("point", "point read"), ("page", "page of 50")):
        f = q[kind]
        raw = f["raw"]
        rows.append(f"| B3 {label}: raw asyncpg | {_fmt(raw['rps'])} req/s | p99 {_fmt(raw['p99'], 1)} ms "
                    f"| {_fmt(raw.get('cpu_ms_per_op'), 3)} | reference |")  # fmt: skip
        for auth, name in (
            ("jwt_on", "JWT on"),
            ("jwt_off", "JWT off"),
            ("jwt_on_2_workers", "JWT on, 2 workers"),
        ):
            s = f[auth]
            rows.append(
                f"| B3 {label}: query-svc, {name} | {_fmt(s['rps'])} req/s "
                f"| p99 {_fmt(s['p99'], 1)} ms | {_fmt(s.get('cpu_ms_per_op'), 3)} "
                f"| {_verdict(f[f'ratio_{auth}'], 0.5)} |"
            )
        cpu_ratio = raw["cpu_ms_per_op"] / f["jwt_on"]["cpu_ms_per_op"]
        rows.append(f"| B3 {label}: CPU per read, raw / service | | | | {cpu_ratio:.2f}x |")
        rows.append(f"| B3 {label}: CPU ms per read by role, raw | | | {_roles(raw)} | |")
        rows.append(f"| B3 {label}: CPU ms per read by role, JWT on | | | {_roles(f['jwt_on'])} | |")
        if f.get("cpu_ms_per_op_at_1000"):
            rows.append(f"| B3 {label}: CPU ms per read by role at 1,000 req/s offered | | | "
                        f"{_roles(f['cpu_ms_per_op_at_1000'], prefix='')} | |")  # fmt: skip
        rows.append(f"| B3 {label}: p99 at 1,000 req/s offered (open loop) | | "
                    f"{_fmt(f['p99_ms_at_1000'], 1)} ms | | target 10 ms |")  # fmt: skip
    return rows


#: The processes behind a query figure: the client (this process, or the open-loop generator), the
#: service, and PostgreSQL (the backends of the benchmark's database).
_ROLE_NAMES = {"bench": "client", "generator": "client", "service": "service", "infra": "PostgreSQL"}


def _roles(figures: dict[str, Any], prefix: str = "cpu_ms_per_op_") -> str:
    found = [(name, figures.get(prefix + role)) for role, name in _ROLE_NAMES.items()]
    return ", ".join(f"{name} {ms:.3f}" for name, ms in found if ms is not None)


def _command_rows(c: dict[str, Any]) -> list[str]:
    ref = c["references"]
    rows = [
        f"| reference: {name.replace('_', ' ')} | {_fmt(value)} | | | reference |"
        for name, value in ref.items()
    ]
    rows.append(f"| B1 commands/s (open loop, passing step) | {_fmt(c['b1_commands_per_s'])} | | | "
                f"{_verdict(c['b1_over_r5'], 0.7)} of R5 |")  # fmt: skip
    rows.append(
        f"| B2 ack -> visible at {_fmt(c['b2_at_rate'])}/s | "
        f"| p50 {_fmt(c['b2_visible_p50_ms'], 1)} ms, p99 {_fmt(c['b2_visible_p99_ms'], 1)} ms "
        "| | target p50 20 ms, p99 100 ms |"
    )
    return rows


def _projector_rows(p: dict[str, Any]) -> list[str]:
    cpu = p.get("steady_cpu_ms_per_event", {})
    rows = [
        f"| reference: raw unnest upsert | {_fmt(p['raw_upsert_rows_per_s'])} rows/s | | | reference |",
        f"| reference: bare consume | {_fmt(p['raw_consume_per_s'])} records/s | | | reference |",
        f"| B4 steady ({p['events']:,} events) | {_fmt(p['steady_events_per_s'])} events/s | "
        f"| {_fmt(cpu.get('total'), 3)} | {_verdict(p['steady_over_upsert'], 0.6)} of raw upsert |",
    ]
    if cpu:
        rows.append(f"| B4 steady CPU per event: projector / its PostgreSQL backends | | "
                    f"| {_fmt(cpu['projector'], 3)} / {_fmt(cpu['postgres'], 3)} | |")  # fmt: skip
    live = f", live load {p['rebuild_live_rate']}/s" if "rebuild_live_rate" in p else ""
    rows.append(
        f"| B4 rebuild ({p['events']:,} events{live}) | {_fmt(p['rebuild_events_per_s'])} events/s | | | "
        f"{_verdict(p['rebuild_over_target'], 1.0)} of 50,000/s |"
    )
    if "rebuild_staleness_during" in p:
        before, during = p["rebuild_staleness_before"], p["rebuild_staleness_during"]
        rows.append(
            f"| live staleness before / during the rebuild | | p50 {_fmt(before['p50_ms'], 1)} / "
            f"{_fmt(during['p50_ms'], 1)} ms, p99 {_fmt(before['p99_ms'], 1)} / "
            f"{_fmt(during['p99_ms'], 1)} ms "
            f"| | during / before: p50 {_fmt(p['rebuild_staleness_p50_ratio'], 2)}x, "
            f"p99 {_fmt(p['rebuild_staleness_p99_ratio'], 2)}x (target at most 2x) |"
        )
    rows.append(
        f"| projector staleness at {p['staleness_rate']}/s | | p50 {_fmt(p['visible_p50_ms'], 1)} ms, "
        f"p99 {_fmt(p['visible_p99_ms'], 1)} ms | | raw consume p50 {_fmt(p['raw_consume_p50_ms'], 1)} ms |"
    )
    return rows


def markdown(results: dict[str, Any]) -> str:
    m = results["machine"]
    lines = [
        f"# Benchmark {results['started']} ({'quick' if results['quick'] else 'full'})",
        "",
        f"Machine: {m['cpus']} CPUs, Python {m['python']}, "
        f"load average at start {m['load_average_at_start']} (shared with other work: compare "
        "ratios and CPU per operation, not absolute rates).",
        "",
        "| figure | rate | latency | CPU ms/op | ratio to reference |",
        "|---|---|---|---|---|",
    ]
    suites = results["suites"]
    if "query" in suites:
        lines += _query_rows(suites["query"])
    if "commands" in suites:
        lines += _command_rows(suites["commands"])
    if "projector" in suites:
        lines += _projector_rows(suites["projector"])
    if suites.get("staleness", {}).get("stages"):
        lines += ["", budget_table(suites["staleness"])]
    if "growth" in suites:
        lines += ["", growth_table(suites["growth"])]
    plots = "`throughput.png`, `latency.png`"
    if suites.get("projector", {}).get("rebuild_progress"):
        plots += ", `rebuild_progress.png`"
    lines += ["", f"Plots: {plots}."]
    return "\n".join(lines) + "\n"


def _ladders(results: dict[str, Any]) -> dict[str, list[dict[str, Any]]]:
    suites = results["suites"]
    found: dict[str, list[dict[str, Any]]] = {}
    if "query" in suites:
        found |= {f"query {k}": suites["query"][k]["ladder"] for k in ("point", "page")}
    if "commands" in suites:
        found["commands"] = suites["commands"]["ladder"]
    return found


def plots(results: dict[str, Any], folder: Path) -> None:
    ladders = _ladders(results)
    figure, axis = plt.subplots(figsize=(7, 4.5))
    for name, steps in ladders.items():
        offered = [s["offered_per_s"] for s in steps]
        axis.plot(offered, [s["throughput_per_s"] for s in steps], marker="o", label=name)
        axis.plot(offered, offered, color="grey", linewidth=0.5)
    axis.set(xlabel="offered load (per s)", ylabel="answered (per s)", title="Throughput vs offered load")
    axis.grid(alpha=0.3)
    axis.legend()
    figure.savefig(folder / "throughput.png", dpi=100, bbox_inches="tight")
    plt.close(figure)
    figure, axis = plt.subplots(figsize=(7, 4.5))
    for name, steps in ladders.items():
        offered = [s["offered_per_s"] for s in steps]
        for key, style in (("p50_ms", "-"), ("p99_ms", "--")):
            axis.plot(offered, [s[key] for s in steps], style, marker="o", label=f"{name} {key[:3]}")
    axis.set(xlabel="offered load (per s)", ylabel="latency (ms, log)", yscale="log",
             title="Latency percentiles vs offered load")  # fmt: skip
    axis.grid(alpha=0.3)
    axis.legend(fontsize=8)
    figure.savefig(folder / "latency.png", dpi=100, bbox_inches="tight")
    plt.close(figure)


def rebuild_plot(projector: dict[str, Any], folder: Path) -> None:
    """Events the rebuild applied over time (from its progress lines), with its mean rate."""
    progress = projector.get("rebuild_progress")
    if not progress:
        return
    figure, axis = plt.subplots(figsize=(7, 4.5))
    axis.plot([t for t, _ in progress], [n for _, n in progress], marker=".", label="events applied")
    live = projector.get("rebuild_live_rate")
    axis.set(xlabel="seconds since `cqrs projector rebuild` started", ylabel="events applied",
             title=f"Rebuild progress ({_fmt(projector['rebuild_events_per_s'])} events/s"
                   + (f", live load {live} events/s)" if live else ")"))  # fmt: skip
    axis.grid(alpha=0.3)
    axis.legend()
    figure.savefig(folder / "rebuild_progress.png", dpi=100, bbox_inches="tight")
    plt.close(figure)


def write(results: dict[str, Any]) -> Path:
    """The run's folder under `bench/results/`, with results.json, results.md and the plots."""
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    folder = RESULTS / stamp
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "results.json").write_text(json.dumps(results, indent=1, default=str) + "\n")
    (folder / "results.md").write_text(markdown(results))
    plots(results, folder)
    if "projector" in results["suites"]:
        rebuild_plot(results["suites"]["projector"], folder)
    return folder
