"""Cursors: round trip, and refusal of anything altered, forged, foreign or oversized."""

from __future__ import annotations

import pytest

from query_svc.cursor import MAX_CURSOR_LENGTH, CursorCodec, CursorPosition, InvalidCursorError, query_digest

CODEC = CursorCodec(b"a-secret-of-sufficient-length")


def test_a_cursor_round_trips_its_position() -> None:
    position = CursorPosition(query_digest(["orders", "-placed_at"]), "2024-01-01T00:00:00.5Z", "o-1")
    assert CODEC.decode(CODEC.encode(position), query=position.query) == position


def test_a_query_digest_is_stable_and_order_sensitive_only_where_it_matters() -> None:
    assert query_digest({"a": 1, "b": 2}) == query_digest({"b": 2, "a": 1})
    assert query_digest(["orders", "total"]) != query_digest(["orders", "-total"])


@pytest.mark.parametrize(
    "mutate",
    [
        lambda c: c[:-1] + ("A" if c[-1] != "A" else "B"),
        lambda c: ("A" if c[0] != "A" else "B") + c[1:],
        lambda c: c.split(".")[0],
        lambda c: c + ".x",
        lambda c: "é" + c,
        lambda c: "!!!." + c.split(".")[1],
        lambda c: "a" * (MAX_CURSOR_LENGTH + 1),
        lambda c: "",
    ],
)
def test_an_altered_cursor_is_refused(mutate: object) -> None:
    cursor = CODEC.encode(CursorPosition("q", 5, "k"))
    with pytest.raises(InvalidCursorError):
        CODEC.decode(mutate(cursor), query="q")  # type: ignore[operator]  # each case is a str -> str function


def test_a_cursor_signed_with_another_secret_or_for_another_query_is_refused() -> None:
    other = CursorCodec(b"another-secret-of-enough-length")
    with pytest.raises(InvalidCursorError):
        CODEC.decode(other.encode(CursorPosition("q", 5, "k")), query="q")
    with pytest.raises(InvalidCursorError, match="different query"):
        CODEC.decode(CODEC.encode(CursorPosition("q", 5, "k")), query="other")


def test_a_short_secret_is_refused() -> None:
    with pytest.raises(ValueError, match="16 bytes"):
        CursorCodec(b"short")
