"""Consistency tokens: how a reader waits until the read side has caught up with a write.

A token names one aggregate and the version a command produced. The projector records, per view and
aggregate, the version it has applied; a read carrying a token waits until that applied version is
at least the token's. Tokens are opaque to clients (base64url) but not secret: they carry no data a
client could not see in the command outcome.
"""

from __future__ import annotations

import base64
import binascii
from dataclasses import dataclass

_PREFIX = "v1"


class InvalidTokenError(ValueError):
    """The token is not one this library issued."""


@dataclass(frozen=True, slots=True)
class ConsistencyToken:
    aggregate_type: str
    aggregate_id: str
    version: int

    def encode(self) -> str:
        raw = f"{_PREFIX}|{self.aggregate_type}|{self.version}|{self.aggregate_id}".encode()
        return base64.urlsafe_b64encode(raw).rstrip(b"=").decode("ascii")

    @classmethod
    def decode(cls, token: str) -> ConsistencyToken:
        padded = token + "=" * (-len(token) % 4)
        try:
            raw = base64.urlsafe_b64decode(padded.encode("ascii")).decode()
            prefix, aggregate_type, version, aggregate_id = raw.split("|", 3)
            parsed_version = int(version)
        except (binascii.Error, UnicodeError, ValueError) as exc:
            raise InvalidTokenError("malformed consistency token") from exc
        if prefix != _PREFIX or not aggregate_type or not aggregate_id or parsed_version < 1:
            raise InvalidTokenError("malformed consistency token")
        return cls(aggregate_type, aggregate_id, parsed_version)
