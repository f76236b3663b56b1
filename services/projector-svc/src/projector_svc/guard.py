"""The per-aggregate version guard, pure: which events of a batch to apply, skip or park.

Given the version each aggregate has applied and which aggregates are blocked behind a poison
event, it walks the batch in partition order and sorts every event into exactly one bucket:
- `apply`: the next version of its aggregate (or a later one once its predecessor is applied);
- `duplicates`: a version already applied (redelivery, replay from an older offset);
- `parked`: ahead of the next expected version (a gap), or behind a blocked aggregate.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

from cqrs_shared.envelopes import EventEnvelope

AggregateKey = tuple[str, str]


@dataclass
class GuardResult:
    apply: list[EventEnvelope] = field(default_factory=list)
    duplicates: int = 0
    parked: list[tuple[EventEnvelope, str]] = field(default_factory=list)
    #: Events parked by an earlier batch that this batch applied (their parked rows go).
    unparked: list[EventEnvelope] = field(default_factory=list)
    #: Highest version applied per aggregate after this batch (only aggregates that advanced).
    advanced: dict[AggregateKey, int] = field(default_factory=dict)


def key_of(event: EventEnvelope) -> AggregateKey:
    return (event.aggregate_type, event.aggregate_id)


def sort_batch(
    events: Iterable[EventEnvelope],
    applied: Mapping[AggregateKey, int],
    blocked: Iterable[AggregateKey] = (),
    waiting: Mapping[AggregateKey, list[EventEnvelope]] | None = None,
) -> GuardResult:
    """Sort a batch; `waiting` are events parked earlier for a gap, retried as their gap closes."""
    result = GuardResult()
    current = dict(applied)
    blocked_keys = set(blocked)
    earlier = {(key_of(e), e.version) for evs in (waiting or {}).values() for e in evs}
    pending: dict[AggregateKey, dict[int, EventEnvelope]] = {
        k: {e.version: e for e in evs} for k, evs in (waiting or {}).items()
    }
    parked_now: dict[tuple[AggregateKey, int], tuple[EventEnvelope, str]] = {}
    for event in events:
        key = key_of(event)
        version = current.get(key, 0)
        if (
            event.version <= version
            or (key, event.version) in parked_now
            or event.version in pending.get(key, {})
        ):
            result.duplicates += 1
        elif key in blocked_keys:
            parked_now[(key, event.version)] = (event, "blocked")
        elif event.version == version + 1:
            result.apply.append(event)
            current[key] = event.version
            # A parked successor may now be next: drain the chain it closes.
            queue = pending.get(key, {})
            while current[key] + 1 in queue:
                successor = queue.pop(current[key] + 1)
                result.apply.append(successor)
                current[key] = successor.version
                if (key, successor.version) in earlier:
                    result.unparked.append(successor)
                parked_now.pop((key, successor.version), None)
        else:
            pending.setdefault(key, {})[event.version] = event
            parked_now[(key, event.version)] = (event, "gap")
    result.parked = list(parked_now.values())
    result.advanced = {k: v for k, v in current.items() if v != applied.get(k, 0)}
    return result
