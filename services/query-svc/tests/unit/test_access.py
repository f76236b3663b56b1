"""Authorization: roles per view, and verified tokens remembered only briefly and never past expiry."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from pydantic import SecretStr

from cqrs_shared.auth import AuthError, Principal, TokenVerifier, mint_token
from cqrs_shared.settings import AuthMode, AuthSettings
from query_svc.access import RememberingVerifier

SECRET = "unit-secret-0123456789abcdef0123456789"


class CountingVerifier(TokenVerifier):
    def __init__(self, settings: AuthSettings) -> None:
        super().__init__(settings)
        self.calls = 0

    def verify(self, authorization: str | None) -> Principal:
        self.calls += 1
        return super().verify(authorization)


def bearer(**kwargs: Any) -> str:
    token = mint_token(
        SECRET, subject="s", roles=["orders:read"], issuer="cqrs-platform", audience="cqrs-platform", **kwargs
    )
    return f"Bearer {token}"


@pytest.fixture
def inner() -> CountingVerifier:
    return CountingVerifier(AuthSettings(auth_mode=AuthMode.JWT, jwt_secret=SecretStr(SECRET)))


def test_a_verified_token_is_remembered_until_its_time_is_up(inner: CountingVerifier) -> None:
    remembering = RememberingVerifier(inner, ttl=30)
    header = bearer()
    assert [remembering.verify(header).roles for _ in range(3)] == [frozenset({"orders:read"})] * 3
    assert inner.calls == 1
    short = RememberingVerifier(inner, ttl=0)
    short.verify(header)
    short.verify(header)
    assert inner.calls == 3


def test_a_token_is_not_remembered_past_its_expiry(inner: CountingVerifier) -> None:
    remembering = RememberingVerifier(inner, ttl=3600)
    header = bearer(ttl=timedelta(seconds=-1))  # already expired, accepted within the leeway
    remembering.verify(header)
    remembering.verify(header)
    assert inner.calls == 2


def test_bad_tokens_are_never_remembered_and_memory_is_bounded(inner: CountingVerifier) -> None:
    remembering = RememberingVerifier(inner, size=2)
    for _ in range(2):
        with pytest.raises(AuthError):
            remembering.verify("Bearer not-a-jwt")
    assert inner.calls == 2
    for i in range(5):
        remembering.verify(bearer(ttl=timedelta(minutes=10 + i)))
    assert len(remembering._verified) == 2
