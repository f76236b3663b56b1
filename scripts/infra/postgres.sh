#!/usr/bin/env bash
# PostgreSQL 15 for local development and tests on 127.0.0.1:5432 (STACK_PG_PORT).
#   Usage: postgres.sh up|down|status   (or sourced by stack.sh)
# Data: $STACK_DIR/postgres/data; log: $STACK_DIR/postgres/postgres.log;
# unix socket: $STACK_DIR/postgres/.s.PGSQL.5432.
# Creates role cqrs/cqrs (CREATEDB: tests create databases) and databases cqrs and ferretdb.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

PG_HOST=127.0.0.1
PG_PORT="${STACK_PG_PORT:-5432}"
PG_DIR="$STACK_DIR/postgres"
PG_DATA="$PG_DIR/data"
PG_LOG="$PG_DIR/postgres.log"
PG_OS_USER=postgres

# _pg_bindir: directory of the PostgreSQL server binaries; prefers 15, else the newest installed.
_pg_bindir() {
  local d
  if [[ -x /usr/lib/postgresql/15/bin/postgres ]]; then
    echo /usr/lib/postgresql/15/bin
    return 0
  fi
  d="$(printf '%s\n' /usr/lib/postgresql/*/bin | sort -V | tail -1)"
  [[ -x "$d/postgres" ]] && echo "$d"
}

# _pg_install: a fresh machine may lack the server. Debian's package also creates the
# postgres OS user. Its default cluster (15/main) would grab port 5432 if the package
# started it, so stop it and make it manual: this stack owns the port.
_pg_install() {
  log "postgres: server binaries missing, installing Debian's postgresql package"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq postgresql >/dev/null
  local conf
  for conf in /etc/postgresql/*/main/start.conf; do
    [[ -f "$conf" ]] || continue
    local ver
    ver="$(basename "$(dirname "$(dirname "$conf")")")"
    pg_ctlcluster "$ver" main stop 2>/dev/null || true
    echo manual >"$conf"
  done
}

# _pg_prepare: binaries, OS user, directories. postgres refuses to run as root, so the
# server and initdb run as the postgres user through runuser.
_pg_prepare() {
  [[ -n "$(_pg_bindir)" ]] || _pg_install
  PG_BIN="$(_pg_bindir)" || die "postgres: no server binaries under /usr/lib/postgresql/*/bin"
  if ! id -u "$PG_OS_USER" >/dev/null 2>&1; then
    log "postgres: creating OS user $PG_OS_USER"
    useradd --system --user-group --home-dir /var/lib/postgresql --shell /bin/bash "$PG_OS_USER"
  fi
  mkdir -p "$PG_DIR"
  chown "$PG_OS_USER:" "$PG_DIR"
  # The postgres user must be able to reach $STACK_DIR: add o+x (traverse, not list) to any
  # ancestor it cannot enter, e.g. a repo checked out under a 0700 home directory.
  local d="$STACK_DIR"
  while [[ "$d" != "/" ]]; do
    if ! runuser -u "$PG_OS_USER" -- test -x "$d"; then
      log "postgres: making $d traversable for the $PG_OS_USER user (chmod o+x)"
      chmod o+x "$d"
    fi
    d="$(dirname "$d")"
  done
}

# _pg_ctl ARGS...: pg_ctl as the postgres user, in a directory it can read.
_pg_ctl() {
  (cd "$PG_DIR" && runuser -u "$PG_OS_USER" -- "$PG_BIN/pg_ctl" -D "$PG_DATA" "$@")
}

# _psql ARGS...: superuser psql over the private unix socket (peer/trust, no password).
_psql() {
  (cd "$PG_DIR" && runuser -u "$PG_OS_USER" -- "$PG_BIN/psql" -X -q -v ON_ERROR_STOP=1 \
    -h "$PG_DIR" -p "$PG_PORT" -U postgres "$@")
}

_pg_initdb() {
  log "postgres: initdb $PG_DATA"
  rm -rf "$PG_DATA"   # a half-initialized directory from an interrupted run
  # C collation with UTF8 encoding: deterministic byte-order sorting independent of the
  # machine's locales; UTF8 is required by FerretDB.
  # Local (socket) connections trusted: only root/postgres can reach the socket dir anyway.
  # TCP needs a password (scram), as in production.
  (cd "$PG_DIR" && runuser -u "$PG_OS_USER" -- "$PG_BIN/initdb" -D "$PG_DATA" -U postgres \
    --encoding=UTF8 --locale=C --auth-local=trust --auth-host=scram-sha-256 >"$PG_DIR/initdb.log")
  echo "include 'stack.conf'" >>"$PG_DATA/postgresql.conf"
}

# _pg_write_conf: settings for this stack, rewritten on every `up` (applied at the next start),
# so editing this script is enough to change them.
_pg_write_conf() {
  cat >"$PG_DATA/stack.conf" <<EOF
# Written by scripts/infra/postgres.sh on every 'up': edit the script, not this file.
listen_addresses = '$PG_HOST'
port = $PG_PORT
unix_socket_directories = '$PG_DIR'
max_connections = 200
shared_buffers = 256MB
# Durability defaults on purpose: crash/recovery tests rely on committed = durable.
fsync = on
synchronous_commit = on
full_page_writes = on
# Logs: warnings and slow statements only, to keep the log useful.
log_min_duration_statement = 1000
log_line_prefix = '%m [%p] %q%u@%d '
EOF
  chown "$PG_OS_USER:" "$PG_DATA/stack.conf"
}

