"""Rendering the Helm chart for tests: the cached helm binary, strict YAML, and what each service reads."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import yaml
from pydantic import AliasChoices
from pydantic_settings import BaseSettings

from command_svc.settings import CommandServiceSettings
from projector_svc.settings import ProjectorSettings
from query_svc.settings import QuerySettings

ROOT = Path(__file__).resolve().parents[2]
CHART = ROOT / "deploy/k8s/helm/cqrs-platform"
VARIANTS = {
    path.name.removesuffix("-values.yaml"): path for path in sorted((CHART / "ci").glob("*-values.yaml"))
}
TOOLS = ROOT / "scripts/deploy/tools.sh"


def _kube_version() -> str:
    """The Kubernetes minor the manifests are validated for, as kubernetes-validate names its schemas
    (`1.34.0`): the API server version pinned in scripts/deploy/tools.sh."""
    versions = subprocess.run([str(TOOLS), "versions"], capture_output=True, text=True, check=True).stdout
    kube = dict(pair.split("=") for pair in versions.split())["kube"]
    major, minor, _patch = kube.removeprefix("v").split(".")
    return f"{major}.{minor}.0"


KUBE_VERSION = _kube_version()
SERVICES: dict[str, type[BaseSettings]] = {
    "command-svc": CommandServiceSettings,
    "projector-svc": ProjectorSettings,
    "query-svc": QuerySettings,
}
#: Read by the AWS SDK inside command-svc (botocore), not by the settings classes.
AWS_SDK_VARIABLES = {"AWS_REGION", "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"}


def tool(name: str) -> str:
    """A cached tool binary, built first when missing (helm: minutes, once per machine)."""
    found = subprocess.run([str(TOOLS), "path", name], capture_output=True, text=True, check=False)
    if found.returncode != 0:
        subprocess.run([str(TOOLS), "ensure", name], check=True, timeout=3000)
        found = subprocess.run([str(TOOLS), "path", name], capture_output=True, text=True, check=True)
    return found.stdout.strip()


class _StrictLoader(yaml.SafeLoader):
    """Refuses a mapping key given twice (PyYAML keeps the last; kubectl refuses the document)."""


def _no_duplicates(loader: _StrictLoader, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
    keys = [loader.construct_object(key, deep=deep) for key, _ in node.value]
    duplicates = {k for k in keys if keys.count(k) > 1}
    assert not duplicates, f"duplicate keys {duplicates} at {node.start_mark}"
    return loader.construct_mapping(node, deep)


_StrictLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _no_duplicates)


def load_all(text: str) -> list[dict[str, Any]]:
    return [d for d in yaml.load_all(text, Loader=_StrictLoader) if d]  # a SafeLoader subclass


def helm(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [tool("helm"), *args], capture_output=True, text=True, timeout=120, check=False
    )  # our own binary and arguments


def render_text(values: Sequence[Path] = (), sets: Sequence[str] = ()) -> subprocess.CompletedProcess[str]:
    args = ["template", "cqrs", str(CHART), "--namespace", "cqrs"]
    args += [a for v in values for a in ("--values", str(v))]
    args += [a for s in sets for a in ("--set", s)]
    return helm(*args)


def render(values: Sequence[Path] = (), sets: Sequence[str] = ()) -> list[dict[str, Any]]:
    done = render_text(values, sets)
    assert done.returncode == 0, done.stderr
    return load_all(done.stdout)


def of_kind(documents: list[dict[str, Any]], kind: str) -> dict[str, dict[str, Any]]:
    return {d["metadata"]["name"]: d for d in documents if d["kind"] == kind}


def env_names(settings: type[BaseSettings]) -> set[str]:
    """Every environment variable a settings class reads (its prefix applies only to unaliased fields)."""
    prefix = str(settings.model_config.get("env_prefix", ""))
    names = set()
    for name, field in settings.model_fields.items():
        alias = field.validation_alias
        if alias is None:
            names.add(f"{prefix}{name}".upper())
        elif isinstance(alias, AliasChoices):
            names |= {choice.upper() for choice in alias.choices if isinstance(choice, str)}
        else:
            names.add(str(alias).upper())
    return names


def kubernetes_validate(path: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(  # the dev dependency's console script
        [
            str(Path(sys.executable).parent / "kubernetes-validate"),
            "-k",
            KUBE_VERSION,
            "--strict",
            "--quiet",
            str(path),
        ],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
