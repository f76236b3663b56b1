"""command-svc: validates, authorizes and decides commands, stores each outcome as one atomic commit,
and publishes the stored events through the outbox relay.

The public surface (what other packages, tools and benchmarks may import) is the modules below (`domain`:
the `AggregateDefinition` every domain module fills in, and the errors its deciders raise); the
rest is internal and may change without notice.
"""

__all__ = ["app", "domain", "settings", "write_store"]
