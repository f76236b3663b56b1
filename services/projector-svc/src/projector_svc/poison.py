"""Poison isolation: apply a batch's events; if the projection refuses some, find them and hold
only their aggregates back.

The happy path is one `apply` call for the whole batch inside a savepoint. When it raises, the
aggregates are bisected (each half in its own savepoint) until the failing aggregate is alone, and
then its events are applied one by one to find the failing event. Cost: one extra round trip per
halving, so a poison event in a batch of n aggregates costs O(log n) applies, not n.

Any exception a handler raises counts as a refusal, except infrastructure failures (connection
lost, serialization conflict, server shutting down...): those are re-raised so the whole batch is
retried instead of wrongly parking a healthy aggregate.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass, field

import asyncpg

from cqrs_shared.logging_setup import bind_ids
from cqrs_shared.tracing import trace_id_in_headers
from projector_svc.incoming import AggregateKey, Incoming
from projector_svc.pg import Connection
from projector_svc.projection import Projection

log = logging.getLogger(__name__)

#: SQLSTATE classes that describe the server or the transaction, not the data: connection
#: exceptions, invalid transaction state, rollback (serialization, deadlock), insufficient
#: resources, program limits, object state (lock not available), operator intervention, system
#: and internal errors.
_TRANSIENT_SQLSTATE_CLASSES = frozenset({"08", "25", "40", "53", "54", "55", "57", "58", "XX"})


def is_transient(exc: BaseException) -> bool:
    """True when the failure is about the infrastructure, so retrying the batch may succeed."""
    # InternalClientError: asyncpg read the FATAL of a session the server ended (restart, crash)
    # but not yet its EOF, and refuses the next statement ("cannot switch to state ...").
    if isinstance(exc, OSError | TimeoutError | asyncpg.InterfaceError | asyncpg.InternalClientError):
        return True
    if isinstance(exc, asyncpg.PostgresError):
        return str(exc.sqlstate or "")[:2] in _TRANSIENT_SQLSTATE_CLASSES
    return False


@dataclass(frozen=True, slots=True)
class Refusal:
    """The event a projection refused, and the later events of its aggregate held behind it."""

    event: Incoming
    error: str
    held: tuple[Incoming, ...]


@dataclass
class Isolation:
    accepted: list[Incoming] = field(default_factory=list)
    refused: list[Refusal] = field(default_factory=list)


def _describe(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc}"


def _groups(events: Sequence[Incoming]) -> list[list[Incoming]]:
    by_key: dict[AggregateKey, list[Incoming]] = {}
    for item in events:
        by_key.setdefault(item.key, []).append(item)
    return list(by_key.values())


class PoisonIsolator:
    """Applies events through a projection, isolating the aggregates whose events it refuses."""

    def __init__(self, projection: Projection) -> None:
        self._projection = projection

    async def apply(self, connection: Connection, events: Sequence[Incoming]) -> Isolation:
        """`events` hold each aggregate's events in version order; unknown types pass as no-ops."""
        isolation = Isolation()
        candidates: list[list[Incoming]] = []
        for group in _groups(events):
            passed, refusal = self._check(group)
            if passed:
                candidates.append(passed)
            if refusal is not None:
                isolation.refused.append(refusal)
        applied = await self._apply_groups(connection, candidates)
        isolation.accepted.extend(applied.accepted)
        isolation.refused.extend(applied.refused)
        return isolation

    def _check(self, group: list[Incoming]) -> tuple[list[Incoming], Refusal | None]:
        for i, item in enumerate(group):
            if not self._projection.handles(item.event.type):
                continue
            try:
                self._projection.check(item.event)
            except Exception as exc:  # noqa: BLE001  # a contract check may raise anything; it is a refusal
                return group[:i], Refusal(item, _describe(exc), tuple(group[i + 1 :]))
        return group, None

    async def _apply_groups(self, connection: Connection, groups: list[list[Incoming]]) -> Isolation:
        if not groups:
            return Isolation()
        known = [e.event for g in groups for e in g if self._projection.handles(e.event.type)]
        try:
            async with connection.transaction():
                await self._projection.apply(connection, known)
        except Exception as exc:
            if is_transient(exc):
                raise
            if len(groups) == 1:
                refused = groups[0][0]
                with bind_ids(
                    correlation_id=refused.event.correlation_id,
                    causation_id=refused.event.causation_id,
                    trace_id=trace_id_in_headers(refused.origin.headers),
                ):
                    log.warning(
                        "aggregate %s was refused (%s); trying its events one by one",
                        refused.key,
                        _describe(exc),
                    )
                return await self._apply_one_by_one(connection, groups[0])
            middle = len(groups) // 2
            first = await self._apply_groups(connection, groups[:middle])
            second = await self._apply_groups(connection, groups[middle:])
            return Isolation(first.accepted + second.accepted, first.refused + second.refused)
        return Isolation(accepted=[e for g in groups for e in g])

    async def _apply_one_by_one(self, connection: Connection, group: list[Incoming]) -> Isolation:
        for i, item in enumerate(group):
            if not self._projection.handles(item.event.type):
                continue
            try:
                async with connection.transaction():
                    await self._projection.apply(connection, [item.event])
            except Exception as exc:
                if is_transient(exc):
                    raise
                return Isolation(group[:i], [Refusal(item, _describe(exc), tuple(group[i + 1 :]))])
        # Each event passed alone, so the aggregate failed only in combination: all are applied.
        return Isolation(accepted=list(group))
