"""Projections of the example domain. Only this package names shop types."""

from __future__ import annotations

from collections.abc import Callable

from projector_svc.projection import Projection
from projector_svc.views.shop import ShopProjection

#: The projections a process can run or rebuild, by name
#: (`PROJECTOR_SVC_VIEW`, `cqrs projector rebuild VIEW`).
PROJECTIONS: dict[str, Callable[[], Projection]] = {"shop": ShopProjection}


def projection_named(name: str) -> Projection:
    try:
        return PROJECTIONS[name]()
    except KeyError:
        raise ValueError(f"no projection named {name!r}; known: {', '.join(sorted(PROJECTIONS))}") from None
