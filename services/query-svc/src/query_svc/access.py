"""Bearer-token authorization of reads: one FastAPI dependency per required role.

Tokens are checked exactly as on the command side (`cqrs_shared.auth`); with
`CQRS_AUTH_MODE=disabled` (an explicit setting, never a default) every caller holds every role.
The bearer scheme is declared to OpenAPI so clients and test tools know how to authenticate.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Annotated

from fastapi import Depends
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from cqrs_shared.auth import AuthError, TokenVerifier
from cqrs_shared.problems import ProblemError

#: auto_error=False: a missing or non-bearer header reaches the verifier, which answers a problem.
BEARER = HTTPBearer(auto_error=False, description="A JWT with the view's read role")


def authorizer_for(verifier: TokenVerifier) -> Callable[[str], Callable[..., Awaitable[None]]]:
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
