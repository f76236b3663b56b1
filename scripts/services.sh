#!/usr/bin/env bash
# The three services as background processes against the local stack (scripts/infra/stack.sh).
#
#   services.sh up      start command-svc (:8081), projector-svc (:8082), query-svc (:8080); wait for /readyz
#   services.sh down    SIGTERM each (graceful shutdown), SIGKILL after 20 s
#   services.sh status  one line per service; exit 1 if any is down
#
# Write store: WRITE_STORE=mongodb (default, FerretDB) or WRITE_STORE=dynamodb (moto; the tables are
# created first with `cqrs aws create-tables`); COMMAND_SVC_EVENT_PUBLISHER=dynamodb-stream publishes
# from the table's stream instead of the outbox relay. `make up WRITE_STORE=dynamodb` passes it on.
# Logs: .stack/services/<name>.log (JSON lines). Auth: CQRS_AUTH_MODE defaults to `disabled` here,
# for the local demo only; set CQRS_AUTH_MODE=jwt to run with tokens signed by .stack/jwt-secret.
set -euo pipefail

SCRIPTS="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
source "$SCRIPTS/infra/lib.sh"
eval "$("$SCRIPTS/infra/stack.sh" env)"

SERVICES_DIR="$STACK_DIR/services"
mkdir -p "$SERVICES_DIR"
SECRET_FILE="$STACK_DIR/jwt-secret"
[[ -s "$SECRET_FILE" ]] || (umask 077 && head -c 32 /dev/urandom | base64 >"$SECRET_FILE")
export JWT_SECRET
JWT_SECRET="$(<"$SECRET_FILE")"
export CQRS_AUTH_MODE="${CQRS_AUTH_MODE:-disabled}"
export LOG_FORMAT="${LOG_FORMAT:-json}"

declare -A PORTS=([command-svc]=8081 [projector-svc]=8082 [query-svc]=8080)
ORDER=(projector-svc command-svc query-svc)

service_up() {
  local name=$1 port=${PORTS[$1]} pid
  if pid="$(pid_alive "$SERVICES_DIR/$name.pid" "bin/$name" 2>/dev/null)"; then
    log "$name: already running (pid $pid)"
    return 0
  fi
  ensure_port_free "$name" 127.0.0.1 "$port"
  start_background "$SERVICES_DIR/$name.pid" "$SERVICES_DIR/$name.log" "$REPO_ROOT/.venv/bin/$name"
}

wait_ready() {
  local name=$1 port=${PORTS[$1]} i
  for ((i = 0; i < 120; i++)); do
    if curl -fsS "http://127.0.0.1:$port/readyz" >/dev/null 2>&1; then
      log "$name: ready on :$port"
      return 0
    fi
    pid_alive "$SERVICES_DIR/$name.pid" "bin/$name" >/dev/null 2>&1 || die "$name exited; see $SERVICES_DIR/$name.log"
    sleep 0.5
  done
  die "$name: not ready after 60 s; see $SERVICES_DIR/$name.log"
}

case "${1:-}" in
  up)
    if [[ "${WRITE_STORE:-mongodb}" == dynamodb ]]; then
      export WRITE_STORE
      # Local tables without deletion protection, so a reset can drop them.
      "$REPO_ROOT/.venv/bin/cqrs" aws create-tables --no-protect | sed 's/^/dynamodb: /'
    fi
    for name in "${ORDER[@]}"; do service_up "$name"; done
    for name in "${ORDER[@]}"; do wait_ready "$name"; done
    ;;
  down)
    for name in query-svc command-svc projector-svc; do
      stop_pid "$name" "$SERVICES_DIR/$name.pid" "bin/$name" 20
    done
    ;;
  status)
    rc=0
    for name in "${ORDER[@]}"; do
      if pid="$(pid_alive "$SERVICES_DIR/$name.pid" "bin/$name" 2>/dev/null)"; then
        printf '%-14s up    pid %-8s http://127.0.0.1:%s\n' "$name" "$pid" "${PORTS[$name]}"
      else
        printf '%-14s down\n' "$name"
        rc=1
      fi
    done
    exit $rc
    ;;
  *)
    echo "usage: $0 up|down|status" >&2
    exit 2
    ;;
esac
