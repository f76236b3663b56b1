"""`QUERY_SVC_WORKERS=2`: two server processes share the port, each serves reads, SIGTERM ends all."""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import pytest

from cqrs_shared.read_models.shop import CUSTOMERS
from cqrs_shared.testing.service_processes import ServiceProcess, free_port
from query_svc.testing import insert_rows

pytestmark = pytest.mark.integration

SECRET = "query-test-secret-0123456789abcdef0123456789"


def _children(pid: int) -> list[int]:
    found = []
    for proc in Path("/proc").iterdir():
        if proc.name.isdigit():
            try:
                parent = int((proc / "stat").read_text().rsplit(")", 1)[1].split()[1])
            except (OSError, ValueError, IndexError):
                continue
            if parent == pid:
                found.append(int(proc.name))
    return found


def _spawned(pid: int) -> list[int]:
    """The children `pid` started through multiprocessing (uvicorn's workers, a resource tracker)."""
    return [c for c in _children(pid) if b"multiprocessing" in Path(f"/proc/{c}/cmdline").read_bytes()]


def _ended(pid: int) -> bool:
    """Gone, or exited and waiting to be reaped (a zombie: PID 1 of a container may reap late)."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] == "Z"
    except OSError:
        return True


async def test_two_workers_serve_reads_and_stop_on_sigterm(
    shop_dsn: str,
    admin: asyncpg.Connection[asyncpg.Record],
    make_customer: Callable[..., dict[str, Any]],
    readers: dict[str, str],
) -> None:
    await insert_rows(admin, "shop_b1", CUSTOMERS, [make_customer("c-1", 1)])
    port = free_port()
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith("QUERY_SVC_")},
        "DATABASE_URL": shop_dsn,
        "CQRS_AUTH_MODE": "jwt",
        "JWT_SECRET": SECRET,
        "QUERY_SVC_PORT": str(port),
        "QUERY_SVC_WORKERS": "2",
        "QUERY_SVC_POOL_SIZE": "2",
        "LOG_LEVEL": "WARNING",
    }
    service = ServiceProcess("query_svc", port, env, Path(tempfile.mkdtemp()) / "query-workers.log")
    service.start().wait_ready()
    try:
        assert service.process is not None
        # uvicorn's supervisor starts one process per worker (multiprocessing may add a helper).
        workers = _spawned(service.process.pid)
        assert len(workers) >= 2, service.tail()
        async with httpx.AsyncClient(base_url=service.url, timeout=5) as client:
            answers = [await client.get("/v1/customers/c-1", headers=readers) for _ in range(20)]
        assert {a.status_code for a in answers} == {200}
        assert {a.json()["id"] for a in answers} == {"c-1"}
    finally:
        code = service.stop(timeout=30)
    assert code == 0, service.tail()
    assert all(_ended(pid) for pid in workers)