# _pg_bootstrap: idempotent role and databases, run on every `up` (a few ms).
_pg_bootstrap() {
  _psql -d postgres <<'SQL'
DO $$
BEGIN
  IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'cqrs') THEN
    CREATE ROLE cqrs LOGIN CREATEDB PASSWORD 'cqrs';
  END IF;
END
$$;
ALTER ROLE cqrs LOGIN CREATEDB PASSWORD 'cqrs';
SELECT 'CREATE DATABASE cqrs OWNER cqrs ENCODING ''UTF8'' TEMPLATE template0'
  WHERE NOT EXISTS (SELECT FROM pg_database WHERE datname = 'cqrs') \gexec
SELECT 'CREATE DATABASE ferretdb OWNER cqrs ENCODING ''UTF8'' TEMPLATE template0'
  WHERE NOT EXISTS (SELECT FROM pg_database WHERE datname = 'ferretdb') \gexec
SQL
  _pg_reader_role
  # FerretDB cannot use its own indexes for the filters it pushes down; this gives them GIN twins
  # it can use (the file says why and how). Superuser: event triggers need it.
  _psql -d ferretdb <"$REPO_ROOT/infra/postgres/ferretdb-indexes.sql"
}

# _pg_reader_role: the query service's read-only role cqrs_reader (password CQRS_READER_PASSWORD,
# dev default cqrs_reader), with SELECT on schema `read` of database cqrs, including the views the
# projector creates later (services/query-svc/sql/reader_grants.sql explains how). Sessions of the
# role are read-only by default as well. Use it with
# QUERY_SVC_DATABASE_URL=postgresql://cqrs_reader:cqrs_reader@127.0.0.1:5432/cqrs.
_pg_reader_role() {
  _psql -d postgres -v password="${CQRS_READER_PASSWORD:-cqrs_reader}" <<'SQL'
SELECT 'CREATE ROLE cqrs_reader LOGIN'
  WHERE NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'cqrs_reader') \gexec
ALTER ROLE cqrs_reader LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE PASSWORD :'password';
ALTER ROLE cqrs_reader SET default_transaction_read_only = on;
SQL
  _psql -d cqrs -v writer=cqrs -v reader=cqrs_reader <"$REPO_ROOT/services/query-svc/sql/reader_grants.sql"
}

# _pg_pid: the postmaster pid while it runs (pg_ctl status itself copes with a stale postmaster.pid).
_pg_pid() {
  [[ -n "${PG_BIN:-}" && -f "$PG_DATA/postmaster.pid" ]] || return 1
  _pg_ctl status >/dev/null 2>&1 || return 1
  head -1 "$PG_DATA/postmaster.pid"
}

postgres_up() {
  _pg_prepare
  if [[ ! -f "$PG_DATA/PG_VERSION" ]]; then
    _pg_initdb
  fi
  # Data copied or restored by root would be unreadable for the server; chown only then, since
  # walking a large data dir on every `up` would be slow.
  if [[ "$(stat -c %U "$PG_DATA")" != "$PG_OS_USER" ]]; then
    chown -R "$PG_OS_USER:" "$PG_DATA"
  fi
  chmod 0700 "$PG_DATA"  # postgres refuses a group/world-accessible data dir
  _pg_write_conf
  local pid
  if pid="$(_pg_pid)"; then
    log "postgres: already running (pid $pid)"
  else
    ensure_port_free postgres "$PG_HOST" "$PG_PORT"
    log "postgres: starting"
    # -w: pg_ctl waits until the server accepts connections (or fails with the log's reason).
    if ! _pg_ctl -l "$PG_LOG" -w -t 60 start >/dev/null; then
      tail -20 "$PG_LOG" >&2 || true
      die "postgres: failed to start (see $PG_LOG)"
    fi
  fi
  wait_until "postgres readiness" 30 "$PG_BIN/pg_isready" -q -h "$PG_HOST" -p "$PG_PORT" \
    || die "postgres: not ready (see $PG_LOG)"
  _pg_bootstrap
  log "postgres: up on $PG_HOST:$PG_PORT"
}

postgres_down() {
  PG_BIN="$(_pg_bindir)" || { log "postgres: not installed"; return 0; }
  if ! _pg_pid >/dev/null; then
    log "postgres: not running"
    return 0
  fi
  # Not a plain SIGTERM: for postgres that is "smart" shutdown, which waits for every client
  # (a leaked pool) to disconnect. "fast" (SIGINT) rolls back open transactions and stops
  # cleanly; "immediate" (SIGQUIT, crash-like, WAL replay at next start) only as the fallback.
  # No SIGKILL: it would leave orphaned backends holding shared memory.
  log "postgres: stopping (fast shutdown)"
  if ! _pg_ctl -m fast -w -t 30 stop >/dev/null; then
    log "postgres: fast shutdown timed out, using immediate shutdown"
    _pg_ctl -m immediate -w -t 30 stop >/dev/null
  fi
  log "postgres: stopped"
}

postgres_status() {
  PG_BIN="$(_pg_bindir)" || true
  local pid
  if pid="$(_pg_pid)" && "$PG_BIN/pg_isready" -q -h "$PG_HOST" -p "$PG_PORT"; then
    print_status postgres up "$pid" "$PG_HOST:$PG_PORT"
  else
    print_status postgres down "" "$PG_HOST:$PG_PORT"
    return 1
  fi
}

# postgres_reset_data: used by `stack.sh reset` (after down).
postgres_reset_data() {
  rm -rf "$PG_DATA" "$PG_LOG" "$PG_DIR/initdb.log"
}

if [[ "${BASH_SOURCE[0]}" == "$0" ]]; then
  run_component postgres "$@"
fi
