"""JWT bearer authentication and role checks, the same on the command and the query side.

Algorithms are pinned by configuration (never taken from the token header), `exp`, `iss` and `aud`
are required and checked, and roles come from the `roles` claim (a list of strings).
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

import jwt

from cqrs_shared.envelopes import utc_now
from cqrs_shared.settings import AuthMode, AuthSettings


class AuthError(Exception):
    """Authentication failed (`forbidden=False`, answer 401) or a role is missing (answer 403)."""

    def __init__(self, message: str, *, forbidden: bool = False) -> None:
        super().__init__(message)
        self.message = message
        self.forbidden = forbidden


@dataclass(frozen=True, slots=True)
class Principal:
    subject: str
    roles: frozenset[str] = field(default_factory=frozenset)

    def require(self, role: str) -> None:
        if role not in self.roles:
            raise AuthError(f"role '{role}' is required", forbidden=True)


#: The caller when authentication is explicitly disabled: it holds every role.
class _Anyone(Principal):
    def require(self, role: str) -> None:
        return None


ANONYMOUS_ADMIN: Principal = _Anyone(subject="anonymous")


class TokenVerifier:
    """Turns an `Authorization` header value into a `Principal`, or raises `AuthError`.

    A token verified once is remembered (by its exact text, until its `exp`): a client sends the
    same token with every command, and checking its signature again cost a tenth of command-svc's
    CPU per command (py-spy, topic door under load). Only successes are remembered, a token
    differing in any character is verified in full, and the entries are bounded.
    """

    #: Tokens remembered at most; the oldest is forgotten first.
    CACHE_SIZE = 4096

    def __init__(self, settings: AuthSettings) -> None:
        self._settings = settings
        self._verified: dict[str, tuple[Principal, float]] = {}
        self._key: Any = None
        self._jwks: jwt.PyJWKSet | None = None
        if settings.auth_mode is AuthMode.DISABLED:
            return
        if settings.jwt_algorithm == "HS256":
            assert settings.jwt_secret is not None  # enforced by AuthSettings
            self._key = settings.jwt_secret.get_secret_value()
        elif settings.jwt_jwks_file is not None:
            self._jwks = jwt.PyJWKSet.from_dict(json.loads(settings.jwt_jwks_file.read_text()))
        else:
            assert settings.jwt_public_key_file is not None  # enforced by AuthSettings
            self._key = settings.jwt_public_key_file.read_text()

    @property
    def enabled(self) -> bool:
        return self._settings.auth_mode is AuthMode.JWT

    def verify(self, authorization: str | None) -> Principal:
        if not self.enabled:
            return ANONYMOUS_ADMIN
        if not authorization:
            raise AuthError("a bearer token is required")
        scheme, _, token = authorization.strip().partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            raise AuthError("the Authorization header must be 'Bearer <token>'")
        token = token.strip()
        remembered = self._verified.get(token)
        if remembered is not None:
            principal, expires = remembered
            if time.time() < expires + self._settings.jwt_leeway_seconds:
                return principal
            del self._verified[token]  # expired: the full check below says so
        principal, expires = self._decode(token)
        if len(self._verified) >= self.CACHE_SIZE:
            del self._verified[next(iter(self._verified))]
        self._verified[token] = (principal, expires)
        return principal

    def _decode(self, token: str) -> tuple[Principal, float]:
        try:
            claims = jwt.decode(
                token,
                key=self._key_for(token),
                algorithms=[self._settings.jwt_algorithm],
                audience=self._settings.jwt_audience,
                issuer=self._settings.jwt_issuer,
                leeway=self._settings.jwt_leeway_seconds,
                options={"require": ["exp", "iss", "aud", "sub"]},
            )
        except jwt.ExpiredSignatureError as exc:
            raise AuthError("the token has expired") from exc
        except jwt.PyJWTError as exc:
            raise AuthError(f"the token is not valid: {exc}") from exc
        roles = claims.get("roles", [])
        if not isinstance(roles, list) or not all(isinstance(r, str) for r in roles):
            raise AuthError("the 'roles' claim must be a list of strings")
        return Principal(subject=str(claims["sub"]), roles=frozenset(roles)), float(claims["exp"])

    def _key_for(self, token: str) -> Any:
        if self._jwks is None:
            return self._key
        kid = jwt.get_unverified_header(token).get("kid")
        for key in self._jwks.keys:
            if key.key_id == kid:
                return key.key
        raise jwt.InvalidKeyError(f"no key with kid {kid!r} in the configured JWKS")


def mint_token(
    secret: str,
    *,
    subject: str,
    roles: list[str],
    issuer: str,
    audience: str,
    ttl: timedelta = timedelta(hours=1),
) -> str:
    """An HS256 token for development and tests (production tokens come from an identity provider)."""
    now = utc_now()
    claims = {"sub": subject, "roles": roles, "iss": issuer, "aud": audience, "iat": now, "exp": now + ttl}
    return jwt.encode(claims, secret, algorithm="HS256")
