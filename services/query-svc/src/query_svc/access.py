"""Bearer-token authorization of reads: one FastAPI dependency per required role.

Tokens are checked exactly as on the command side (`cqrs_shared.auth`); with
`CQRS_AUTH_MODE=disabled` (an explicit setting, never a default) every caller holds every role.
The bearer scheme is declared to OpenAPI so clients and test tools know how to authenticate.
A verified token is remembered briefly (never past its `exp`): reads are cheap enough that
re-checking the same signature and claims on every request was a large share of their cost.
"""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from typing import Annotated

import jwt
from fastapi import Depends
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from cqrs_shared.auth import AuthError, Principal, TokenVerifier
from cqrs_shared.problems import ProblemError

#: auto_error=False: a missing or non-bearer header reaches the verifier, which answers a problem.
BEARER = HTTPBearer(auto_error=False, description="A JWT with the view's read role")


class RememberingVerifier:
    """`TokenVerifier.verify` with a bounded memory of tokens that verified, for `ttl` seconds at
    most and never beyond their expiry. Tokens that fail are never remembered."""

    def __init__(self, verifier: TokenVerifier, *, ttl: float = 30.0, size: int = 4096) -> None:
        self._verifier = verifier
        self._ttl = ttl
        self._size = size
        self._verified: OrderedDict[str, tuple[Principal, float]] = OrderedDict()

    def verify(self, authorization: str | None) -> Principal:
        if authorization is None or not self._verifier.enabled:
            return self._verifier.verify(authorization)
        now = time.time()
        remembered = self._verified.get(authorization)
        if remembered is not None and remembered[1] > now:
            self._verified.move_to_end(authorization)
            return remembered[0]
        principal = self._verifier.verify(authorization)
        token = authorization.partition(" ")[2].strip()
        expires = jwt.decode(token, options={"verify_signature": False}).get("exp", now)
        self._verified[authorization] = (principal, min(now + self._ttl, float(expires)))
        if len(self._verified) > self._size:
            self._verified.popitem(last=False)
        return principal


def authorizer_for(
    verifier: TokenVerifier | RememberingVerifier,
) -> Callable[[str], Callable[..., Awaitable[None]]]:
    """`authorizer(role)` is a dependency raising 401 (no valid token) or 403 (role missing)."""

    def authorizer(role: str) -> Callable[..., Awaitable[None]]:
        # async: a plain `def` dependency would cost every request a hop to the thread pool.
        async def authorize(
            credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(BEARER)],
        ) -> None:
            header = f"{credentials.scheme} {credentials.credentials}" if credentials else None
            try:
                verifier.verify(header).require(role)
            except AuthError as exc:
                if exc.forbidden:
                    raise ProblemError(403, "forbidden", "Forbidden", exc.message) from exc
                raise ProblemError(
                    401, "unauthorized", "Unauthorized", exc.message, headers={"WWW-Authenticate": "Bearer"}
                ) from exc

        return authorize

    return authorizer
