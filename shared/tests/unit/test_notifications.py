"""The projector-to-query contract: one encoder, one decoder, and they agree."""

import json

import pytest

from cqrs_shared.read_models import DeclarationError
from cqrs_shared.read_models.notifications import (
    FORMAT_VERSION,
    Change,
    Notification,
    decode,
    encode_overflow,
    read_view_name,
)
from cqrs_shared.read_models.notifications import encode_changes as payloads


def test_small_changes_fit_in_one_notification_with_the_stable_payload_shape() -> None:
    [message] = payloads("shop", "shop_b1", {("order", "o1"): 3, ("customer", "c1"): 2})
    assert json.loads(message) == {
        "v": 1,
        "projection": "shop",
        "schema": "shop_b1",
        "changes": [["customer", "c1", 2], ["order", "o1", 3]],
    }


def test_many_changes_are_split_under_the_postgresql_payload_limit_and_none_is_lost() -> None:
    changes = {("order", f"order-{i:06d}"): i for i in range(2000)}
    messages = payloads("shop", "shop_b1", changes)
    assert len(messages) > 1
    assert all(len(m.encode()) < 8000 for m in messages)
    seen = [tuple(c) for m in messages for c in json.loads(m)["changes"]]
    assert sorted(seen) == sorted((t, i, v) for (t, i), v in changes.items())


def test_no_changes_send_no_notification() -> None:
    assert payloads("shop", "shop_b1", {}) == []


def test_every_encoded_payload_decodes_to_the_changes_it_carries() -> None:
    changes = {("order", f"o-{i}"): i + 1 for i in range(1500)} | {("customer", "c-ü"): 7}
    decoded = [decode(m) for m in payloads("shop", "shop_b3", changes)]
    assert all(
        n is not None and (n.projection, n.schema, n.overflow) == ("shop", "shop_b3", False) for n in decoded
    )
    got = {(c.aggregate_type, c.aggregate_id): c.version for n in decoded if n for c in n.changes}
    assert got == changes


def test_an_overflow_round_trips_and_wakes_the_whole_projection() -> None:
    assert decode(encode_overflow("shop", "shop_b2")) == Notification("shop", "shop_b2", (), overflow=True)


def test_a_payload_of_an_unknown_format_version_is_refused_and_one_without_a_version_is_read() -> None:
    newer = json.loads(encode_overflow("shop", "shop_b2")) | {"v": FORMAT_VERSION + 1}
    assert decode(json.dumps(newer)) is None
    legacy = {"projection": "shop", "schema": "shop_b1", "changes": [["order", "o1", 3]]}
    assert decode(json.dumps(legacy)) == Notification("shop", "shop_b1", (Change("order", "o1", 3),))


def test_read_view_names_follow_the_rule_and_refuse_unsafe_projections() -> None:
    assert read_view_name("shop", "orders") == "orders"
    assert read_view_name("shop", "partition_offsets") == "shop_partition_offsets"
    with pytest.raises(DeclarationError):
        read_view_name("Shop;", "aggregate_versions")
