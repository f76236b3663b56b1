"""The system under test: the private stack, the TCP proxies in front of it, the three services."""

from __future__ import annotations

import asyncio
import contextlib
import os
import secrets
import shutil
import time
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path

import httpx

from cqrs_shared.auth import mint_token
from cqrs_shared.testing.tcp_proxy import TcpProxy
from cqrs_shared.topics import TopicNames
from soak.config import SoakConfig
from soak.private_stack import Ports, PrivateStack, free_port
from soak.services import ServiceProcess, Supervisor

MONGODB_DATABASE = "soak"
ISSUER = AUDIENCE = "cqrs-platform"
WRITER_ROLES = ["customers:write", "customers:erase", "orders:write"]
READER_ROLES = ["customers:read", "orders:read"]
#: Addresses and service knobs of the developer's environment must not leak into the soak's services.
_FOREIGN = (
    "COMMAND_SVC_",
    "PROJECTOR_SVC_",
    "QUERY_SVC_",
    "KAFKA_",
    "MONGODB_",
    "DATABASE_",
    "CQRS_",
    "JWT_",
)


@dataclass
class System:
    stack: PrivateStack
    proxies: dict[str, TcpProxy]
    services: dict[str, ServiceProcess]
    supervisor: Supervisor
    secret: str
    topics: TopicNames

    def token(self, roles: list[str]) -> str:
        return "Bearer " + mint_token(
            self.secret, subject="soak", roles=roles, issuer=ISSUER, audience=AUDIENCE, ttl=timedelta(hours=6)
        )

    @property
    def command(self) -> ServiceProcess:
        return self.services["command-svc"]

    @property
    def query(self) -> ServiceProcess:
        return self.services["query-svc"]


async def start_system(config: SoakConfig, run_dir: Path, run_id: str) -> System:
    stack = PrivateStack(config.state_root / run_id, config.cache_dir, Ports.pick(), run_dir / "stack.log")
    await stack.up()
    proxies = {
        "command-svc->ferretdb": TcpProxy(stack.ports.ferretdb),
        "projector-svc->postgres": TcpProxy(stack.ports.postgres),
        "query-svc->postgres": TcpProxy(stack.ports.postgres),
    }
    for proxy in proxies.values():
        await proxy.start()
    secret = secrets.token_hex(32)
    services = _services(stack, proxies, secret, run_dir)
    for name in ("projector-svc", "command-svc", "query-svc"):
        services[name].start()
    system = System(
        stack,
        proxies,
        services,
        Supervisor(
            list(services.values()), period_s=config.liveness_period_s, failures=config.liveness_failures
        ),
        secret,
        TopicNames(""),
    )
    await _wait_ready(list(services.values()), 90)
    system.supervisor.start()
    return system


def _services(
    stack: PrivateStack, proxies: dict[str, TcpProxy], secret: str, run_dir: Path
) -> dict[str, ServiceProcess]:
    base = {k: v for k, v in os.environ.items() if not k.startswith(_FOREIGN)}
    base.update(
        KAFKA_BOOTSTRAP_SERVERS=stack.kafka_bootstrap,
        CQRS_AUTH_MODE="jwt",
        JWT_SECRET=secret,
        LOG_FORMAT="json",
        LOG_LEVEL="INFO",
        COMMAND_SVC_RELAY_SCAN_INTERVAL_SECONDS="0.5",
        QUERY_SVC_CURSOR_SECRET=secrets.token_hex(16),
    )

    def pg(link: str) -> str:
        return f"postgresql://cqrs:cqrs@127.0.0.1:{proxies[link].port}/cqrs"

    specs = {
        "command-svc": (
            "command_svc",
            "COMMAND_SVC_",
            {
                "MONGODB_URI": f"mongodb://127.0.0.1:{proxies['command-svc->ferretdb'].port}/",
                "MONGODB_DATABASE": MONGODB_DATABASE,
            },
        ),
        "projector-svc": ("projector_svc", "PROJECTOR_SVC_", {"DATABASE_URL": pg("projector-svc->postgres")}),
        "query-svc": ("query_svc", "QUERY_SVC_", {"DATABASE_URL": pg("query-svc->postgres")}),
    }
    services = {}
    for name, (module, prefix, extra) in specs.items():
        port = free_port()
        env = {**base, **extra, f"{prefix}PORT": str(port), f"{prefix}HOST": "127.0.0.1"}
        services[name] = ServiceProcess(name, module, port, env, run_dir / f"{name}.log")
    return services


async def _wait_ready(services: list[ServiceProcess], within: float) -> None:
    deadline = time.monotonic() + within
    async with httpx.AsyncClient() as client:
        while time.monotonic() < deadline:
            for service in services:
                if service.exited():
                    raise RuntimeError(f"{service.name} exited while starting; see {service.log_path}")
            if all([await s.status(client, "/readyz") == 200 for s in services]):
                return
            await asyncio.sleep(0.5)
    raise RuntimeError(f"services not ready within {within} s; see the logs in {services[0].log_path.parent}")


async def stop_system(system: System, config: SoakConfig, run_dir: Path) -> None:
    await system.supervisor.close()
    for service in system.services.values():
        await service.stop()
    for proxy in system.proxies.values():
        await proxy.close()
    await system.stack.down()
    for log_file in ("kafka/logs/server.log", "postgres/postgres.log", "ferretdb/ferretdb.log"):
        with contextlib.suppress(OSError):
            shutil.copy(system.stack.state_dir / log_file, run_dir / Path(log_file).name)
    if not config.keep_stack:
        system.stack.remove()
