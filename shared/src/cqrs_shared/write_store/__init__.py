"""The write store port and its adapters (one module per backend)."""

from cqrs_shared.write_store.port import (
    Commit,
    CommitTooLargeError,
    ConcurrencyConflictError,
    DuplicateCommandError,
    LeaseStore,
    WriteStore,
    WriteStoreUnavailableError,
    shard_of,
)

__all__ = [
    "Commit",
    "CommitTooLargeError",
    "ConcurrencyConflictError",
    "DuplicateCommandError",
    "LeaseStore",
    "WriteStore",
    "WriteStoreUnavailableError",
    "shard_of",
]
