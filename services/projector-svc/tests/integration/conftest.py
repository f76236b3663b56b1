"""Fixtures for projector tests against real Kafka and PostgreSQL: one topic prefix, database and
consumer group per test; replicas run in-process so tests can start, stop and inspect them."""

from projector_svc.testing.fixtures import feed, pool, settings, start_projector, topics

__all__ = ["feed", "pool", "settings", "start_projector", "topics"]
