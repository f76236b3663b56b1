#!/usr/bin/env bash
# Prints the path of promtool (Prometheus' rule checker), building it first when it is missing.
# There is no package of it in the registries this project reaches, so it is built from the Go module
# proxy at the pinned version (about 5 minutes on 2 cores, cold) and kept as a binary under
# $TOOLS_DIR (default .stack/tools, git-ignored, beside scripts/deploy/tools.sh's tools). A cached
# binary is never rebuilt; its name carries the version, so bumping the pin builds anew.
set -euo pipefail
REPO_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
TOOLS_DIR="${TOOLS_DIR:-${STACK_CACHE_DIR:-${STACK_DIR:-$REPO_ROOT/.stack}}/tools}"
# github.com/prometheus/prometheus v0.316.0 is Prometheus 3.x as the Go module proxy versions it.
PROMTOOL_VERSION=v0.316.0
BIN="$TOOLS_DIR/promtool-$PROMTOOL_VERSION"

if [[ ! -x "$BIN" ]]; then
    command -v go >/dev/null || { echo "promtool: Go is needed to build it (go install from the module proxy)" >&2; exit 1; }
    echo "[promtool] building $PROMTOOL_VERSION into $TOOLS_DIR (once)" >&2
    build="$(mktemp -d)"
    trap 'rm -rf "$build"' EXIT
    GOWORK=off GOTOOLCHAIN=local GOBIN="$build" \
        nice go install "github.com/prometheus/prometheus/cmd/promtool@$PROMTOOL_VERSION" >&2
    mkdir -p "$TOOLS_DIR"
    mv "$build/promtool" "$BIN"
fi
echo "$BIN"
