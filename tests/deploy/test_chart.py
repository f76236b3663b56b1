"""The Helm chart, rendered for its defaults and every documented variant (ci/*-values.yaml): what a
platform team expects of it, offline validation against Kubernetes' schemas, and the plain manifests
rendered from it. The server-side dry run against a real API server is `make k8s-check`."""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Any

import pytest

from tests.deploy.rendering import (
    AWS_SDK_VARIABLES,
    CHART,
    ROOT,
    SERVICES,
    VARIANTS,
    env_names,
    helm,
    kubernetes_validate,
    of_kind,
    render,
    render_text,
)

# The first test builds helm when this machine has none cached (minutes, once).
pytestmark = pytest.mark.timeout(1200)

ALL = {"default": None, **VARIANTS}


def rendered(variant: str) -> list[dict[str, Any]]:
    path = ALL[variant]
    return render([path] if path else [])


@pytest.mark.parametrize("variant", ALL)
def test_helm_lint_strict_passes(variant: str) -> None:
    path = ALL[variant]
    done = helm("lint", "--strict", str(CHART), *(["--values", str(path)] if path else []))
    assert done.returncode == 0, done.stdout + done.stderr


@pytest.mark.parametrize("variant", ALL)
def test_every_rendered_object_passes_kubernetes_validate_strict(variant: str, tmp_path: Path) -> None:
    path = ALL[variant]
    text = render_text([path] if path else [])
    assert text.returncode == 0, text.stderr
    (tmp_path / "rendered.yaml").write_text(text.stdout)
    done = kubernetes_validate(tmp_path / "rendered.yaml")
    assert done.returncode == 0, done.stdout + done.stderr


@pytest.mark.parametrize("variant", ALL)
def test_every_variable_set_is_one_the_service_reads_and_ports_agree(variant: str) -> None:
    documents = rendered(variant)
    services = of_kind(documents, "Service")
    for name, deployment in of_kind(documents, "Deployment").items():
        package = name.removeprefix("cqrs-")
        (container,) = deployment["spec"]["template"]["spec"]["containers"]
        names = {e["name"] for e in container["env"]}
        reads = env_names(SERVICES[package]) | (AWS_SDK_VARIABLES if package == "command-svc" else set())
        unknown = names - reads
        assert not unknown, (variant, package, unknown)
        port = next(
            int(e["value"])
            for e in container["env"]
            if e["name"] == package.upper().replace("-", "_") + "_PORT"
        )
        assert [p["containerPort"] for p in container["ports"]] == [port]
        assert services[name]["spec"]["ports"][0]["port"] == port
    for job in of_kind(documents, "Job").values():
        (container,) = job["spec"]["template"]["spec"]["containers"]
        # `cqrs setup` reads the projector's settings: Kafka's, and the writer DSN (it migrates read models).
        names = {e["name"] for e in container["env"]}
        assert not names - env_names(SERVICES["projector-svc"]), names
        assert "DATABASE_URL" in names
        assert container["args"][0] == "setup"


@pytest.mark.parametrize("variant", ALL)
def test_credentials_only_come_from_existing_secrets_and_auth_is_always_on(variant: str) -> None:
    documents = rendered(variant)
    assert not of_kind(documents, "Secret"), "the chart renders no secret material"
    for kind in ("Deployment", "Job"):
        for name, workload in of_kind(documents, kind).items():
            (container,) = workload["spec"]["template"]["spec"]["containers"]
            for variable in container["env"]:
                if any(
                    w in variable["name"] for w in ("SECRET", "URI", "URL", "PASSWORD", "KEY_ID", "TOKEN")
                ):
                    if variable["name"] in {"DYNAMODB_ENDPOINT_URL"}:
                        continue  # an address, not a credential
                    assert "secretKeyRef" in variable["valueFrom"], (variant, name, variable["name"])
                if variable["name"] == "CQRS_AUTH_MODE":
                    assert variable["value"] == "jwt"


