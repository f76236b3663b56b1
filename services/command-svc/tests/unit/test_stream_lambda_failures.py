"""The stream Lambda handler when Kafka refuses: the record is reported, nothing after it is sent."""

from __future__ import annotations

import asyncio
import json
from typing import Any

from aiokafka.errors import KafkaTimeoutError

from command_svc.stream_publishing.lambda_handler import StreamBatchPublisher
from command_svc.write_store.dynamo_items import commit_item
from cqrs_shared.testing.write_store_contract import make_commit
from cqrs_shared.topics import TopicNames


class _RefusingProducer:
    """Acknowledges every send except those of aggregate version `refuse`."""

    def __init__(self, refuse: int) -> None:
        self.refuse = refuse
        self.sent: list[int] = []

    async def send(self, topic: str, value: bytes, **_: Any) -> asyncio.Future[None]:
        version = json.loads(value)["version"]
        delivery: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        if version == self.refuse:
            delivery.set_exception(KafkaTimeoutError())
        else:
            self.sent.append(version)
            delivery.set_result(None)
        return delivery


def _record(version: int) -> dict[str, Any]:
    return {
        "eventName": "INSERT",
        "dynamodb": {
            "NewImage": commit_item(make_commit("a", version)),
            "SequenceNumber": str(100 + version),
        },
    }


async def test_a_record_kafka_refuses_is_reported_and_nothing_after_it_is_sent() -> None:
    producer = _RefusingProducer(refuse=2)
    publisher = StreamBatchPublisher(producer, TopicNames("x."), timeout_seconds=5)
    answer = await publisher.publish([_record(v) for v in (1, 2, 3)])
    assert answer == {"batchItemFailures": [{"itemIdentifier": "102"}]}
    assert producer.sent == [1]


async def test_records_that_carry_no_events_pass_without_sending() -> None:
    producer = _RefusingProducer(refuse=0)
    modify = {**_record(1), "eventName": "MODIFY"}
    not_a_commit = {
        "eventName": "INSERT",
        "dynamodb": {"NewImage": {"kind": {"S": "x"}}, "SequenceNumber": "7"},
    }
    publisher = StreamBatchPublisher(producer, TopicNames("x."), timeout_seconds=5)
    assert await publisher.publish([modify, not_a_commit, _record(2)]) == {"batchItemFailures": []}
    assert producer.sent == [2]
