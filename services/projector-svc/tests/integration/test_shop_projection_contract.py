"""The shop projection passes the projection contract."""

from __future__ import annotations

from collections.abc import Sequence

import pytest

from cqrs_shared.envelopes import EventEnvelope
from cqrs_shared.read_models.shop import DEFINITION
from projector_svc.testing.projection_contract import ProjectionContract, Rows
from projector_svc.testing.shop_fold import fold
from projector_svc.testing.shop_history import ShopHistory

pytestmark = pytest.mark.integration


class TestShopProjection(ProjectionContract):
    definition = DEFINITION

    def history(self, seed: int) -> list[EventEnvelope]:
        return ShopHistory(seed).take(self.history_size)

    def reference(self, events: Sequence[EventEnvelope]) -> Rows:
        rows = fold(events)
        return {"customers": rows.customers, "orders": rows.orders}
