"""docker-compose.yml: what it sets is what the services read, ports agree with their settings, topics
are created by one setup run, every long-running service has a healthcheck start period and limits, no
secret has a default outside .env.example, and `docker compose config` accepts it."""

from __future__ import annotations

import re
import subprocess
from typing import Any

import pytest
import yaml

from tests.deploy.rendering import AWS_SDK_VARIABLES, ROOT, SERVICES, env_names, tool

COMPOSE = ROOT / "docker-compose.yml"
ENV_EXAMPLE = ROOT / ".env.example"
#: What the CLI reads beyond the projector's settings (`cqrs setup`): typer options' envvars
#: (cli/src/cqrs_cli/demo.py, commands.py) and the token minting defaults (token.py).
CLI_READS = {
    "KAFKA_BOOTSTRAP_SERVERS",
    "CQRS_TOPIC_PREFIX",
    "QUERY_URL",
    "COMMAND_URL",
    "CQRS_TOKEN",
    "JWT_SECRET",
}
SECRETS = ("PASSWORD", "SECRET", "ACCESS_KEY")


@pytest.fixture(scope="module")
def services() -> dict[str, dict[str, Any]]:
    loaded: dict[str, dict[str, Any]] = yaml.safe_load(COMPOSE.read_text())["services"]
    return loaded


def port_setting(package: str, environment: dict[str, str]) -> int:
    variable = package.upper().replace("-", "_") + "_PORT"
    default = SERVICES[package].model_fields["port"].default
    return int(environment.get(variable, default))


def test_every_variable_set_is_one_its_service_reads(services: dict[str, dict[str, Any]]) -> None:
    for package, settings in SERVICES.items():
        reads = env_names(settings) | (AWS_SDK_VARIABLES if package == "command-svc" else set())
        assert set(services[package]["environment"]) <= reads, (
            package,
            set(services[package]["environment"]) - reads,
        )
    assert set(services["setup"]["environment"]) <= env_names(SERVICES["projector-svc"])
    assert set(services["demo"]["environment"]) <= CLI_READS
    # `cqrs aws create-tables` reads the same names as command-svc's DynamoDB settings.
    assert (
        set(services["dynamodb-tables"]["environment"])
        <= env_names(SERVICES["command-svc"]) | AWS_SDK_VARIABLES
    )


def test_published_ports_are_the_ports_the_services_listen_on(services: dict[str, dict[str, Any]]) -> None:
    for package in SERVICES:
        (mapping,) = services[package]["ports"]
        host, container = (int(p) for p in mapping.split(":"))
        assert host == container == port_setting(package, services[package]["environment"]), package
    assert services["demo"]["environment"]["QUERY_URL"].endswith(f":{port_setting('query-svc', {})}")


def test_topics_are_created_once_before_any_service_starts(services: dict[str, dict[str, Any]]) -> None:
    assert services["kafka"]["environment"]["KAFKA_AUTO_CREATE_TOPICS_ENABLE"] == "false"
    assert services["setup"]["command"][0] == "setup"
    for package in SERVICES:
        assert services[package]["depends_on"]["setup"] == {"condition": "service_completed_successfully"}
    assert set(services["demo"]["depends_on"]) == set(SERVICES)


def test_long_running_services_have_start_periods_limits_and_a_stop_grace(
    services: dict[str, dict[str, Any]],
) -> None:
    for name, service in services.items():
        if service.get("restart") == "no":
            continue  # one-shot: setup, demo
        assert service["healthcheck"]["start_period"], name
        assert service["deploy"]["resources"]["limits"]["memory"], name
    for package in SERVICES:
        assert services[package]["stop_grace_period"] == "30s"
        assert services[package]["read_only"] is True
        assert services[package]["build"]["args"]["SERVICE"] == package


def test_no_secret_has_a_default_outside_env_example() -> None:
    text = COMPOSE.read_text()
    example = dict(
        line.split("=", 1)
        for line in ENV_EXAMPLE.read_text().splitlines()
        if line and not line.startswith("#")
    )
    for name, form in re.findall(r"\$\{([A-Z_]+)(:?[-?][^}]*)?\}", text):
        if any(word in name for word in SECRETS):
            assert form.startswith(":?"), f"{name} must be required (set in .env), not defaulted: {form}"
            assert example.get(name), f"{name} is required but .env.example does not show it"
    assert not re.search(r"(PASSWORD|SECRET)[A-Z_]*: [^$\s]", text), "a literal secret in docker-compose.yml"


def compose(*args: str, env_file: bool = True) -> subprocess.CompletedProcess[str]:
    files = ["--project-directory", str(ROOT), "--file", str(COMPOSE)]
    env_args = ["--env-file", str(ENV_EXAMPLE)] if env_file else ["--env-file", "/dev/null"]
    # A clean environment: the test process's own DATABASE_URL and friends must not interpolate.
    return subprocess.run(  # our own binary and arguments
        [tool("compose"), *files, *env_args, *args],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
        env={"PATH": "/usr/bin:/bin", "HOME": str(ROOT / ".stack")},
    )


@pytest.mark.timeout(1800)  # the first run builds compose v2 from the Go module proxy (minutes, once)
@pytest.mark.parametrize("profile", [[], ["--profile", "dynamodb"]], ids=["default", "dynamodb"])
def test_docker_compose_config_accepts_the_file(profile: list[str]) -> None:
    done = compose(*profile, "config", "--format", "json")
    assert done.returncode == 0, done.stderr
    resolved = yaml.safe_load(done.stdout)
    assert ("dynamodb" in resolved["services"]) == bool(profile)
    assert resolved["services"]["query-svc"]["environment"]["DATABASE_URL"].startswith("postgresql://cqrs:")
    assert resolved["services"]["command-svc"]["environment"]["JWT_SECRET"]


@pytest.mark.timeout(1800)
def test_docker_compose_config_refuses_to_run_without_the_secrets() -> None:
    done = compose("config", env_file=False)
    assert done.returncode != 0
    missing = r"required variable (\w+) is missing a value: set \1 \(cp .env.example .env\)"
    assert re.search(missing, done.stderr), done.stderr
