#!/usr/bin/env bash
# Prints the path of promtool, building it from the Go module proxy the first time (a few minutes).
# The binary is kept in .tools/ (git-ignored) per version, so later runs and CI on the same machine
# reuse it; Go's own module and build caches make a rebuild in a fresh clone quicker too.
set -euo pipefail
cd "$(dirname "$0")/../.."
VERSION=${PROMTOOL_VERSION:-v0.316.0}  # Prometheus 3.x, as the Go module proxy serves it
DIR="$PWD/.tools/promtool-$VERSION"
if [[ ! -x "$DIR/promtool" ]]; then
    command -v go >/dev/null || { echo "promtool: Go is needed to build it (go install)" >&2; exit 1; }
    echo "building promtool $VERSION into $DIR (once)" >&2
    GOBIN="$DIR" go install "github.com/prometheus/prometheus/cmd/promtool@$VERSION" >&2
fi
echo "$DIR/promtool"
