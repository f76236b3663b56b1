#!/usr/bin/env bash
# A Docker engine for building and running the project's images, without touching anyone else's.
#
#   scripts/deploy/engine.sh env     print `export DOCKER_HOST=... DOCKER=...` for an engine that answers,
#                                    starting a private one first when none does (exit 1 if impossible)
#   scripts/deploy/engine.sh status  which engine answers
#   scripts/deploy/engine.sh stop    stop the private engine (only ours, by its pid file)
#
# An engine the user already runs (DOCKER_HOST, or the default socket) is used as it is. Otherwise a
# private dockerd is started with its own socket, data and exec roots under $CQRS_ENGINE_DIR (default
# ~/.cache/cqrs-platform/docker: one per user and machine, so every clone, worktree and CI run reuses its
# base images and build cache), with no bridge, no iptables rules and no IP forwarding: containers run
# with host networking (or none) and every port they open is one on loopback. Like the native stack, it
# keeps running after a build or test run; `stop` ends it. Debian's docker.io provides dockerd and a client with
# BuildKit built in (needed for `RUN --mount`); as root with apt it is installed when missing.
set -euo pipefail

ENGINE_DIR="${CQRS_ENGINE_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/cqrs-platform/docker}"
SOCKET="$ENGINE_DIR/docker.sock"
PIDFILE="$ENGINE_DIR/dockerd.pid"
LOGFILE="$ENGINE_DIR/dockerd.log"
# Debian's client first: a static client elsewhere on PATH may lack BuildKit (no buildx plugin) and
# fall back to the legacy builder, which cannot run the Dockerfile's `RUN --mount`.
DEBIAN_CLIENT=/usr/bin/docker

log() { printf '[engine %s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }
die() { log "ERROR: $*"; exit 1; }
# Exit status 3: this machine can neither reach an engine nor start one (tests report that, not a failure).
unavailable() { log "$*"; exit 3; }

client() {
  if [[ -x "$DEBIAN_CLIENT" ]]; then echo "$DEBIAN_CLIENT"; else command -v docker || true; fi
}

answers() {  # answers CLIENT [HOST]: the engine behind HOST (or the client's default) replies
  local docker=$1 host=${2:-}
  [[ -n "$docker" ]] || return 1
  if [[ -n "$host" ]]; then
    DOCKER_HOST="$host" timeout 10 "$docker" info >/dev/null 2>&1
  else
    timeout 10 "$docker" info >/dev/null 2>&1
  fi
}

ours_running() {
  [[ -f "$PIDFILE" ]] || return 1
  local pid
  pid="$(<"$PIDFILE")"
  [[ "$pid" =~ ^[0-9]+$ ]] && kill -0 "$pid" 2>/dev/null \
    && tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null | grep -qF -- "$SOCKET"
}

install_engine() {
  if [[ $EUID -ne 0 ]] || ! command -v apt-get >/dev/null; then
    unavailable "no Docker engine answers and dockerd is not installed (Debian: apt-get install docker.io)"
  fi
  log "installing Debian's docker.io (dockerd, containerd, runc, a BuildKit client) and mmdebstrap"
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
    docker.io containerd runc mmdebstrap iptables >/dev/null 2>&1 \
    || { apt-get update -qq >/dev/null && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq \
         --no-install-recommends docker.io containerd runc mmdebstrap iptables >/dev/null; }
}

start_private() {
  command -v dockerd >/dev/null || install_engine
  mkdir -p "$ENGINE_DIR/data" "$ENGINE_DIR/exec"
  log "starting a private dockerd on $SOCKET (no bridge, no iptables; log $LOGFILE)"
  ( exec setsid dockerd --data-root "$ENGINE_DIR/data" --exec-root "$ENGINE_DIR/exec" \
      -H "unix://$SOCKET" --pidfile "$PIDFILE" \
      --bridge=none --iptables=false --ip6tables=false --ip-masq=false --ip-forward=false \
      --storage-driver=overlay2 </dev/null >>"$LOGFILE" 2>&1 ) &
  for _ in $(seq 1 60); do
    answers "$(client)" "unix://$SOCKET" && return 0
    sleep 0.5
  done
  die "the private dockerd did not answer within 30 s; see $LOGFILE"
}

# The engine to use, as `HOST CLIENT` (HOST empty: the client's own default).
resolve() {
  local docker
  docker="$(client)"
  if [[ -n "${DOCKER_HOST:-}" && "${DOCKER_HOST}" != "unix://$SOCKET" ]]; then
    answers "$docker" "$DOCKER_HOST" && { echo "$DOCKER_HOST $docker"; return 0; }
  elif [[ -z "${DOCKER_HOST:-}" ]] && answers "$docker"; then
    echo " $docker"
    return 0
  fi
  ours_running || start_private
  echo "unix://$SOCKET $(client)"
}

case "${1:-}" in
  env)
    resolved="$(resolve)" || exit $?
    host="${resolved%% *}" docker="${resolved#* }"
    [[ -n "$docker" ]] || die "no docker client"
    [[ -z "$host" ]] || echo "export DOCKER_HOST=$host"
    echo "export DOCKER=$docker DOCKER_BUILDKIT=1"
    ;;
  status)
    if ours_running; then echo "private engine: running (pid $(<"$PIDFILE"), unix://$SOCKET)"
    else echo "private engine: not running"; fi
    ;;
  stop)
    if ours_running; then
      pid="$(<"$PIDFILE")"
      kill "$pid"
      for _ in $(seq 1 40); do kill -0 "$pid" 2>/dev/null || break; sleep 0.5; done
      # dockerd leaves its default network namespace bind-mounted behind.
      umount "$ENGINE_DIR/exec/netns/default" 2>/dev/null || true
      log "private engine stopped"
    fi
    ;;
  *) echo "usage: $0 env | status | stop" >&2; exit 2 ;;
esac
