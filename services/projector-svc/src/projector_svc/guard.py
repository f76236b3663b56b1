"""The per-aggregate version guard, pure: which events of a batch to apply, skip or park.

Given the version each aggregate has applied and what is already parked, it walks the batch in
partition order and sorts every event into exactly one bucket:
- `apply`: the next version of its aggregate (or a later one once its predecessor is applied);
- `duplicates`: a version already applied or already parked (redelivery, replay from old offsets);
- `parked`: ahead of the next expected version (`gap`), or behind a blocked aggregate (`blocked`).
Events parked earlier for a gap (`waiting`) join `apply` as soon as the gap before them closes.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

from projector_svc.incoming import AggregateKey, Incoming

GAP = "gap"
BLOCKED = "blocked"


@dataclass(frozen=True, slots=True)
class ParkedState:
    """What the parking table holds for the batch's aggregates."""

    #: Aggregates held behind a refused event: nothing of them applies until a replay.
    blocked: frozenset[AggregateKey] = frozenset()
    #: Events parked for a gap, per aggregate that is not blocked, in version order.
    waiting: Mapping[AggregateKey, list[Incoming]] = field(default_factory=dict)
    #: The parked (aggregate, version) positions among the batch's events and in `waiting`,
    #: whatever the reason: a redelivered parked event is a duplicate, not parked again.
    versions: frozenset[tuple[AggregateKey, int]] = frozenset()


@dataclass
class GuardResult:
    apply: list[Incoming] = field(default_factory=list)
    duplicates: int = 0
    parked: list[tuple[Incoming, str]] = field(default_factory=list)


def sort_batch(
    events: Iterable[Incoming], applied: Mapping[AggregateKey, int], parked: ParkedState = ParkedState()
) -> GuardResult:
    """Sort a batch; each aggregate's events in `apply` are in version order without holes."""
    result = GuardResult()
    current = dict(applied)
    pending: dict[AggregateKey, dict[int, Incoming]] = {
        k: {e.version: e for e in evs} for k, evs in parked.waiting.items()
    }
    parked_now: dict[tuple[AggregateKey, int], tuple[Incoming, str]] = {}
    for item in events:
        key, version = item.key, item.version
        expected = current.get(key, 0) + 1
        if (
            version < expected
            or (key, version) in parked_now
            or (key, version) in parked.versions
            or version in pending.get(key, {})
        ):
            result.duplicates += 1
        elif key in parked.blocked:
            parked_now[(key, version)] = (item, BLOCKED)
        elif version == expected:
            result.apply.append(item)
            current[key] = version
            # A parked successor may now be next: drain the chain this event closes.
            queue = pending.get(key, {})
            while current[key] + 1 in queue:
                successor = queue.pop(current[key] + 1)
                result.apply.append(successor)
                current[key] = successor.version
                parked_now.pop((key, successor.version), None)
        else:
            pending.setdefault(key, {})[version] = item
            parked_now[(key, version)] = (item, GAP)
    result.parked = list(parked_now.values())
    return result
