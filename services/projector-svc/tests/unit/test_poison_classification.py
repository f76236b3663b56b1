import asyncpg

from projector_svc.poison import is_transient


def test_infrastructure_failures_are_transient_so_the_batch_is_retried() -> None:
    assert is_transient(ConnectionResetError())
    assert is_transient(TimeoutError())
    assert is_transient(asyncpg.SerializationError("could not serialize"))
    assert is_transient(asyncpg.DeadlockDetectedError("deadlock"))
    assert is_transient(asyncpg.AdminShutdownError("shutting down"))
    assert is_transient(asyncpg.InterfaceError("connection closed"))
    assert is_transient(
        asyncpg.InternalClientError("cannot switch to state 12; another operation (2) is in progress")
    )


def test_data_and_handler_failures_are_refusals_that_park_the_aggregate() -> None:
    assert not is_transient(KeyError("name"))
    assert not is_transient(ValueError("bad total"))
    assert not is_transient(asyncpg.NotNullViolationError("null id"))
    assert not is_transient(asyncpg.NumericValueOutOfRangeError("overflow"))
    assert not is_transient(asyncpg.UndefinedColumnError("no such column"))
