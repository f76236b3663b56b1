#!/usr/bin/env bash
# Local infrastructure of the project: PostgreSQL, Kafka, FerretDB (MongoDB API) and moto
# (DynamoDB API), all on loopback, all state under $STACK_DIR (default <repo root>/.stack).
# Ports: STACK_PG_PORT (5432), STACK_KAFKA_PORT (9092), STACK_KAFKA_CONTROLLER_PORT (9093),
# STACK_FERRETDB_PORT (27017), STACK_MOTO_PORT (5000). A second stack with its own STACK_DIR and
# ports reuses the first one's downloads with STACK_CACHE_DIR=<first STACK_DIR>.
#
#   stack.sh up      start whatever is not running (first run downloads/builds, ~2 min)
#   stack.sh down    stop everything gracefully, keep data
#   stack.sh status  one line per component; exit 1 if any is down
#   stack.sh env     print `export` lines for the services (eval "$(scripts/infra/stack.sh env)")
#   stack.sh reset   down, then delete data and logs (keeps jars, binaries, the moto venv)
#
# Each component also works alone: scripts/infra/{postgres,kafka,ferretdb,moto}.sh up|down|status.
set -euo pipefail

INFRA_SCRIPTS="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
source "$INFRA_SCRIPTS/lib.sh"
source "$INFRA_SCRIPTS/postgres.sh"
source "$INFRA_SCRIPTS/kafka.sh"
source "$INFRA_SCRIPTS/ferretdb.sh"
source "$INFRA_SCRIPTS/moto.sh"

# in_parallel NAME FUNCTION [NAME FUNCTION ...]: run functions concurrently in subshells
# (each with set -e), wait for all, fail if any failed. Used where steps do not depend on
# each other: downloads/builds on a cold machine, and starting independent servers.
in_parallel() {
  local -a pids=() names=()
  while (($#)); do
    names+=("$1")
    ("$2") &
    pids+=($!)
    shift 2
  done
  local i failed=()
  for i in "${!pids[@]}"; do
    wait "${pids[$i]}" || failed+=("${names[$i]}")
  done
  if ((${#failed[@]})); then
    die "failed: ${failed[*]}"
  fi
}

stack_up() {
  local start=$SECONDS
  # Provisioning is network-bound (mvn, uv) or CPU-bound (go build): overlap them. Each is a
  # no-op when already done, so a warm `up` pays nothing here.
  in_parallel kafka-jars kafka_prepare ferretdb-build ferretdb_prepare moto-install moto_prepare
  # FerretDB needs PostgreSQL (its database is created by postgres_up); Kafka and moto need
  # nothing, so they start while PostgreSQL and then FerretDB come up.
  _pg_then_ferretdb() {
    postgres_up
    ferretdb_up
  }
  in_parallel kafka kafka_up moto moto_up postgres+ferretdb _pg_then_ferretdb
  log "stack up in $((SECONDS - start))s"
  stack_status
}

stack_down() {
  # Reverse dependency order: FerretDB before the PostgreSQL it writes to.
  ferretdb_down
  in_parallel kafka kafka_down moto moto_down
  postgres_down
}

stack_status() {
  local rc=0
  postgres_status || rc=1
  kafka_status || rc=1
  ferretdb_status || rc=1
  moto_status || rc=1
  return $rc
}

stack_env() {
  cat <<EOF
export KAFKA_BOOTSTRAP_SERVERS=$KAFKA_HOST:$KAFKA_PORT
export DATABASE_URL=postgresql://cqrs:cqrs@$PG_HOST:$PG_PORT/cqrs
export MONGODB_URI=mongodb://$FERRETDB_HOST:$FERRETDB_PORT/
export DYNAMODB_ENDPOINT_URL=http://$MOTO_HOST:$MOTO_PORT
export AWS_ACCESS_KEY_ID=test
export AWS_SECRET_ACCESS_KEY=test
export AWS_DEFAULT_REGION=us-east-1
EOF
}

stack_reset() {
  stack_down
  log "deleting data and logs under $STACK_DIR (keeping jars, binaries and the moto venv)"
  postgres_reset_data
  kafka_reset_data
  ferretdb_reset_data
  moto_reset_data
}

case "${1:-}" in
  up) stack_up ;;
  down) stack_down ;;
  status) stack_status ;;
  env) stack_env ;;
  reset) stack_reset ;;
  *)
    echo "usage: $(basename "$0") up|down|status|env|reset" >&2
    exit 2
    ;;
esac
