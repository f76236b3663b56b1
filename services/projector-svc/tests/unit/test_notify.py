import json

from projector_svc.notify import payloads


def test_small_changes_fit_in_one_notification_with_the_stable_payload_shape() -> None:
    [message] = payloads("shop", "shop_b1", {("order", "o1"): 3, ("customer", "c1"): 2})
    assert json.loads(message) == {
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
