"""Tests that rely on DynamoDB's atomicity ask whether the local moto has the project's fixes.

`infra/moto/moto_server_serial.py` serves requests one at a time and keeps a cancelled transaction out
of the table's stream (plain moto does neither, see that file). A moto started before those fixes
(an old local stack) answers 404 here, and the test fails with what to do instead of a puzzle.
"""

from __future__ import annotations

import httpx
import pytest

FIDELITY_PATH = "/cqrs-moto-fidelity"


def require_faithful_moto(endpoint: str) -> None:
    """Fail the test unless `endpoint` is the project's patched moto."""
    try:
        answer = httpx.get(endpoint.rstrip("/") + FIDELITY_PATH, timeout=5)
    except httpx.HTTPError as exc:
        pytest.fail(f"DynamoDB endpoint {endpoint} does not answer: {exc}", pytrace=False)
    if answer.status_code != 200:
        pytest.fail(
            f"the moto at {endpoint} lacks infra/moto/moto_server_serial.py's fixes (concurrent conditional "
            "transactions can both win, a cancelled transaction leaves stream records): restart it with "
            "`scripts/infra/moto.sh down && scripts/infra/moto.sh up`",
            pytrace=False,
        )
