"""What the open-loop generator calls: query-svc over HTTP, and command-svc through its topic door.

Each target is built from a JSON config (the orchestrator's, on the generator's stdin) and answers
one request per `call`: True when it succeeded. `finish` adds per-step figures that only the
target can know (for commands: accepted, projected, staleness) once the ladder is over.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import random
import statistics
import time
import uuid
from collections.abc import Callable
from typing import Any, Protocol

import asyncpg
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer

from bench.command_bench import command_record
from bench.http_client import KeepAliveClient
from bench.query_bench import page_path, point_path, prepared
from cqrs_shared.read_models.notifications import CHANNEL, decode
from cqrs_shared.topics import TopicNames
from projector_svc.testing.kafka_feed import partitions_of


class Target(Protocol):
    async def start(self) -> None: ...
    async def call(self, step: int, index: int) -> bool: ...
    async def finish(self, steps: list[dict[str, Any]]) -> dict[str, Any]: ...
    async def stop(self) -> None: ...


class QueryTarget:
    """GETs over `connections` keep-alive connections; a request waits for a free one (that wait
    is part of its latency, as a client's would be)."""

    def __init__(self, config: dict[str, Any], path: Callable[[random.Random, int], str]) -> None:
        self._config = config
        self._paths = prepared(path, int(config["orders"]))
        self._free: asyncio.Queue[KeepAliveClient] = asyncio.Queue()

    def _client(self) -> KeepAliveClient:
        token = self._config.get("token")
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        return KeepAliveClient("127.0.0.1", int(self._config["port"]), headers)

    async def start(self) -> None:
        for _ in range(int(self._config.get("connections", 32))):
            self._free.put_nowait(self._client())

    async def call(self, step: int, index: int) -> bool:
        client = await self._free.get()
        try:
            # A failed client has closed its connection and opens a new one on its next request.
            status = await client.get(self._paths[index % len(self._paths)])
        except OSError:
            return False
        finally:
            self._free.put_nowait(client)
        return status == 200

    async def finish(self, steps: list[dict[str, Any]]) -> dict[str, Any]:
        return {}

    async def stop(self) -> None:
        while not self._free.empty():
            await self._free.get_nowait().close()


class CommandTarget:
    """Registers a new customer per call on the topic door; the call ends with its outcome on
    `command-results`. The projector's notifications time each row's visibility from the moment
    Kafka acknowledged the command (B2), and `finish` counts the rows each step left in the view."""

    def __init__(self, config: dict[str, Any]) -> None:
        self._config = config
        self._topics = TopicNames(str(config["prefix"]))
        self._run = uuid.uuid4().hex[:6]
        self._producer = AIOKafkaProducer(
            bootstrap_servers=config["bootstrap"], linger_ms=2, acks="all", enable_idempotence=True
        )
        self._results = AIOKafkaConsumer(bootstrap_servers=config["bootstrap"], group_id=None)
        self._waiting: dict[bytes, asyncio.Future[bool]] = {}
        self._acked: dict[str, tuple[int, float]] = {}
        self._visible: dict[int, list[float]] = {}
        self._accepted: dict[int, int] = {}
        self._listener: asyncpg.Connection[asyncpg.Record] | None = None
        self._reader: asyncio.Task[None] | None = None
        self._all_visible = asyncio.Event()

    def _aggregate(self, step: int, index: int) -> str:
        return f"{self._run}-s{step}-{index}"

    async def start(self) -> None:
        await self._producer.start()
        await self._results.start()
        self._results.assign(await partitions_of(self._config["bootstrap"], [self._topics.command_results]))
        await self._results.seek_to_end()
        self._listener = await asyncpg.connect(self._config["dsn"])
        await self._listener.add_listener(CHANNEL, self._on_notify)
        self._reader = asyncio.create_task(self._read_outcomes())

    def _on_notify(self, _c: object, _pid: int, _channel: str, payload: object) -> None:
        now = time.perf_counter()
        notification = decode(str(payload))
        for change in notification.changes if notification else ():
            acked = self._acked.pop(change.aggregate_id, None)
            if acked is not None:
                self._visible.setdefault(acked[0], []).append(now - acked[1])
        if not self._acked:
            self._all_visible.set()

    async def _read_outcomes(self) -> None:
        while True:
            for batch in (await self._results.getmany(timeout_ms=100)).values():
                for record in batch:
                    future = self._waiting.pop(record.key or b"", None)
                    status = dict(record.headers).get("status", b"")
                    if future is not None and not future.done():
                        future.set_result(status == b"accepted")

    async def call(self, step: int, index: int) -> bool:
        aggregate = self._aggregate(step, index)
        body = command_record(
            "RegisterCustomer", aggregate, {"name": "Bench", "email": f"{aggregate}@example.com"}
        )
        outcome: asyncio.Future[bool] = asyncio.get_running_loop().create_future()
        self._waiting[body["command_id"].encode()] = outcome
        sent = await self._producer.send(
            self._topics.commands,
            json.dumps(body).encode(),
            key=aggregate.encode(),
            headers=[("authorization", f"Bearer {self._config['token']}".encode())],
        )
        await sent
        self._acked[aggregate] = (step, time.perf_counter())
        self._all_visible.clear()
        accepted = await outcome
        if accepted:
            self._accepted[step] = self._accepted.get(step, 0) + 1
        return accepted

    async def finish(self, steps: list[dict[str, Any]]) -> dict[str, Any]:
        """Per step: accepted, projected (rows in the view), visible p50/p99 from the command's ack."""
        if self._acked:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(float(self._config.get("drain_seconds", 5.0))):
                    await self._all_visible.wait()
        if self._listener is None:
            raise RuntimeError("the target was not started")
        for index, step in enumerate(steps):
            projected = await self._listener.fetchval(
                "SELECT count(*) FROM read.customers WHERE id LIKE $1", f"{self._run}-s{index}-%"
            )
            visible = sorted(self._visible.get(index, []))
            cuts = statistics.quantiles(visible, n=100) if len(visible) > 1 else [0.0] * 99
            step |= {
                "accepted": self._accepted.get(index, 0),
                "projected": int(projected),
                "visible_p50_ms": cuts[49] * 1000,
                "visible_p99_ms": cuts[98] * 1000,
            }
        return {}

    async def stop(self) -> None:
        if self._reader is not None:
            self._reader.cancel()
        await self._producer.stop()
        await self._results.stop()
        if self._listener is not None:
            await self._listener.close()


TARGETS: dict[str, Callable[[dict[str, Any]], Target]] = {
    "query-point": lambda config: QueryTarget(config, point_path),
    "query-page": lambda config: QueryTarget(config, page_path),
    "commands": CommandTarget,
}
