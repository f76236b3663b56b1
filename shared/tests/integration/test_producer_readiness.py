"""`RenewingProducer.check_ready` against a real broker: one metadata request naming no topic."""

from __future__ import annotations

from typing import Any

import pytest
from aiokafka.errors import KafkaConnectionError

from cqrs_shared.kafka_io import RenewingProducer, make_producer
from cqrs_shared.testing.service_processes import free_port

pytestmark = pytest.mark.integration


async def test_readiness_asks_a_broker_for_no_topic_metadata(kafka_bootstrap: str) -> None:
    producer = RenewingProducer(lambda: make_producer(kafka_bootstrap, client_id="readiness-test"))
    try:
        await producer.check_ready()  # starts the producer
        client = producer._producer.client  # type: ignore[union-attr]  # started above
        asked: list[Any] = []
        send = client.send

        async def recording(node_id: Any, request: Any, **kwargs: Any) -> Any:
            asked.append(request)
            return await send(node_id, request, **kwargs)

        client.send = recording
        await producer.check_ready()
    finally:
        await producer.stop()
    # The metadata of every topic in the cluster (a `None` list) is what the probe used to ask for.
    assert [(type(r).__name__, r._topics, r._allow_auto_topic_creation) for r in asked] == [
        ("MetadataRequest", [], False)
    ]


async def test_readiness_fails_when_no_broker_answers() -> None:
    producer = RenewingProducer(
        lambda: make_producer(f"127.0.0.1:{free_port()}", client_id="readiness-test", request_timeout_ms=1000)
    )
    try:
        with pytest.raises(KafkaConnectionError):
            await producer.check_ready()
    finally:
        await producer.stop()
