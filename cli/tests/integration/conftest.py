"""Fixtures for CLI tests that need projector replicas, Kafka topics and a database."""

from projector_svc.testing.fixtures import feed, pool, settings, start_projector, topics

__all__ = ["feed", "pool", "settings", "start_projector", "topics"]
