"""`cqrs command send` against a real command-svc: exit codes and printed outcomes, over both doors."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Callable

import pytest

from cqrs_shared.auth import mint_token
from cqrs_shared.testing.service_processes import AUDIENCE, E2E_SECRET, ISSUER, ServiceProcess

pytestmark = [pytest.mark.e2e, pytest.mark.integration]


def cqrs(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", "from cqrs_cli.main import app; app(prog_name='cqrs')", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_send_waits_for_outcomes_and_exits_by_status(
    start_service: Callable[..., ServiceProcess], service_env: dict[str, str]
) -> None:
    service = start_service("command_svc", "COMMAND_SVC_PORT")
    service.wait_ready()
    token = mint_token(E2E_SECRET, subject="cli", roles=["customers:write"], issuer=ISSUER, audience=AUDIENCE)
    env = {**os.environ, **service_env, "CQRS_TOKEN": token, "COMMAND_URL": service.url}
    register = [
        "command",
        "send",
        "RegisterCustomer",
        "--aggregate",
        "c-cli",
        "--payload",
        '{"name": "Lin", "email": "lin@example.com"}',
    ]

    accepted = cqrs(env, *register, "--wait")
    assert accepted.returncode == 0, accepted.stderr
    outcome = json.loads(accepted.stdout)
    assert (outcome["status"], outcome["version"], outcome["aggregate_id"]) == ("accepted", 1, "c-cli")

    again = cqrs(env, *register, "--http")
    assert again.returncode == 1
    assert json.loads(again.stdout)["code"] == "rule_violated"

    unauthorized = cqrs({**env, "CQRS_TOKEN": ""}, *register, "--wait")
    assert unauthorized.returncode == 1
    assert json.loads(unauthorized.stdout)["code"] == "unauthorized"

    bad = cqrs(env, "command", "send", "RegisterCustomer", "--aggregate", "c-2", "--payload", "{not json")
    assert bad.returncode == 2
    assert "not JSON" in bad.stderr
