"""The rendered Kubernetes manifests, the Dockerfile and the compose file keep the deployment rules.

`deploy/k8s/manifests/cqrs-platform.yaml` is `helm template` of the chart with its defaults
(`make manifests` renders it again), so these checks cover the chart's defaults too.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
MANIFESTS = ROOT / "deploy/k8s/manifests/cqrs-platform.yaml"
SERVICES = {"command-svc": 8081, "projector-svc": 8082, "query-svc": 8080}
SECRET_LIKE = ("SECRET", "URI", "URL", "PASSWORD", "TOKEN")


@pytest.fixture(scope="module")
def documents() -> list[dict[str, Any]]:
    return [d for d in yaml.safe_load_all(MANIFESTS.read_text()) if d]


def of_kind(documents: list[dict[str, Any]], kind: str) -> dict[str, dict[str, Any]]:
    return {d["metadata"]["name"]: d for d in documents if d["kind"] == kind}


def test_each_service_has_a_deployment_a_service_and_a_disruption_budget(
    documents: list[dict[str, Any]],
) -> None:
    for kind in ("Deployment", "Service", "PodDisruptionBudget"):
        assert set(of_kind(documents, kind)) == {f"cqrs-{name}" for name in SERVICES}, kind
    for name, port in SERVICES.items():
        service = of_kind(documents, "Service")[f"cqrs-{name}"]
        assert service["spec"]["ports"][0]["port"] == port


def test_pods_run_as_an_unprivileged_user_on_a_read_only_root(documents: list[dict[str, Any]]) -> None:
    for name, deployment in of_kind(documents, "Deployment").items():
        pod = deployment["spec"]["template"]["spec"]
        assert pod["securityContext"]["runAsNonRoot"] is True, name
        assert pod["securityContext"]["runAsUser"] != 0, name
        assert pod["automountServiceAccountToken"] is False, name
        for container in pod["containers"]:
            context = container["securityContext"]
            assert context["allowPrivilegeEscalation"] is False, name
            assert context["readOnlyRootFilesystem"] is True, name
            assert context["capabilities"]["drop"] == ["ALL"], name
            assert container["resources"]["limits"]["memory"], name


def test_probes_use_the_health_and_readiness_endpoints(documents: list[dict[str, Any]]) -> None:
    for name, deployment in of_kind(documents, "Deployment").items():
        container = deployment["spec"]["template"]["spec"]["containers"][0]
        assert container["livenessProbe"]["httpGet"]["path"] == "/healthz", name
        assert container["readinessProbe"]["httpGet"]["path"] == "/readyz", name


def test_secrets_come_only_from_secret_references_and_auth_is_on(documents: list[dict[str, Any]]) -> None:
    (config,) = of_kind(documents, "ConfigMap").values()
    assert config["data"]["CQRS_AUTH_MODE"] == "jwt"
    assert not any(word in key for key in config["data"] for word in ("SECRET", "PASSWORD"))
    assert not any("://" in value and "@" in value for value in config["data"].values())
    for name, deployment in of_kind(documents, "Deployment").items():
        for variable in deployment["spec"]["template"]["spec"]["containers"][0].get("env", []):
            if any(word in variable["name"] for word in SECRET_LIKE):
                assert "secretKeyRef" in variable["valueFrom"], (name, variable["name"])


def test_the_image_runs_as_a_fixed_non_root_user() -> None:
    dockerfile = (ROOT / "Dockerfile").read_text().splitlines()
    users = [line.split()[1] for line in dockerfile if line.startswith("USER ")]
    assert users == ["10001:10001"]
    assert any(line.startswith("ENTRYPOINT") for line in dockerfile)


def test_compose_starts_every_service_and_the_demo_after_its_dependencies() -> None:
    compose = yaml.safe_load((ROOT / "docker-compose.yml").read_text())["services"]
    for name in SERVICES:
        assert compose[name]["build"]["args"]["SERVICE"] == name
        assert compose[name]["healthcheck"]["test"]
    assert compose["demo"]["command"] == ["demo"]
    assert set(compose["demo"]["depends_on"]) == set(SERVICES)
    assert compose["kafka"]["environment"]["KAFKA_AUTO_CREATE_TOPICS_ENABLE"] == "false"
