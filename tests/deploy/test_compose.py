"""docker-compose.yml and its aws-like override: every variant (the default, `--profile dynamodb`, the
aws-like override with and without `--profile mongodb`; a test checks that no declared profile is
left out) is what `docker compose config` resolves, and in each, what compose sets is what the
services read, ports agree with their settings, topics are created by one setup run, every
long-running service has a healthcheck start period and limits, and no secret has a default outside
.env.example. The aws-like variant runs the way AWS does: DynamoDB and its stream, no MongoDB, and
PostgreSQL over TLS only with every client on verify-full against the generated CA."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest

from tests.deploy.compose_config import AWS_LIKE, COMPOSE, ENV_EXAMPLE, VARIANTS, compose, profiles, resolve
from tests.deploy.rendering import AWS_SDK_VARIABLES, ROOT, SERVICES, env_names

TLS_SCRIPT = ROOT / "deploy/compose/postgres-tls.sh"
HBA = ROOT / "deploy/compose/pg_hba.conf"
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
#: Official images whose variables are theirs (their documentation), not the project's settings.
INFRASTRUCTURE = {"kafka", "postgres", "mongodb", "dynamodb"}
#: Runs once and exits; everything else is long-running.
ONE_SHOTS = {"setup", "demo", "dynamodb-tables", "postgres-tls"}
SECRETS = ("PASSWORD", "SECRET", "ACCESS_KEY")
# The first compose call builds compose v2 from the Go module proxy when it is not cached (minutes, once).
pytestmark = pytest.mark.timeout(1800)


@pytest.fixture(scope="module", params=list(VARIANTS))
def resolved(request: pytest.FixtureRequest) -> tuple[str, dict[str, dict[str, Any]]]:
    variant: str = request.param
    return variant, resolve(variant)


def port_setting(package: str, environment: dict[str, str]) -> int:
    variable = package.upper().replace("-", "_") + "_PORT"
    default = SERVICES[package].model_fields["port"].default
    return int(environment.get(variable, default))


def script_variables(path: Path) -> set[str]:
    return set(re.findall(r"\$\{([A-Z_]+)", path.read_text()))


def test_docker_compose_config_accepts_every_variant(resolved: tuple[str, dict[str, dict[str, Any]]]) -> None:
    variant, services = resolved
    aws_like = variant.startswith("aws-like")
    assert ("dynamodb" in services) == (variant != "default")
    assert ("mongodb" in services) == (not aws_like or "mongodb" in VARIANTS[variant][1])
    assert ("stream-publisher" in services) == aws_like
    assert services["query-svc"]["environment"]["DATABASE_URL"].startswith("postgresql://cqrs:")
    assert services["command-svc"]["environment"]["JWT_SECRET"]


def test_the_variants_cover_every_profile_the_files_declare() -> None:
    for files in {files for files, _ in VARIANTS.values()}:
        covered = {p for fs, chosen in VARIANTS.values() if fs == files for p in chosen}
        assert profiles(files) == covered, [f.name for f in files]


def test_every_variable_set_is_one_its_service_reads(resolved: tuple[str, dict[str, dict[str, Any]]]) -> None:
    variant, services = resolved
    command_reads = env_names(SERVICES["command-svc"]) | AWS_SDK_VARIABLES
    reads = {package: env_names(settings) for package, settings in SERVICES.items()}
    reads["command-svc"] = command_reads
    # The stream publisher process and `cqrs aws create-tables` read command-svc's settings.
    reads["stream-publisher"] = command_reads
    reads["dynamodb-tables"] = command_reads
    reads["setup"] = env_names(SERVICES["projector-svc"])
    reads["demo"] = CLI_READS
    reads["postgres-tls"] = script_variables(TLS_SCRIPT)
    # Every service of the variant is checked: a new one must say what it reads.
    assert set(services) - INFRASTRUCTURE <= set(reads), variant
    for name, service in services.items():
        if name in reads:
            assert set(service.get("environment", {})) <= reads[name], (variant, name)


def test_published_ports_are_the_ports_the_services_listen_on(
    resolved: tuple[str, dict[str, dict[str, Any]]],
) -> None:
    variant, services = resolved
    for package in SERVICES:
        (mapping,) = services[package]["ports"]
        expected = port_setting(package, services[package]["environment"])
        assert int(mapping["published"]) == mapping["target"] == expected, (variant, package)
    assert services["demo"]["environment"]["QUERY_URL"].endswith(f":{port_setting('query-svc', {})}")
    if "stream-publisher" in services:
        # It serves nothing: a published port would be one nobody listens on.
        assert "ports" not in services["stream-publisher"]


def test_topics_are_created_once_before_any_service_starts(
    resolved: tuple[str, dict[str, dict[str, Any]]],
) -> None:
    variant, services = resolved
    assert services["kafka"]["environment"]["KAFKA_AUTO_CREATE_TOPICS_ENABLE"] == "false"
    assert services["setup"]["command"][0] == "setup"
    # `cqrs setup` migrates the read models too: it needs the read store up.
    assert services["setup"]["depends_on"]["postgres"]["condition"] == "service_healthy"
    for name, service in services.items():
        if name in SERVICES or name == "stream-publisher":
            assert service["depends_on"]["setup"]["condition"] == "service_completed_successfully", name
    assert set(services["demo"]["depends_on"]) >= set(SERVICES), variant


def test_long_running_services_have_start_periods_limits_and_a_stop_grace(
    resolved: tuple[str, dict[str, dict[str, Any]]],
) -> None:
    variant, services = resolved
    for name, service in services.items():
        if name in ONE_SHOTS:
            assert service["restart"] == "no", (variant, name)
            continue
        assert service["healthcheck"]["start_period"], (variant, name)
        assert service["deploy"]["resources"]["limits"]["memory"], (variant, name)
    for name in [*SERVICES, *(["stream-publisher"] if "stream-publisher" in services else [])]:
        assert services[name]["stop_grace_period"] == "30s", name
        assert services[name]["read_only"] is True, name
        assert services[name]["cap_drop"] == ["ALL"], name
    for package in SERVICES:
        assert services[package]["build"]["args"]["SERVICE"] == package


@pytest.mark.parametrize("path", [COMPOSE, AWS_LIKE], ids=lambda p: p.name)
def test_no_secret_has_a_default_outside_env_example(path: Path) -> None:
    text = path.read_text()
    example = dict(
        line.split("=", 1)
        for line in ENV_EXAMPLE.read_text().splitlines()
        if line and not line.startswith("#")
    )
    for name, form in re.findall(r"\$\{([A-Z_]+)(:?[-?][^}]*)?\}", text):
        if any(word in name for word in SECRETS):
            assert form.startswith(":?"), f"{name} must be required (set in .env), not defaulted: {form}"
            assert example.get(name), f"{name} is required but .env.example does not show it"
    assert not re.search(r"(PASSWORD|SECRET)[A-Z_]*: [^$\s]", text), f"a literal secret in {path.name}"


def test_the_aws_like_variant_publishes_from_the_stream_and_keeps_no_mongodb() -> None:
    services = resolve("aws-like")
    command = services["command-svc"]
    assert command["environment"]["WRITE_STORE"] == "dynamodb"
    # No outbox relay: the stream publisher is the event path (on AWS, the stream Lambda).
    assert command["environment"]["COMMAND_SVC_EVENT_PUBLISHER"] == "none"
    assert "MONGODB_URI" not in command["environment"]
    assert set(command["depends_on"]) == {"setup", "dynamodb-tables"}
    publisher = services["stream-publisher"]
    assert publisher["entrypoint"] == ["python", "-m", "command_svc.stream_publishing"]
    assert publisher["image"] == command["image"]
    assert publisher["environment"]["COMMAND_SVC_INSTANCE_ID"]
    (probe,) = publisher["volumes"]
    assert Path(probe["source"]) == ROOT / "deploy/compose/stream_publisher_alive.py" and probe["read_only"]
    assert publisher["healthcheck"]["test"] == ["CMD", "python", probe["target"]]
    assert services["demo"]["depends_on"]["stream-publisher"]["condition"] == "service_healthy"
    assert services["dynamodb-tables"]["command"][:2] == ["aws", "create-tables"]


def _mounts(service: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {mount["target"]: mount for mount in service.get("volumes", [])}


def test_the_aws_like_variant_reaches_postgresql_over_tls_verified_against_the_generated_ca() -> None:
    services = resolve("aws-like")
    generator = services["postgres-tls"]
    entry = generator["entrypoint"]
    assert Path(_mounts(generator)[entry[1]]["source"]) == TLS_SCRIPT
    server_dir, ca_dir = entry[2], entry[3]
    server_volume = _mounts(generator)[server_dir]["source"]
    ca_volume = _mounts(generator)[ca_dir]["source"]
    names = generator["environment"]["TLS_SERVER_NAMES"].split(",")

    postgres = services["postgres"]
    assert postgres["depends_on"]["postgres-tls"]["condition"] == "service_completed_successfully"
    settings = dict(
        postgres["command"][i + 1].split("=", 1) for i, a in enumerate(postgres["command"]) if a == "-c"
    )
    assert settings["ssl"] == "on"
    mounts = _mounts(postgres)
    # The server reads the generated pair from the server volume, read-only; never the CA volume.
    (server_mount,) = (m for m in mounts.values() if m["source"] == server_volume)
    assert server_mount["read_only"]
    for key in ("ssl_cert_file", "ssl_key_file"):
        assert Path(settings[key]).parent == Path(server_mount["target"]), key
    assert Path(mounts[settings["hba_file"]]["source"]) == HBA
    assert ca_volume not in {m["source"] for m in mounts.values()}

    for client in ("setup", "projector-svc", "query-svc"):
        env = services[client]["environment"]
        assert env["DATABASE_SSLMODE"] == "verify-full", client
        # The DSN's host is a name the certificate carries (verify-full checks it).
        assert urlsplit(env["DATABASE_URL"]).hostname in names, client
        (ca_mount,) = (m for m in _mounts(services[client]).values() if m["source"] == ca_volume)
        assert ca_mount["read_only"], client
        assert Path(env["DATABASE_SSLROOTCERT"]) == Path(ca_mount["target"]) / "ca.crt", client
        # Only the CA certificate reaches the clients: the server's key volume is not theirs.
        assert server_volume not in {m["source"] for m in _mounts(services[client]).values()}, client


def test_the_aws_like_postgresql_refuses_connections_in_clear() -> None:
    lines = [
        line.split() for line in HBA.read_text().splitlines() if line.strip() and not line.startswith("#")
    ]
    # TCP only as hostssl: a client in clear matches no line and is refused, as with rds.force_ssl=1.
    assert {line[0] for line in lines} == {"local", "hostssl"}
    assert all(line[-1] not in {"trust", "password"} for line in lines if line[0] == "hostssl")


def test_docker_compose_config_refuses_to_run_without_the_secrets() -> None:
    for files in ((COMPOSE,), (COMPOSE, AWS_LIKE)):
        done = compose("config", files=files, env_file=False)
        assert done.returncode != 0
        missing = r"required variable (\w+) is missing a value: set \1 \(cp .env.example .env\)"
        assert re.search(missing, done.stderr), done.stderr
