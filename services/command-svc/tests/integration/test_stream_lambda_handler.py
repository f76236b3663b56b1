"""The stream Lambda handler on real stream records read from moto: events to Kafka in record order,
a poison record reported alone as a partial failure, nothing after it published ahead of it."""

from __future__ import annotations

import json
from typing import Any

import pytest
from aiokafka import AIOKafkaProducer

from command_svc.stream_publishing.lambda_handler import StreamBatchPublisher
from cqrs_shared.testing.kafka_client import KafkaClient
from cqrs_shared.testing.write_store_contract import make_commit
from cqrs_shared.topics import TopicNames, ensure_topics

from .dynamo_fixtures import as_lambda_event, private_tables, stream_records

pytestmark = pytest.mark.integration


async def _events_on(kafka_bootstrap: str, topics: TopicNames, count: int) -> list[dict[str, Any]]:
    client = KafkaClient(kafka_bootstrap, topics, None)
    return [json.loads(r.value) for r in await client.read(topics.events("tally"), count)]


async def test_a_poison_record_is_reported_alone_and_nothing_after_it_goes_first(
    dynamodb_endpoint: str, kafka_bootstrap: str, unique: str
) -> None:
    topics = TopicNames(f"t{unique}.")
    await ensure_topics(kafka_bootstrap, [topics.events("tally")], partitions=1, replication_factor=1)
    async with private_tables(dynamodb_endpoint, f"t{unique}-") as store:
        for version in (1, 2):
            await store.append(make_commit("a", version))
        # A commit item that is not a commit: the body is not what the store writes.
        await store.client.put_item(
            TableName=store.names.commits,
            Item={"stream": {"S": "tally/p"}, "base": {"N": "0"}, "body": {"S": "{not json"}},
        )
        await store.append(make_commit("a", 3))
        await store.mark_published([make_commit("a", 1)])  # a MODIFY record: carries no events
        records = await stream_records(store)
    assert [r["eventName"] for r in records] == ["INSERT", "INSERT", "INSERT", "INSERT", "MODIFY"]
    event = as_lambda_event(records)
    poison = records[2]["dynamodb"]["SequenceNumber"]

    producer = AIOKafkaProducer(bootstrap_servers=kafka_bootstrap, enable_idempotence=True, acks="all")
    await producer.start()
    try:
        publisher = StreamBatchPublisher(producer, topics, timeout_seconds=20)
        answer = await publisher.publish(event["Records"])
        assert answer == {"batchItemFailures": [{"itemIdentifier": poison}]}
        # Lambda retries from the poison record: it fails alone again, still nothing after it.
        retry = await publisher.publish(event["Records"][2:])
        assert retry == {"batchItemFailures": [{"itemIdentifier": poison}]}
        published = await _events_on(kafka_bootstrap, topics, 2)
        assert [e["version"] for e in published] == [1, 2]
        # Retries exhausted, the record goes to the on-failure queue and the shard moves on.
        assert await publisher.publish(event["Records"][3:]) == {"batchItemFailures": []}
    finally:
        await producer.stop()
    published = await _events_on(kafka_bootstrap, topics, 3)
    assert [e["version"] for e in published] == [1, 2, 3]
    assert all(e["aggregate_id"] == "a" for e in published)


async def test_the_module_handler_publishes_a_batch_and_reports_no_failure(
    dynamodb_endpoint: str, kafka_bootstrap: str, unique: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    topics = TopicNames(f"t{unique}.")
    await ensure_topics(kafka_bootstrap, [topics.events("tally")], partitions=1, replication_factor=1)
    async with private_tables(dynamodb_endpoint, f"t{unique}-") as store:
        for version in (1, 2, 3):
            await store.append(make_commit("h", version))
        event = as_lambda_event(await stream_records(store))
    monkeypatch.setenv("KAFKA_BOOTSTRAP_SERVERS", kafka_bootstrap)
    monkeypatch.setenv("CQRS_TOPIC_PREFIX", topics.prefix)
    # The handler runs its own event loop, as in a Lambda container: off this test's loop.
    import asyncio

    from command_svc.stream_publishing import lambda_handler

    try:
        answer = await asyncio.to_thread(lambda_handler.handler, event, None)
    finally:
        await asyncio.to_thread(lambda_handler.shutdown)
    assert answer == {"batchItemFailures": []}
    assert [e["version"] for e in await _events_on(kafka_bootstrap, topics, 3)] == [1, 2, 3]
