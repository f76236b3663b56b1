#!/usr/bin/env bash
# Makes the two images the Dockerfile starts from, locally, for an engine that cannot pull them:
#   local/python:<suite>  Debian's python3 and CA certificates on a minimal Debian (mmdebstrap from the
#                         Debian archive, the same source apt uses), with `python` -> python3
#   local/uv:<version>    just the uv binary at /uv, from uv's wheel on PyPI (the same binary the
#                         public uv image holds), at the version the Dockerfile's UV_IMAGE default names
# Prints the build arguments that select them. An image already present is kept.
# The uv image is built for this machine's architecture (the engine's).
# Needs DOCKER and DOCKER_HOST from scripts/deploy/engine.sh env.
set -euo pipefail

REPO_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
DOCKER="${DOCKER:-docker}"
# bookworm's python3 is 3.11, the version of the Dockerfile's default base (python:3.11-slim-bookworm).
SUITE="${BASE_SUITE:-bookworm}"
UV_VERSION="$(sed -n 's|^ARG UV_IMAGE=.*:\([0-9][0-9.]*\)$|\1|p' "$REPO_ROOT/Dockerfile")"
[[ -n "$UV_VERSION" ]] || { echo "no uv version in the Dockerfile's UV_IMAGE default" >&2; exit 1; }
PYTHON_IMAGE="local/python:$SUITE"
UV_IMAGE="local/uv:$UV_VERSION"

log() { printf '[base-images %s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }
have() { "$DOCKER" image inspect "$1" >/dev/null 2>&1; }

work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT

if ! have "$PYTHON_IMAGE"; then
  command -v mmdebstrap >/dev/null || { echo "mmdebstrap is needed (apt-get install mmdebstrap)" >&2; exit 1; }
  log "making $PYTHON_IMAGE from Debian's archive (mmdebstrap, ~40 s)"
  # No documentation or locales: nothing in the image reads them.
  # shellcheck disable=SC2016  # $1 (the new root) is expanded by mmdebstrap's hook shell, not here
  mmdebstrap --quiet --variant=minbase --include=python3,ca-certificates \
    --dpkgopt='path-exclude=/usr/share/doc/*' --dpkgopt='path-exclude=/usr/share/man/*' \
    --dpkgopt='path-exclude=/usr/share/locale/*' --dpkgopt='path-include=/usr/share/locale/locale.alias' \
    --customize-hook='ln -sf python3 "$1/usr/bin/python"' \
    "$SUITE" "$work/python.tar"
  "$DOCKER" import --change 'CMD ["python3"]' --change 'ENV LANG=C.UTF-8' \
    "$work/python.tar" "$PYTHON_IMAGE" >/dev/null
fi

if ! have "$UV_IMAGE"; then
  log "making $UV_IMAGE from uv's wheel"
  # Installed by the project's own uv into a scratch environment: no pip needed on the host.
  uv="$(command -v uv || true)"
  [[ -n "$uv" ]] || { echo "uv is needed (make deps installs it)" >&2; exit 1; }
  "$uv" venv --quiet --python python3 "$work/venv"
  "$uv" pip install --quiet --python "$work/venv/bin/python" "uv==$UV_VERSION"
  install -m 0755 "$work/venv/bin/uv" "$work/uv"
  tar -C "$work" -cf "$work/uv.tar" uv
  "$DOCKER" import "$work/uv.tar" "$UV_IMAGE" >/dev/null
fi

echo "--build-arg PYTHON_IMAGE=$PYTHON_IMAGE --build-arg UV_IMAGE=$UV_IMAGE"
