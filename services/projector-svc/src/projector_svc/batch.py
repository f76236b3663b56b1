"""One batch of events into a build schema, inside the caller's transaction.

The order of work is what makes the effect exactly-once and per-aggregate ordered:
1. the version guard sorts the batch against the applied versions and the parked events
   (duplicates skipped, gaps parked, blocked aggregates held);
2. the projection applies what is next, with poison isolation (a refused event parks its
   aggregate, the others are applied);
3. parked rows are written or cleared, applied versions raised, readers notified and dead letters
   sent, all before the caller commits together with its offsets.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass, field

from cqrs_shared.logging_setup import bind_ids
from projector_svc import positions
from projector_svc.dead_letters import REJECTED, UNDECODABLE, DeadLetter, DeadLetters, flow_of
from projector_svc.guard import BLOCKED, ParkedState, sort_batch
from projector_svc.incoming import AggregateKey, Incoming, Undecodable
from projector_svc.notify import notify
from projector_svc.pg import Connection
from projector_svc.poison import PoisonIsolator, Refusal
from projector_svc.projection import Projection

Position = tuple[AggregateKey, int]

log = logging.getLogger(__name__)


@dataclass
class Outcome:
    """What a batch did, for metrics and for the operator tools."""

    applied: list[Incoming] = field(default_factory=list)
    unknown: int = 0
    duplicates: int = 0
    parked: int = 0
    dead_letters: int = 0
    advanced: dict[AggregateKey, int] = field(default_factory=dict)


def _positions(items: Sequence[Incoming]) -> set[Position]:
    return {(i.key, i.version) for i in items}


def _parking_and_letters(
    guarded: Sequence[tuple[Incoming, str]], refused: Sequence[Refusal], undecodable: Sequence[Undecodable]
) -> tuple[list[tuple[Incoming, str, str]], list[DeadLetter]]:
    """Rows to park (event, reason, error) and letters to send: a refused event is both, the
    events held behind it are only parked, undecodable records only dead-lettered."""
    to_park = [(item, reason, "") for item, reason in guarded]
    letters = [DeadLetter(u.origin, UNDECODABLE, u.error) for u in undecodable]
    for refusal in refused:
        to_park.append((refusal.event, REJECTED, refusal.error))
        letters.append(DeadLetter(refusal.event.origin, REJECTED, refusal.error, refusal.event))
        held = f"held behind version {refusal.event.version}, which was refused"
        to_park.extend((item, BLOCKED, held) for item in refusal.held)
    return to_park, letters


class BatchApplier:
    """Applies decoded events (and dead-letters undecodable records) for one projection."""

    def __init__(self, projection: Projection, sink: DeadLetters) -> None:
        self._projection = projection
        self._isolator = PoisonIsolator(projection)
        self._sink = sink

    async def apply(
        self,
        connection: Connection,
        schema: str,
        events: Sequence[Incoming],
        undecodable: Sequence[Undecodable] = (),
        *,
        replay: bool = False,
    ) -> Outcome:
        """Apply `events` (in partition order). `replay=True` retries parked events: they were
        taken off the parking, so nothing blocks them and each one leaves it unless parked again."""
        keys = sorted({e.key for e in events})
        applied = await positions.applied_versions(connection, keys)
        parked = ParkedState() if replay else await positions.parked_state(connection, events)
        guarded = sort_batch(events, applied, parked)
        isolation = await self._isolator.apply(connection, guarded.apply)

        to_park, letters = _parking_and_letters(guarded.parked, isolation.refused, undecodable)
        await positions.park(connection, to_park)

        # Parked rows this batch took back: replayed ones, or waiting ones whose gap closed.
        if replay:
            taken = _positions(events)
        else:
            taken = _positions([e for evs in parked.waiting.values() for e in evs]) & _positions(
                guarded.apply
            )
        await positions.unpark(connection, sorted(taken - _positions([i for i, _, _ in to_park])))

        advanced: dict[AggregateKey, int] = {}
        for item in isolation.accepted:
            advanced[item.key] = max(item.version, advanced.get(item.key, 0))
        await positions.save_versions(connection, advanced)
        await notify(connection, self._projection.name, schema, advanced)
        await self._sink.send(letters, build=schema)
        for letter in letters:
            correlation_id, causation_id, trace_id = flow_of(letter)
            with bind_ids(correlation_id=correlation_id, causation_id=causation_id, trace_id=trace_id):
                origin = letter.origin
                log.warning(
                    "dead-lettered %s[%d]@%d (%s): %s",
                    origin.topic,
                    origin.partition,
                    origin.offset,
                    letter.reason,
                    letter.error[:500],
                )
        known = [i for i in isolation.accepted if self._projection.handles(i.event.type)]
        return Outcome(
            applied=known,
            unknown=len(isolation.accepted) - len(known),
            duplicates=guarded.duplicates,
            parked=len(to_park),
            dead_letters=len(letters),
            advanced=advanced,
        )
