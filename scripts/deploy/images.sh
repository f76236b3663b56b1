#!/usr/bin/env bash
# `make images`: builds the four images (command-svc, projector-svc, query-svc, cqrs-cli) from the one
# Dockerfile, with nothing pulled.
#
#   IMAGE_PREFIX (default cqrs-platform) and IMAGE_TAG (default dev): images are PREFIX/NAME:TAG
#   PYTHON_IMAGE / UV_IMAGE: base images to build on; unset, local ones are made from Debian's archive
#     and uv's wheel (scripts/deploy/base-images.sh), since this machine kind cannot pull
#   SSL_CA_BUNDLE (default the host's bundle, when present): handed to the build as the ssl_ca secret,
#     for package downloads through a TLS-inspecting proxy; it never lands in a layer
#
# The engine is the one scripts/deploy/engine.sh finds or starts (never a pull, host network only).
set -euo pipefail

REPO_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
cd "$REPO_ROOT"
IMAGE_PREFIX="${IMAGE_PREFIX:-cqrs-platform}"
IMAGE_TAG="${IMAGE_TAG:-dev}"
SSL_CA_BUNDLE="${SSL_CA_BUNDLE-/etc/ssl/certs/ca-certificates.crt}"
# The deployables, each with the package the Dockerfile's SERVICE argument installs.
IMAGES=(command-svc projector-svc query-svc cqrs-cli)

log() { printf '[images %s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }

eval "$(scripts/deploy/engine.sh env)"
base_args=()
if [[ -n "${PYTHON_IMAGE:-}" || -n "${UV_IMAGE:-}" ]]; then
  [[ -z "${PYTHON_IMAGE:-}" ]] || base_args+=(--build-arg "PYTHON_IMAGE=$PYTHON_IMAGE")
  [[ -z "${UV_IMAGE:-}" ]] || base_args+=(--build-arg "UV_IMAGE=$UV_IMAGE")
else
  # Never fall back to the public defaults: on a machine that cannot pull they would fail later, less clearly.
  made="$(scripts/deploy/base-images.sh)" || { log "ERROR: could not make the local base images"; exit 1; }
  read -r -a base_args <<<"$made"
fi
secret_args=()
[[ -z "$SSL_CA_BUNDLE" || ! -s "$SSL_CA_BUNDLE" ]] || secret_args=(--secret "id=ssl_ca,src=$SSL_CA_BUNDLE")

started=$SECONDS
for name in "${IMAGES[@]}"; do
  image="$IMAGE_PREFIX/$name:$IMAGE_TAG"
  log "building $image"
  t=$SECONDS
  "$DOCKER" build --quiet --pull=false --network host "${base_args[@]}" "${secret_args[@]}" \
    --build-arg "SERVICE=$name" --tag "$image" . >/dev/null
  size="$("$DOCKER" image inspect --format '{{.Size}}' "$image")"
  log "built $image in $((SECONDS - t)) s, $((size / 1000000)) MB"
done
# The images a rebuild replaced (untagged now), ours only: the engine is shared by every clone.
# Housekeeping only: a prune already running (another clone's) must not fail the build.
"$DOCKER" image prune --force --filter label=org.opencontainers.image.source=cqrs-platform >/dev/null 2>&1 \
  || log "old images not pruned this time (another prune was running)"
log "four images in $((SECONDS - started)) s"
