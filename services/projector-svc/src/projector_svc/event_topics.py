"""The topics the projector reads, kept forever: a rebuild replays the event topics from offset 0.

Why the topics and not the write store: the projector then depends only on Kafka and the wire
format (never on MongoDB or DynamoDB), a rebuild reads exactly the stream the live projector read,
in the same per-partition order, and the write store stays free of read-side scans. The price is
infinite retention on `events.*` (and on `events.dlq`, the operators' record). The broker's default
is finite, and whichever service starts first creates the topics, so the projector creates missing
ones with `retention.ms=-1` and raises the retention of existing ones at start-up, keeping any
other settings they carry (AlterConfigs replaces a topic's whole dynamic configuration).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from typing import Any

from aiokafka import AIOKafkaConsumer
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.admin.config_resource import ConfigResource, ConfigResourceType

from cqrs_shared.topics import RETAIN_FOREVER, ensure_topics, partitions_of

log = logging.getLogger(__name__)

PartitionEnds = dict[tuple[str, int], int]
#: `config_source` of a configuration set on the topic itself (DescribeConfigs).
_DYNAMIC_TOPIC_CONFIG = 1


async def ensure_kept_forever(
    bootstrap_servers: str, names: Sequence[str], *, partitions: int, replication_factor: int
) -> None:
    """Create the missing topics and make every one of them keep its records forever."""
    await ensure_topics(
        bootstrap_servers,
        names,
        partitions=partitions,
        replication_factor=replication_factor,
        configs=dict.fromkeys(names, RETAIN_FOREVER),
    )
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap_servers)
    await admin.start()
    try:
        await _raise_retention(admin, names)
    finally:
        await admin.close()


async def _raise_retention(admin: AIOKafkaAdminClient, names: Sequence[str]) -> None:
    resources = [ConfigResource(ConfigResourceType.TOPIC, n) for n in names]
    described = await admin.describe_configs(resources)
    changes = []
    for response in described:
        for _code, _message, _type, name, entries in response.resources:
            dynamic = {e[0]: e[1] for e in entries if e[3] == _DYNAMIC_TOPIC_CONFIG}
            if all(dynamic.get(k) == v for k, v in RETAIN_FOREVER.items()):
                continue
            changes.append(
                ConfigResource(ConfigResourceType.TOPIC, name, configs={**dynamic, **RETAIN_FOREVER})
            )
    if changes:
        await admin.alter_configs(changes)
        log.info("set infinite retention on %s", [c.name for c in changes])


async def end_offsets(bootstrap: str, topic_names: Sequence[str]) -> PartitionEnds:
    """The current end offset of every partition of the topics."""
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, group_id=None)
    await consumer.start()
    try:
        partitions = await partitions_of(bootstrap, topic_names)
        ends = await consumer.end_offsets(partitions)
        return {(tp.topic, tp.partition): offset for tp, offset in ends.items()}
    finally:
        await consumer.stop()


async def record_counts(bootstrap: str, topic_names: Sequence[str]) -> dict[str, int]:
    """How many records each topic holds now (end minus beginning offsets; 0 for a missing topic)."""
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, group_id=None)
    await consumer.start()
    try:
        partitions = await partitions_of(bootstrap, topic_names)
        ends = await consumer.end_offsets(partitions) if partitions else {}
        starts = await consumer.beginning_offsets(partitions) if partitions else {}
    finally:
        await consumer.stop()
    counts = dict.fromkeys(topic_names, 0)
    for tp in partitions:
        counts[tp.topic] += ends[tp] - starts[tp]
    return counts


async def read_all(bootstrap: str, topic: str, *, within: float = 10.0) -> list[Any]:
    """Every record now on a topic, from its beginning."""
    ends = await end_offsets(bootstrap, [topic])
    consumer = AIOKafkaConsumer(
        topic, bootstrap_servers=bootstrap, group_id=None, auto_offset_reset="earliest"
    )
    await consumer.start()
    records: list[Any] = []
    try:
        deadline = asyncio.get_running_loop().time() + within
        while len(records) < sum(ends.values()) and asyncio.get_running_loop().time() < deadline:
            for batch in (await consumer.getmany(timeout_ms=200)).values():
                records.extend(batch)
    finally:
        await consumer.stop()
    return records