def test_pods_are_hardened_spread_and_probed() -> None:
    documents = rendered("default")
    for name, deployment in of_kind(documents, "Deployment").items():
        pod = deployment["spec"]["template"]["spec"]
        assert pod["securityContext"]["runAsNonRoot"] is True
        assert pod["securityContext"]["runAsUser"] == 10001, name
        assert pod["automountServiceAccountToken"] is False, name
        assert pod["terminationGracePeriodSeconds"] >= 25, name  # command-svc drains for up to 20 s
        assert [c["topologyKey"] for c in pod["topologySpreadConstraints"]] == [
            "topology.kubernetes.io/zone",
            "kubernetes.io/hostname",
        ]
        (container,) = pod["containers"]
        context = container["securityContext"]
        assert (context["allowPrivilegeEscalation"], context["readOnlyRootFilesystem"]) == (False, True)
        assert context["capabilities"]["drop"] == ["ALL"]
        assert container["resources"]["limits"]["memory"] and container["resources"]["requests"]["cpu"]
        assert container["livenessProbe"]["httpGet"]["path"] == "/healthz"
        assert container["readinessProbe"]["httpGet"]["path"] == "/readyz"
        assert container["startupProbe"]["httpGet"]["path"] == "/healthz"


def test_budgets_autoscaling_and_the_setup_hook() -> None:
    documents = rendered("default")
    deployments = of_kind(documents, "Deployment")
    assert set(of_kind(documents, "PodDisruptionBudget")) == set(deployments)
    (hpa,) = of_kind(documents, "HorizontalPodAutoscaler").values()
    assert hpa["spec"]["scaleTargetRef"]["name"] == "cqrs-query-svc"
    # The HPA owns query-svc's count; the others keep theirs.
    assert "replicas" not in deployments["cqrs-query-svc"]["spec"]
    assert deployments["cqrs-command-svc"]["spec"]["replicas"] == 2
    job = of_kind(documents, "Job")["cqrs-setup"]
    assert job["metadata"]["annotations"]["helm.sh/hook"] == "pre-install,pre-upgrade"
    assert job["spec"]["template"]["spec"]["containers"][0]["image"].endswith("/cqrs-cli:0.1.0")
    hook_account = of_kind(documents, "ServiceAccount")["cqrs-setup"]
    assert hook_account["metadata"]["annotations"]["helm.sh/hook-weight"] == "-10"  # before the Job


def test_network_policies_admit_http_only_from_the_ingress_namespace() -> None:
    policies = of_kind(rendered("default"), "NetworkPolicy")
    assert set(policies) == {"cqrs-command-svc", "cqrs-projector-svc", "cqrs-query-svc", "cqrs-cqrs-setup"}
    query = policies["cqrs-query-svc"]["spec"]
    sources = [rule["from"][0]["namespaceSelector"]["matchLabels"] for rule in query["ingress"]]
    assert {"kubernetes.io/metadata.name": "ingress-nginx"} in sources
    assert not policies["cqrs-cqrs-setup"]["spec"]["ingress"]
    # The setup Job creates topics and migrates read models: Kafka and PostgreSQL, nothing else.
    setup_ports = {p["port"] for rule in policies["cqrs-cqrs-setup"]["spec"]["egress"] for p in rule["ports"]}
    assert setup_ports == {53, 9092, 5432}
    # query-svc reaches PostgreSQL and DNS, never Kafka or the write store.
    ports = {p["port"] for rule in query["egress"] for p in rule["ports"]}
    assert ports == {53, 5432}
    command_ports = {
        p["port"] for rule in policies["cqrs-command-svc"]["spec"]["egress"] for p in rule["ports"]
    }
    assert command_ports == {53, 9092, 27017}


