"""Opaque, signed keyset cursors.

A cursor is `base64url(json).base64url(hmac_sha256(secret, json))`. The JSON holds the last row's
sort value and key plus a digest of the query it belongs to (view, filters, sort, parent), so a
cursor cannot be forged, altered or replayed against a different query: each is a 400 naming the
`cursor` parameter. Cursors carry no secrets (only values the client already saw), and the MAC
keeps clients from steering the keyset predicate to values they never received.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
from dataclasses import dataclass
from typing import Any

MAX_CURSOR_LENGTH = 2048


class InvalidCursorError(ValueError):
    """The cursor was not issued by this service for this query."""


@dataclass(frozen=True, slots=True)
class CursorPosition:
    """Where the next page starts: strictly after (`sort_value`, `key`) in the query's order."""

    query: str
    sort_value: Any
    key: str


def _b64encode(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode("ascii")


def _b64decode(text: str) -> bytes:
    return base64.urlsafe_b64decode((text + "=" * (-len(text) % 4)).encode("ascii"))


def query_digest(parts: Any) -> str:
    """A short, stable digest of a query's identity (any JSON-serialisable description of it)."""
    canonical = json.dumps(parts, separators=(",", ":"), sort_keys=True, default=str)
    return _b64encode(hashlib.sha256(canonical.encode()).digest()[:12])


class CursorCodec:
    """Signs and verifies cursors with one secret (rotate it and outstanding cursors become 400s)."""

    def __init__(self, secret: bytes) -> None:
        if len(secret) < 16:
            raise ValueError("the cursor secret must be at least 16 bytes")
        self._secret = secret

    def _mac(self, body: bytes) -> bytes:
        return hmac.new(self._secret, body, hashlib.sha256).digest()

    def encode(self, position: CursorPosition) -> str:
        body = json.dumps(
            {"q": position.query, "s": position.sort_value, "k": position.key}, separators=(",", ":")
        ).encode()
        return f"{_b64encode(body)}.{_b64encode(self._mac(body))}"

    def decode(self, cursor: str, *, query: str) -> CursorPosition:
        """The position in `cursor`; InvalidCursorError if it is malformed, forged or for another query."""
        if len(cursor) > MAX_CURSOR_LENGTH or cursor.count(".") != 1:
            raise InvalidCursorError("the cursor is malformed")
        body_text, mac_text = cursor.split(".")
        try:
            body, mac = _b64decode(body_text), _b64decode(mac_text)
        except (binascii.Error, ValueError) as exc:
            raise InvalidCursorError("the cursor is malformed") from exc
        if not hmac.compare_digest(mac, self._mac(body)):
            raise InvalidCursorError("the cursor was not issued by this service or was altered")
        try:
            data = json.loads(body)
        except ValueError as exc:
            raise InvalidCursorError("the cursor is malformed") from exc
        if not isinstance(data, dict) or set(data) != {"q", "s", "k"} or not isinstance(data["k"], str):
            raise InvalidCursorError("the cursor is malformed")
        if data["q"] != query:
            raise InvalidCursorError("the cursor belongs to a different query (filters or sort changed)")
        return CursorPosition(query, data["s"], data["k"])
