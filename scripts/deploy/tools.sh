#!/usr/bin/env bash
# Builds (once) and locates the tools the deploy checks use: helm, etcd, kube-apiserver, kubectl and
# the docker compose v2 plugin. None of them has a package in the registries this project can reach
# (Debian's docker-compose is v1), so each is built from the Go module proxy at a pinned version and
# cached as a binary under $CQRS_TOOLS_DIR (default
# ~/.cache/cqrs-platform/tools: outside every clone, so each worktree and CI's fresh clone on the same
# machine reuse one build). A cached binary is never rebuilt; delete it to force a rebuild (the
# version is in its name, so bumping a pin below builds anew). Builds run under `nice` so that a build
# beside tests does not starve them.
#
#   scripts/deploy/tools.sh path NAME      print the cached binary's path (exit 1 if it is not built)
#   scripts/deploy/tools.sh ensure NAME..  build what is missing (helm ~4 min, etcd ~4 min, kube-apiserver
#                                          ~13 min, kubectl ~7 min, compose ~6 min on 2 cores, cold)
#   scripts/deploy/tools.sh status         one line per tool
set -euo pipefail

TOOLS_DIR="${CQRS_TOOLS_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/cqrs-platform/tools}"

# One place for the pinned versions. KUBE_VERSION is also the API version the manifests are checked
# against, by the API server and by kubernetes-validate (tests/deploy/rendering.py reads it here).
HELM_VERSION=v3.22.0
ETCD_VERSION=v3.6.16
KUBE_VERSION=v1.34.3
COMPOSE_VERSION=v2.40.3
# k8s.io/kubernetes' staging modules are published as v0.<minor>.<patch>.
KUBE_STAGING_VERSION="v0.${KUBE_VERSION#v1.}"

log() { printf '[k8s-tools %s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }
die() { log "ERROR: $*"; exit 1; }

bin_path() {
  case "$1" in
    helm) echo "$TOOLS_DIR/helm-$HELM_VERSION" ;;
    etcd) echo "$TOOLS_DIR/etcd-$ETCD_VERSION" ;;
    kube-apiserver) echo "$TOOLS_DIR/kube-apiserver-$KUBE_VERSION" ;;
    kubectl) echo "$TOOLS_DIR/kubectl-$KUBE_VERSION" ;;
    # Named as docker's CLI plugin lookup wants it; DOCKER_CONFIG=$TOOLS_DIR/docker makes `docker compose` find it.
    compose) echo "$TOOLS_DIR/docker/cli-plugins/docker-compose" ;;
    *) die "unknown tool: $1 (helm, etcd, kube-apiserver, kubectl, compose)" ;;
  esac
}

go_env() {
  command -v go >/dev/null || die "go is needed to build the Kubernetes tools (the Go module proxy is their only source here)"
  export GOWORK=off GOFLAGS=-mod=mod GOTOOLCHAIN=local CGO_ENABLED=0
}

# module_src MODULE@VERSION DEST: a writable copy of a module's source (the module cache is read-only).
module_src() {
  local dir
  dir="$(go mod download -json "$1" | sed -n 's/^\t"Dir": "\(.*\)",$/\1/p')"
  [[ -n "$dir" ]] || die "go mod download $1 gave no directory"
  rm -rf "$2"
  mkdir -p "$(dirname "$2")"
  cp -r "$dir" "$2"
  chmod -R u+w "$2"
}

build_helm() {
  local out=$1 gobin
  gobin="$(mktemp -d)"
  GOBIN="$gobin" nice -n 10 go install "helm.sh/helm/v3/cmd/helm@$HELM_VERSION"
  mv "$gobin/helm" "$out"
  rmdir "$gobin"
}

build_etcd() {
  local out=$1 src="$TOOLS_DIR/src/etcd"
  module_src "go.etcd.io/etcd/server/v3@$ETCD_VERSION" "$src"
  # Its go.mod points sibling modules at ../ directories that a module download does not contain.
  local drops
  drops="$(cd "$src" && go mod edit -json | python3 -c 'import json,sys; print(" ".join("-dropreplace="+r["Old"]["Path"] for r in json.load(sys.stdin).get("Replace") or []))')"
  # shellcheck disable=SC2086
  [[ -z "$drops" ]] || (cd "$src" && go mod edit $drops)
  (cd "$src" && nice -n 10 go build -trimpath -o "$out" .)
  rm -rf "$src"
}

