#!/usr/bin/env bash
# `make manifests`: plain manifests for kubectl, rendered from the Helm chart so the two never differ.
#
#   scripts/deploy/manifests.sh          render deploy/k8s/manifests/base/cqrs-platform.yaml again
#   scripts/deploy/manifests.sh --check  exit 1 (with a diff) when the committed file is not what the
#                                        chart renders today (tests/deploy runs this)
#
# The base is `helm template` of the chart's defaults for release `cqrs`; overlays/dev (kustomize) adapts
# it to a development cluster. Plain kubectl has no hooks: the setup Job is applied with everything else,
# which is safe because the services create topics and migrate at start-up too (idempotently, locked).
set -euo pipefail

REPO_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
CHART="$REPO_ROOT/deploy/k8s/helm/cqrs-platform"
BASE="$REPO_ROOT/deploy/k8s/manifests/base/cqrs-platform.yaml"
HELM="$("$REPO_ROOT/scripts/deploy/tools.sh" path helm 2>/dev/null)" \
  || { "$REPO_ROOT/scripts/deploy/tools.sh" ensure helm; HELM="$("$REPO_ROOT/scripts/deploy/tools.sh" path helm)"; }

render() {
  echo '# Rendered from deploy/k8s/helm/cqrs-platform by "make manifests"; do not edit (tests/deploy checks it).'
  "$HELM" template cqrs "$CHART"
}

if [[ "${1:-}" == "--check" ]]; then
  diff -u "$BASE" <(render) || { echo "$BASE is stale: run make manifests" >&2; exit 1; }
else
  "$HELM" lint --strict "$CHART" >/dev/null
  render >"$BASE"
  echo "rendered ${BASE#"$REPO_ROOT"/}"
fi
