"""A small Kafka client for tests: send commands onto a topic and read records back from the start."""

from __future__ import annotations

import asyncio
import json
from dataclasses import dataclass
from typing import Any

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer

from cqrs_shared.topics import TopicNames


@dataclass
class KafkaClient:
    """Produces onto and reads back from the test's topics."""

    bootstrap: str
    topics: TopicNames
    producer: AIOKafkaProducer

    async def send_command(
        self, envelope: dict[str, Any] | bytes, *, key: str | None = None, token: str | None = None
    ) -> None:
        value = envelope if isinstance(envelope, bytes) else json.dumps(envelope).encode()
        if key is None and isinstance(envelope, dict):
            key = str(envelope.get("aggregate_id", ""))
        headers = [("authorization", token.encode())] if token else []
        await self.producer.send_and_wait(
            self.topics.commands, value, key=key.encode() if key else None, headers=headers
        )

    async def read(self, topic: str, count: int, within: float = 30.0) -> list[Any]:
        """The first `count` records of a topic, from its beginning (fails if fewer arrive in time)."""
        consumer = AIOKafkaConsumer(
            topic, bootstrap_servers=self.bootstrap, group_id=None, auto_offset_reset="earliest"
        )
        await consumer.start()
        records: list[Any] = []
        try:
            deadline = asyncio.get_running_loop().time() + within
            while len(records) < count and asyncio.get_running_loop().time() < deadline:
                for batch in (await consumer.getmany(timeout_ms=200)).values():
                    records.extend(batch)
        finally:
            await consumer.stop()
        assert len(records) >= count, f"only {len(records)} of {count} records on {topic}"
        return records

    async def outcomes(self, count: int, within: float = 30.0) -> list[dict[str, Any]]:
        records = await self.read(self.topics.command_results, count, within)
        return [json.loads(r.value) for r in records]
