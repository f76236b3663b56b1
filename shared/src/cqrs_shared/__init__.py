"""The common library of the CQRS services: wire formats, contracts, settings and store ports.

Imported by every service, never run on its own. Nothing here connects anywhere at import time.
"""

# Every module is public: this package is the library the services, tools and tests share. Modules
# with an `__all__` of their own export exactly those names.
__all__ = [
    "auth",
    "consistency",
    "contracts",
    "dynamo_stream",
    "envelopes",
    "kafka_io",
    "liveness",
    "logging_setup",
    "messages",
    "pg_failover",
    "postgres_connect",
    "problems",
    "rds_iam",
    "read_models",
    "results",
    "service_http",
    "settings",
    "testing",
    "topics",
    "tracing",
    "upcasting",
    "write_store",
]
