"""projector-svc: folds the event topics into PostgreSQL read models, exactly-once in effect.

The public surface (what other packages, tools and benchmarks may import) is the modules below:
running it (`app`, `settings`, and `stream_lambda`, the serverless path's Lambda handler),
operating it (`operations`: status, rebuild, replay, drop, prune) and test support (`testing`). The
rest is internal and may change without notice.
"""

__all__ = ["app", "operations", "settings", "stream_lambda", "testing"]
