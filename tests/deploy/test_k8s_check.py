"""`make k8s-check` inside `make test` when its binaries are cached on this machine: every chart variant
and the dev overlay accepted by a real kube-apiserver's server-side dry run, fresh and as an upgrade of
the installed defaults, and every broken manifest refused. Building the binaries takes 25-45 min on 2
cores, so the suite never builds them: where they are missing the test is reported skipped with the
command that builds them (`make k8s-check`)."""

from __future__ import annotations

import subprocess

import pytest

from tests.deploy.rendering import ROOT, TOOLS

pytestmark = pytest.mark.timeout(600)
BINARIES = ("helm", "etcd", "kube-apiserver", "kubectl")


def test_every_variant_passes_the_server_side_dry_run_and_broken_manifests_are_refused() -> None:
    missing = [
        name
        for name in BINARIES
        if subprocess.run([str(TOOLS), "path", name], capture_output=True, check=False).returncode != 0
    ]
    if missing:
        pytest.skip(f"{', '.join(missing)} not built on this machine: `make k8s-check` builds them once")
    done = subprocess.run(
        [str(ROOT / "scripts/deploy/k8s-check.sh")], capture_output=True, text=True, timeout=540, check=False
    )
    log = done.stdout + done.stderr
    assert done.returncode == 0, log
    accepted = [line for line in log.splitlines() if " ok " in line and "refused" not in line]
    refused = [line for line in log.splitlines() if " refused: " in line]
    # The defaults, the ci/ variants and the dev overlay; then each variant as an upgrade of the defaults.
    assert len(accepted) >= 12, log
    assert len(refused) == 6, log
