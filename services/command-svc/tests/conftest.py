"""Fixtures of the command service's tests, including a second, tiny domain defined only here.

The tally domain proves the pipeline is generic: nothing outside this file knows it exists.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import pytest
from pydantic import BaseModel, ConfigDict, Field, SecretStr

from command_svc.domain.decider import AggregateDefinition, Related, RuleViolationError
from cqrs_shared.auth import mint_token
from cqrs_shared.messages import CommandPayload, EventPayload
from cqrs_shared.settings import AuthMode, AuthSettings

SECRET = "unit-test-secret-that-is-long-enough-for-hs256"


class Increment(CommandPayload):
    TYPE = "Increment"
    AGGREGATE_TYPE = "tally"
    REQUIRED_ROLE = "tally:write"

    by: int = Field(ge=1, le=100)


class CloseTally(CommandPayload):
    TYPE = "CloseTally"
    AGGREGATE_TYPE = "tally"
    REQUIRED_ROLE = "tally:close"


class Incremented(EventPayload):
    TYPE = "Incremented"

    by: int


class TallyClosed(EventPayload):
    TYPE = "TallyClosed"


class Tally(BaseModel):
    model_config = ConfigDict(frozen=True)

    total: int = 0
    closed: bool = False


def _decide(state: Tally | None, command: Any, _related: Related) -> Sequence[EventPayload]:
    if state is not None and state.closed:
        raise RuleViolationError("tally.closed", "the tally is closed")
    if isinstance(command, Increment):
        return [Incremented(by=command.by)]
    return [TallyClosed()]


def _evolve(state: Tally | None, event: Any) -> Tally:
    state = state or Tally()
    if isinstance(event, Incremented):
        return state.model_copy(update={"total": state.total + event.by})
    return state.model_copy(update={"closed": True})


TALLY = AggregateDefinition(
    aggregate_type="tally",
    state_model=Tally,
    commands=(Increment, CloseTally),
    events=(Incremented, TallyClosed),
    decide=_decide,
    evolve=_evolve,
)


@pytest.fixture
def tally() -> AggregateDefinition[Tally]:
    return TALLY


@pytest.fixture
def auth_settings() -> AuthSettings:
    return AuthSettings(auth_mode=AuthMode.JWT, jwt_secret=SecretStr(SECRET))


@pytest.fixture
def token_for(auth_settings: AuthSettings) -> Any:
    def mint(*roles: str, subject: str = "tester") -> str:
        return "Bearer " + mint_token(
            SECRET,
            subject=subject,
            roles=list(roles),
            issuer=auth_settings.jwt_issuer,
            audience=auth_settings.jwt_audience,
        )

    return mint
