"""One soak run: start the private system, load it, inject the seeded faults, converge, check, report."""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections import Counter
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import httpx

from soak.checker import check
from soak.config import SoakConfig
from soak.convergence import ConvergenceProbe, wait_converged
from soak.faults import FaultInjector, schedule
from soak.ledger import Ledger
from soak.load import HttpDoor, OpenLoop, QueryReader, TopicDoor
from soak.private_stack import clean_abandoned
from soak.recovery import Prober
from soak.report import FaultOutcome, Report
from soak.results import ResultsReader
from soak.sources import Observed, observe
from soak.system import MONGODB_DATABASE, READER_ROLES, WRITER_ROLES, System, start_system, stop_system
from soak.workload import Workload

log = logging.getLogger("soak")


def say(message: str) -> None:
    print(f"[soak {datetime.now(UTC):%H:%M:%S}] {message}", flush=True)


async def run_soak(config: SoakConfig) -> tuple[Report, Path]:
    """Run the soak; the report and the directory it was written to."""
    started = datetime.now(UTC)
    run_id = f"{started:%Y%m%dT%H%M%SZ}-{config.seed}"
    run_dir = config.results_root / f"soak-{run_id}"
    run_dir.mkdir(parents=True, exist_ok=True)
    logging.basicConfig(
        filename=run_dir / "soak.log", level=logging.INFO, format="%(asctime)s %(name)s %(message)s"
    )
    # One line per request or per failed Kafka fetch would drown what the soak itself reports.
    for noisy in ("httpx", "aiokafka"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    plan = (
        []
        if config.no_faults
        else schedule(
            config.seed, quick=config.quick, minutes=config.minutes, settle_mean_s=sum(config.settle_s) / 2
        )
    )
    report = Report(config, started.isoformat(), plan)
    say(f"results in {run_dir}")
    say(f"fault schedule (seed {config.seed}, {len(plan)} faults):")
    for i, fault in enumerate(plan, 1):
        say(f"  {i:3}. {fault.describe()}")
    wall = time.monotonic()
    for stale in await clean_abandoned(config.state_root, config.cache_dir):
        say(f"removed the abandoned private stack {stale}")
    say("starting the private Kafka, PostgreSQL and FerretDB, then the services")
    system = await start_system(config, run_dir, run_id)
    try:
        await _drive(config, system, report)
    finally:
        say("stopping the services and the private stack")
        await stop_system(system, config, run_dir)
        report.wall_s = round(time.monotonic() - wall, 1)
        report.write(run_dir)
    return report, run_dir


@dataclass
class Clients:
    """The soak's client side: the two doors, the query reader, the results reader and the prober."""

    ledger: Ledger
    workload: Workload
    rng: random.Random
    results: ResultsReader
    topic: TopicDoor
    http: HttpDoor
    reader: QueryReader
    prober: Prober

    async def send_command(self) -> None:
        planned = self.workload.next()
        self.ledger.sends.append(planned)
        await (self.http.send(planned) if planned.door == "http" else self.topic.send(planned))


@asynccontextmanager
async def _clients(config: SoakConfig, system: System) -> AsyncIterator[Clients]:
    """The load's clients, and the prober's own (so probes never queue behind the load's backlog)."""
    ledger = Ledger()
    rng = random.Random(f"load-{config.seed}")  # a reproducible workload, not a secret
    workload = Workload(rng, customer_slots=config.customer_slots, order_slots=config.order_slots)
    writer, reader_token = system.token(WRITER_ROLES), system.token(READER_ROLES)
    bootstrap, give_up = system.stack.kafka_bootstrap, config.client_give_up_s
    results = ResultsReader(bootstrap, system.topics)
    topic = TopicDoor(bootstrap, system.topics.commands, writer, ledger, give_up)
    probe_topic = TopicDoor(bootstrap, system.topics.commands, writer, ledger, give_up)
    limits = httpx.Limits(max_connections=100, max_keepalive_connections=100)
    async with httpx.AsyncClient(limits=limits) as client, httpx.AsyncClient() as probe_client:
        http = HttpDoor(client, system.command.url, writer, ledger, give_up)
        reader = QueryReader(client, system.query.url, reader_token, ledger, rng, config.customer_slots)
        prober = Prober(
            workload,
            ledger,
            probe_client,
            HttpDoor(probe_client, system.command.url, writer, ledger, give_up),
            probe_topic,
            results,
            list(system.services.values()),
            system.query,
            reader_token,
        )
        results.start()
        await topic.start()
        await probe_topic.start()
        try:
            yield Clients(ledger, workload, rng, results, topic, http, reader, prober)
        finally:
            await results.close()
            await topic.close()
            await probe_topic.close()


async def _drive(config: SoakConfig, system: System, report: Report) -> None:
    async with _clients(config, system) as clients:
        commands = OpenLoop("commands", config.command_rate, clients.send_command, clients.ledger)
        queries = OpenLoop(
            "queries", config.query_rate, clients.reader.read_once, clients.ledger, max_in_flight=50
        )
        commands.start()
        queries.start()
        try:
            last_heal = await _faults(config, system, report, clients.prober, clients.rng)
            say("last fault over: stopping new arrivals, waiting for convergence")
            await queries.stop(drain=False)
            await _converge(config, system, report, clients, commands, last_heal)
        finally:
            await commands.stop(drain=False)
            await queries.stop(drain=False)
    await _check(config, system, report, clients.ledger)


async def _faults(
    config: SoakConfig, system: System, report: Report, prober: Prober, rng: random.Random
) -> float:
    """Inject the schedule (a full run stops starting faults after `minutes`); when the last one ended."""
    injector = FaultInjector(system.stack, system.services, system.proxies)
    say(f"warm-up: {config.warmup_s:g} s of load without faults")
    await asyncio.sleep(config.warmup_s)
    begin = time.monotonic()
    last_heal = begin
    if config.no_faults:
        load_s = 60.0 if config.quick else config.minutes * 60
        say(f"no faults: {load_s:g} s of load")
        await asyncio.sleep(load_s)
        return time.monotonic()
    for i, fault in enumerate(report.schedule, 1):
        if not config.quick and time.monotonic() - begin > config.minutes * 60:
            say(f"{config.minutes:g} minutes are over: {len(report.schedule) - i + 1} planned faults not run")
            break
        injected = time.monotonic()
        outcome = FaultOutcome(fault, round(injected - begin, 1), 0.0)
        report.faults.append(outcome)
        try:
            await injector.inject(fault)
        except Exception as exc:  # noqa: BLE001  # a failed fault is reported, and the run goes on
            outcome.error = f"{type(exc).__name__}: {exc}"
        last_heal = time.monotonic()
        outcome.duration_s = round(last_heal - injected, 1)
        outcome.recovery = await prober.measure(last_heal, config.recovery_give_up_s)
        r = outcome.recovery
        say(
            f"{i:3}/{len(report.schedule)} {fault.describe()}: {outcome.duration_s:g} s; recovered "
            f"{r.total_s} s ({r.describe()})" + (f" ERROR {outcome.error}" if outcome.error else "")
        )
        await asyncio.sleep(rng.uniform(*config.settle_s))
    return last_heal


async def _converge(
    config: SoakConfig, system: System, report: Report, clients: Clients, commands: OpenLoop, last_heal: float
) -> None:
    drain = asyncio.create_task(commands.stop(drain=True))

    def pending() -> int:
        silent = sum(1 for command_id in clients.ledger.produced if not clients.results.answered(command_id))
        return silent + commands.in_flight

    probe = ConvergenceProbe(system.stack.mongodb_uri, MONGODB_DATABASE, system.stack.postgres_dsn())
    try:
        report.convergence_s, report.convergence_state = await wait_converged(
            probe, pending, since=last_heal, within=config.convergence_give_up_s
        )
    finally:
        await probe.close()
        await drain
    say(f"convergence: {report.convergence_s} s after the last fault ({report.convergence_state})")


async def _check(config: SoakConfig, system: System, report: Report, ledger: Ledger) -> None:
    # Stop the services first: a system still working (a run that did not converge) would store a
    # commit and publish its outcome between the store read and the Kafka read, and the checker
    # would report an outcome whose commit "is missing". Stopped, the three sources agree in time.
    await system.supervisor.close()
    for service in system.services.values():
        await service.stop()
    say("checking Kafka, the write store and PostgreSQL against what the clients were told")
    observed = await observe(
        system.stack.kafka_bootstrap,
        system.topics,
        system.stack.mongodb_uri,
        MONGODB_DATABASE,
        system.stack.postgres_dsn(),
    )
    report.violations = check(ledger, observed)
    report.judge_timing()
    report.incidents = list(system.supervisor.incidents)
    report.load = _load_summary(ledger)
    report.observed = _observed_summary(observed)


def _load_summary(ledger: Ledger) -> dict[str, object]:
    sends = Counter(f"{p.door}/{p.intent}" for p in ledger.sends)
    accepted = sum(1 for a in ledger.http_acks if a.status == "accepted")
    summary = (
        f"{len(ledger.sends)} sends ({dict(sends)}), {len(ledger.http_acks)} HTTP answers "
        f"({accepted} accepted), {len(ledger.produced)} produced to the commands topic, {ledger.shed} shed"
    )
    return {
        "summary": summary,
        "sends": dict(sends),
        "statuses": {f"{where} {status}": n for (where, status), n in sorted(ledger.statuses.items())},
        "http_gave_up": len(ledger.http_gave_up),
        "unproduced": len(ledger.unproduced),
        "shed": ledger.shed,
    }


def _observed_summary(observed: Observed) -> dict[str, object]:
    distinct = {(e.event.aggregate_type, e.event.aggregate_id, e.event.version) for e in observed.events}
    return {
        "commits": len(observed.commits),
        "stored_rejections": len(observed.rejections),
        "events_on_topics": len(observed.events),
        "republished_duplicates": len(observed.events) - len(distinct),
        "outcomes_on_results_topic": len(observed.results),
        "commands_dead_lettered": len(observed.dead_letters),
        "events_dead_lettered": observed.events_dlq,
        "customers": len(observed.rows.customers),
        "orders": len(observed.rows.orders),
    }