# compose is built as the main module: `go install` refuses it over its go.mod's exclude directives.
build_compose() {
  local out=$1 src="$TOOLS_DIR/src/compose"
  module_src "github.com/docker/compose/v2@$COMPOSE_VERSION" "$src"
  (cd "$src" && nice -n 10 go build -trimpath \
    -ldflags "-s -w -X github.com/docker/compose/v2/internal.Version=$COMPOSE_VERSION" -o "$out" ./cmd)
  rm -rf "$src"
}

# kube-apiserver and kubectl come from k8s.io/kubernetes, whose module zip omits staging/: its
# ./staging replaces are pointed at the published modules of the same release.
kube_src() {
  local src="$TOOLS_DIR/src/kubernetes"
  if [[ ! -f "$src/.prepared" ]]; then
    module_src "k8s.io/kubernetes@$KUBE_VERSION" "$src"
    local edits
    edits="$(cd "$src" && go mod edit -json | python3 -c '
import json, sys
version = sys.argv[1]
for r in json.load(sys.stdin).get("Replace") or []:
    if r["New"]["Path"].startswith("./staging/"):
        print("-replace=%s=%s@%s" % (r["Old"]["Path"], r["Old"]["Path"], version))
' "$KUBE_STAGING_VERSION")"
    # shellcheck disable=SC2086
    (cd "$src" && go mod edit $edits)
    touch "$src/.prepared"
  fi
  echo "$src"
}

kube_ldflags() {
  local minor=${KUBE_VERSION#v1.}
  minor=${minor%%.*}
  local flags="-s -w" pkg
  # Without these, the binaries report v0.0.0 and kubectl refuses to talk to the server.
  for pkg in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
    flags+=" -X $pkg.gitVersion=$KUBE_VERSION -X $pkg.gitMajor=1 -X $pkg.gitMinor=$minor -X $pkg.gitTreeState=clean"
  done
  echo "$flags"
}

build_kube() {
  local out=$1 cmd=$2 src
  src="$(kube_src)"
  (cd "$src" && nice -n 10 go build -trimpath -ldflags "$(kube_ldflags)" -o "$out" "./cmd/$cmd")
}

ensure() {
  go_env
  mkdir -p "$TOOLS_DIR/docker/cli-plugins"
  local name out started
  for name in "$@"; do
    out="$(bin_path "$name")"
    [[ -x "$out" ]] && continue
    log "building $name (cached as $out afterwards)"
    started=$SECONDS
    case "$name" in
      helm) build_helm "$out.tmp" ;;
      etcd) build_etcd "$out.tmp" ;;
      kube-apiserver) build_kube "$out.tmp" kube-apiserver ;;
      kubectl) build_kube "$out.tmp" kubectl ;;
      compose) build_compose "$out.tmp" ;;
    esac
    mv "$out.tmp" "$out"
    log "built $name in $((SECONDS - started)) s"
  done
  [[ ! -d "$TOOLS_DIR/src/kubernetes" || ! -x "$(bin_path kube-apiserver)" || ! -x "$(bin_path kubectl)" ]] \
    || rm -rf "$TOOLS_DIR/src/kubernetes"
}

case "${1:-}" in
  path)
    out="$(bin_path "${2:?tool name}")"
    [[ -x "$out" ]] || exit 1
    echo "$out"
    ;;
  ensure)
    shift
    if (($#)); then ensure "$@"; else ensure helm etcd kube-apiserver kubectl compose; fi
    ;;
  status)
    for name in helm etcd kube-apiserver kubectl compose; do
      out="$(bin_path "$name")"
      if [[ -x "$out" ]]; then echo "$name: $out"; else echo "$name: not built"; fi
    done
    ;;
  versions) echo "helm=$HELM_VERSION etcd=$ETCD_VERSION kube=$KUBE_VERSION compose=$COMPOSE_VERSION" ;;
  *) echo "usage: $0 path NAME | ensure [NAME...] | status | versions" >&2; exit 2 ;;
esac
