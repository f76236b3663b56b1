"""Writes outcomes to `command-results` and unreadable records to `commands.dlq`."""

from __future__ import annotations

import asyncio

from command_svc.intake import DeadLetter, flow_of
from command_svc.metrics import DEAD_LETTERS
from cqrs_shared.kafka_io import KafkaRecord, RecordSender, dead_letter_headers, flow_ids, to_json
from cqrs_shared.results import Accepted, Rejected
from cqrs_shared.topics import TopicNames
from cqrs_shared.tracing import current_headers, current_trace_id, trace_id_in_headers


class ResultsPublisher:
    def __init__(self, producer: RecordSender, topics: TopicNames) -> None:
        self._producer = producer
        self._topics = topics

    async def send_outcome(self, outcome: Accepted | Rejected) -> asyncio.Future[object]:
        """Enqueue the outcome; await the returned future for Kafka's acknowledgement.

        When traced, the record carries the command's `traceparent` (tools find the trace there)."""
        return await self._producer.send(
            self._topics.command_results,
            value=to_json(outcome),
            key=str(outcome.command_id).encode(),
            headers=[
                ("correlation_id", outcome.correlation_id.encode()),
                ("status", outcome.status.encode()),
                *current_headers(),
            ],
        )

    async def send_dead_letter(self, record: KafkaRecord, problem: DeadLetter) -> asyncio.Future[object]:
        """The raw record, unchanged, with why it was refused, where it came from and the ids of its
        flow (those that can be known: a record that is not JSON names no correlation) in headers."""
        DEAD_LETTERS.labels(problem.reason).inc()
        correlation_id, causation_id = flow_of(record.value, problem)
        trace_id = trace_id_in_headers(record.headers) or current_trace_id()
        ids = flow_ids(correlation_id, causation_id, trace_id)
        headers = dead_letter_headers(record, problem.reason, problem.detail, *ids)
        return await self._producer.send(
            self._topics.commands_dlq, value=record.value, key=record.key, headers=headers
        )
