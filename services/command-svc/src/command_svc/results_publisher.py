"""Writes outcomes to `command-results` and unreadable records to `commands.dlq`."""

from __future__ import annotations

import asyncio

from command_svc.intake import DeadLetter
from command_svc.metrics import DEAD_LETTERS
from cqrs_shared.kafka_io import KafkaRecord, RecordSender, dead_letter_headers, to_json
from cqrs_shared.results import Accepted, Rejected
from cqrs_shared.topics import TopicNames


class ResultsPublisher:
    def __init__(self, producer: RecordSender, topics: TopicNames) -> None:
        self._producer = producer
        self._topics = topics

    async def send_outcome(self, outcome: Accepted | Rejected) -> asyncio.Future[object]:
        """Enqueue the outcome; await the returned future for Kafka's acknowledgement."""
        return await self._producer.send(
            self._topics.command_results,
            value=to_json(outcome),
            key=str(outcome.command_id).encode(),
            headers=[
                ("correlation_id", outcome.correlation_id.encode()),
                ("status", outcome.status.encode()),
            ],
        )

    async def send_dead_letter(self, record: KafkaRecord, problem: DeadLetter) -> asyncio.Future[object]:
        """The raw record, unchanged, with why it was refused and where it came from in headers."""
        DEAD_LETTERS.labels(problem.reason).inc()
        headers = dead_letter_headers(record, problem.reason, problem.detail)
        return await self._producer.send(
            self._topics.commands_dlq, value=record.value, key=record.key, headers=headers
        )
