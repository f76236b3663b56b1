#!/usr/bin/env bash
# FerretDB v1.24 (MongoDB wire protocol) on 127.0.0.1:27017 (STACK_FERRETDB_PORT), storing into PostgreSQL
# (database "ferretdb" of the local postgres, created by postgres.sh).
#   Usage: ferretdb.sh up|down|status   (or sourced by stack.sh)
# Binary: $STACK_CACHE_DIR/bin/ferretdb, built from infra/ferretdb (embeds FerretDB; see main.go for why).
# Log: $STACK_DIR/ferretdb/ferretdb.log.
# FERRETDB_HANDLER=sqlite switches to the SQLite backend (data in $STACK_DIR/ferretdb/sqlite).
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

FERRETDB_HOST=127.0.0.1
FERRETDB_PORT="${STACK_FERRETDB_PORT:-27017}"
FERRETDB_DIR="$STACK_DIR/ferretdb"
FERRETDB_BIN="$STACK_CACHE_DIR/bin/ferretdb"
FERRETDB_SRC="$INFRA_DIR/ferretdb"
FERRETDB_PIDFILE="$FERRETDB_DIR/ferretdb.pid"
FERRETDB_LOG="$FERRETDB_DIR/ferretdb.log"
FERRETDB_BACKEND="${FERRETDB_HANDLER:-postgresql}"
# The PostgreSQL of the same stack (postgres.sh reads the same variable).
FERRETDB_PG_PORT="${STACK_PG_PORT:-5432}"
FERRETDB_PG_URL="postgres://cqrs:cqrs@127.0.0.1:$FERRETDB_PG_PORT/ferretdb"

# ferretdb_prepare: build only when the binary is missing or a source file is newer than it.
ferretdb_prepare() {
  if [[ -x "$FERRETDB_BIN" ]] && [[ -z "$(find "$FERRETDB_SRC" -type f -newer "$FERRETDB_BIN" -print -quit)" ]]; then
    return 0
  fi
  command -v go >/dev/null || die "ferretdb: Go 1.24+ is required to build infra/ferretdb"
  log "ferretdb: building $FERRETDB_BIN (first time ~1 min)"
  mkdir -p "$(dirname "$FERRETDB_BIN")" "$FERRETDB_DIR"
  # GOTOOLCHAIN=local: never try to download a Go toolchain (only module downloads are possible
  # here); go.mod's minimum is satisfied by any Go >= 1.24. -buildvcs=false: VCS stamping fails
  # in a repo without commits and is useless here. Build to a temp name then rename, so a failed
  # build never leaves a half-written binary that looks current.
  if ! (cd "$FERRETDB_SRC" && GOTOOLCHAIN=local go build -trimpath -buildvcs=false -o "$FERRETDB_BIN.tmp" .) \
      >"$FERRETDB_DIR/build.log" 2>&1; then
    tail -30 "$FERRETDB_DIR/build.log" >&2
    die "ferretdb: build failed (see $FERRETDB_DIR/build.log)"
  fi
  mv "$FERRETDB_BIN.tmp" "$FERRETDB_BIN"
}

_ferretdb_ping() {
  "$FERRETDB_BIN" -ping -listen-addr "$FERRETDB_HOST:$FERRETDB_PORT" 2>/dev/null
}

ferretdb_up() {
  local pid
  ferretdb_prepare
  if pid="$(pid_alive "$FERRETDB_PIDFILE" "$FERRETDB_BIN")"; then
    log "ferretdb: already running (pid $pid)"
    return 0
  fi
  ensure_port_free ferretdb "$FERRETDB_HOST" "$FERRETDB_PORT"
  if [[ "$FERRETDB_BACKEND" == postgresql ]]; then
    # FerretDB only connects to PostgreSQL on the first command: check now for a clear error.
    port_open 127.0.0.1 "$FERRETDB_PG_PORT" \
      || die "ferretdb: PostgreSQL is not up on 127.0.0.1:$FERRETDB_PG_PORT (run postgres.sh up first)"
  fi
  mkdir -p "$FERRETDB_DIR/sqlite"
  log "ferretdb: starting ($FERRETDB_BACKEND backend)"
  # The sqlite URL is only used with FERRETDB_HANDLER=sqlite.
  start_background "$FERRETDB_PIDFILE" "$FERRETDB_LOG" \
    "$FERRETDB_BIN" -listen-addr "$FERRETDB_HOST:$FERRETDB_PORT" -handler "$FERRETDB_BACKEND" \
    -postgresql-url "$FERRETDB_PG_URL" -sqlite-url "file:$FERRETDB_DIR/sqlite/"
  pid="$(<"$FERRETDB_PIDFILE")"
  # A real command round trip (ping through the backend), not just an open port.
  if ! wait_until "ferretdb ping" 30 _ferretdb_ping; then
    tail -20 "$FERRETDB_LOG" >&2 || true
    kill -0 "$pid" 2>/dev/null || rm -f "$FERRETDB_PIDFILE"
    die "ferretdb: not answering (see $FERRETDB_LOG)"
  fi
  log "ferretdb: up on $FERRETDB_HOST:$FERRETDB_PORT (pid $pid)"
}

ferretdb_down() {
  # SIGTERM: main.go cancels its context; FerretDB closes the listener, client connections
  # and the PostgreSQL pool.
  stop_pid ferretdb "$FERRETDB_PIDFILE" "$FERRETDB_BIN" 15
}

ferretdb_status() {
  local pid
  if pid="$(pid_alive "$FERRETDB_PIDFILE" "$FERRETDB_BIN" 2>/dev/null)" && _ferretdb_ping; then
    print_status ferretdb up "$pid" "$FERRETDB_HOST:$FERRETDB_PORT"
  else
    print_status ferretdb down "" "$FERRETDB_HOST:$FERRETDB_PORT"
    return 1
  fi
}

# ferretdb_reset_data: used by `stack.sh reset` (after down). The postgresql backend's data
# lives in the postgres data dir; the binary is kept.
ferretdb_reset_data() {
  rm -rf "$FERRETDB_DIR/sqlite" "$FERRETDB_LOG"
}

if [[ "${BASH_SOURCE[0]}" == "$0" ]]; then
  run_component ferretdb "$@"
fi
