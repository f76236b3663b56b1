"""The shop projection as a class, for tests that subclass it (a buggy handler, an older or newer
release with fewer or more migrations)."""

from __future__ import annotations

from cqrs_shared.read_models.shop import DEFINITION
from projector_svc.declared import DeclaredProjection, migrations_of
from projector_svc.projection import Migration


class ShopProjection(DeclaredProjection):
    #: A class attribute, so a subclass can declare another release's migrations from it.
    migrations: tuple[Migration, ...] = migrations_of(DEFINITION)

    def __init__(self) -> None:
        super().__init__(DEFINITION)