def test_dynamodb_and_aurora_variants_use_iam_roles_and_no_store_secrets() -> None:
    documents = rendered("aws")
    accounts = of_kind(documents, "ServiceAccount")
    # The setup Job migrates the read models as the projector does: the projector's role (rds-db:connect).
    assert (
        accounts["cqrs-setup"]["metadata"]["annotations"]["eks.amazonaws.com/role-arn"]
        == accounts["cqrs-projector-svc"]["metadata"]["annotations"]["eks.amazonaws.com/role-arn"]
    )
    job = of_kind(documents, "Job")["cqrs-setup"]["spec"]["template"]["spec"]
    job_env = {e["name"]: e.get("value") for e in job["containers"][0]["env"]}
    assert (job_env["DATABASE_SSLMODE"], job_env["DATABASE_IAM_AUTH"]) == ("verify-full", "true")
    assert {v["name"] for v in job["volumes"]} >= {"rds-ca"}
    for name in ("cqrs-command-svc", "cqrs-projector-svc", "cqrs-query-svc"):
        assert accounts[name]["metadata"]["annotations"]["eks.amazonaws.com/role-arn"].startswith(
            "arn:aws:iam::"
        )
    command = of_kind(documents, "Deployment")["cqrs-command-svc"]["spec"]["template"]["spec"]["containers"][
        0
    ]
    env = {e["name"]: e.get("value") for e in command["env"]}
    assert env["WRITE_STORE"] == "dynamodb"
    assert "MONGODB_URI" not in env
    # One publisher of the stored events: the replicas read the table's stream, no outbox relay too.
    assert env["COMMAND_SVC_EVENT_PUBLISHER"] == "dynamodb-stream"
    lambda_publishes = render([VARIANTS["aws"]], ["writeStore.dynamodb.eventPublisher=none"])
    command_env = of_kind(lambda_publishes, "Deployment")["cqrs-command-svc"]["spec"]["template"]["spec"][
        "containers"
    ][0]["env"]
    assert {"name": "COMMAND_SVC_EVENT_PUBLISHER", "value": "none"} in command_env
    unknown = render_text([VARIANTS["aws"]], ["writeStore.dynamodb.eventPublisher=kinesis"])
    assert unknown.returncode != 0
    query = of_kind(documents, "Deployment")["cqrs-query-svc"]["spec"]["template"]["spec"]
    query_env = {e["name"]: e.get("value") for e in query["containers"][0]["env"]}
    assert (query_env["DATABASE_SSLMODE"], query_env["DATABASE_IAM_AUTH"]) == ("verify-full", "true")
    assert {v["name"] for v in query["volumes"]} >= {"rds-ca"}


def test_keda_scales_consumers_on_lag_and_is_capped_at_the_partition_count() -> None:
    documents = rendered("keda")
    scaled = of_kind(documents, "ScaledObject")
    assert set(scaled) == {"cqrs-command-svc", "cqrs-projector-svc"}
    for name, scaled_object in scaled.items():
        assert scaled_object["spec"]["maxReplicaCount"] <= 12, name
        assert scaled_object["spec"]["triggers"][0]["type"] == "kafka"
        assert "replicas" not in of_kind(documents, "Deployment")[name]["spec"]
    too_many = render_text([VARIANTS["keda"]], ["keda.projector.maxReplicas=13"])
    assert too_many.returncode != 0
    assert "keda.projector.maxReplicas (13) exceeds kafka.partitions (12)" in too_many.stderr
    assert of_kind(documents, "ServiceMonitor")["cqrs-cqrs"]["spec"]["endpoints"][0]["path"] == "/metrics"


@pytest.mark.parametrize(
    ("sets", "message"),
    [
        (["services.query.port=70000"], "at '/services/query/port': maximum"),
        (["services.command.replica=3"], "additional properties 'replica' not allowed"),
        (["writeStore.mongodb.existingSecret="], "at '/writeStore/mongodb/existingSecret': minLength"),
        (["auth.algorithm=HS256"], "at '/auth/hmac/existingSecret': minLength"),
        (["services.query.workers=0"], "at '/services/query/workers': minimum"),
    ],
    ids=["bad-port", "unknown-field", "missing-mongodb-secret", "hs256-without-secret", "no-query-workers"],
)
def test_a_broken_value_fails_at_helm_install(sets: list[str], message: str) -> None:
    """values.schema.json: `helm install`, `helm template` and `helm lint` all refuse these."""
    done = render_text(sets=sets)
    assert done.returncode != 0
    assert message in done.stderr, done.stderr


