"""command-svc's settings: the relay member id a restarted replica keeps."""

from __future__ import annotations

import socket

import pytest

from command_svc.settings import CommandServiceSettings


@pytest.fixture(autouse=True)
def _secret(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("JWT_SECRET", "a-test-secret-long-enough-for-hs256-xxxxxxxx")


def test_the_default_instance_id_is_the_host_and_port_so_a_restart_keeps_it(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("COMMAND_SVC_PORT", "18081")
    first, restarted = CommandServiceSettings(), CommandServiceSettings()
    assert first.instance_id == restarted.instance_id == f"{socket.gethostname()}-18081"
    monkeypatch.setenv("COMMAND_SVC_PORT", "18082")
    assert CommandServiceSettings().instance_id != first.instance_id  # a second replica on the host


def test_an_explicit_instance_id_wins(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("COMMAND_SVC_INSTANCE_ID", "pod-a")
    assert CommandServiceSettings().instance_id == "pod-a"