@pytest.mark.parametrize(
    ("sets", "message"),
    [
        # Past the chart's schema (tolerations are free-form there), refused by Kubernetes' own schema.
        (["services.command.tolerations[0].key=a", "services.command.tolerations[0].bogus=x"], "bogus"),
    ],
    ids=["unknown-field-in-a-toleration"],
)
def test_a_value_the_chart_schema_lets_through_fails_kubernetes_validate(
    sets: list[str], message: str, tmp_path: Path
) -> None:
    text = render_text(sets=sets)
    assert text.returncode == 0, text.stderr
    (tmp_path / "rendered.yaml").write_text(text.stdout)
    done = kubernetes_validate(tmp_path / "rendered.yaml")
    assert done.returncode != 0
    assert message in done.stdout + done.stderr


@pytest.mark.parametrize(
    ("path", "old", "new"),
    [
        (("Service", "cqrs-query-svc"), "port: 8080\n", "port: eighty\n"),
        (("Deployment", "cqrs-command-svc"), "imagePullPolicy:", "imagePulPolicy:"),
        (("Deployment", "cqrs-command-svc"), "  selector:\n", "  selectr:\n"),
    ],
    ids=["bad-port", "unknown-field", "missing-required"],
)
def test_broken_manifests_fail_kubernetes_validate(
    path: tuple[str, str], old: str, new: str, tmp_path: Path
) -> None:
    """The offline layer on its own: a manifest edited by hand is refused too."""
    documents = render_text().stdout.split("\n---\n")
    kind, name = path
    (index,) = [i for i, d in enumerate(documents) if f"kind: {kind}\n" in d and f"name: {name}\n" in d]
    assert old in documents[index]
    documents[index] = documents[index].replace(old, new, 1)
    (tmp_path / "broken.yaml").write_text("\n---\n".join(documents))
    assert kubernetes_validate(tmp_path / "broken.yaml").returncode != 0


def test_an_out_of_range_port_passes_the_offline_schemas(tmp_path: Path) -> None:
    """Why the server-side dry run exists: Kubernetes' JSON schemas carry no port range, so only a real
    API server refuses this (scripts/deploy/k8s-check.sh shows it does)."""
    text = render_text().stdout.replace("      port: 8080\n", "      port: 80800\n", 1)
    assert "port: 80800" in text
    (tmp_path / "port.yaml").write_text(text)
    assert kubernetes_validate(tmp_path / "port.yaml").returncode == 0


def test_the_plain_manifests_are_what_the_chart_renders() -> None:
    done = subprocess.run(
        [str(ROOT / "scripts/deploy/manifests.sh"), "--check"],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr


def test_the_projections_value_drives_the_projector_the_query_service_the_setup_job_and_keda() -> None:
    documents = render([VARIANTS["keda"]], ["services.projector.projections={shop,products}"])
    deployments = of_kind(documents, "Deployment")

    def env_of(name: str) -> dict[str, str | None]:
        spec = deployments[name]["spec"]["template"]["spec"]
        return {e["name"]: e.get("value") for e in spec["containers"][0]["env"]}

    assert env_of("cqrs-projector-svc")["PROJECTOR_SVC_PROJECTIONS"] == "shop,products"
    assert env_of("cqrs-query-svc")["QUERY_SVC_PROJECTIONS"] == "shop,products"
    assert of_kind(documents, "Job")["cqrs-setup"]["spec"]["template"]["spec"]["containers"][0]["args"] == [
        "setup",
        "shop",
        "products",
    ]
    triggers = of_kind(documents, "ScaledObject")["cqrs-projector-svc"]["spec"]["triggers"]
    assert [t["metadata"]["consumerGroup"] for t in triggers] == [
        "projector-svc.shop",
        "projector-svc.products",
    ]
    assert render_text(sets=["services.projector.projections={}"]).returncode != 0  # at least one


def test_the_query_workers_value_sets_the_server_processes_of_a_query_pod() -> None:
    def workers(sets: list[str]) -> str:
        deployment = of_kind(render(sets=sets), "Deployment")["cqrs-query-svc"]
        env = deployment["spec"]["template"]["spec"]["containers"][0]["env"]
        return str(next(e["value"] for e in env if e["name"] == "QUERY_SVC_WORKERS"))

    assert workers([]) == "1"
    assert workers(["services.query.workers=2"]) == "2"
