#!/usr/bin/env bash
# moto in server mode: a local DynamoDB API (and DynamoDB Streams) on http://127.0.0.1:5000 (STACK_MOTO_PORT).
#   Usage: moto.sh up|down|status   (or sourced by stack.sh)
# Installed into its own venv $STACK_CACHE_DIR/moto-venv so it never mixes with the project's deps.
# State is in memory only: a restart starts with no tables. Log: $STACK_DIR/moto/moto.log.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

MOTO_HOST=127.0.0.1
MOTO_PORT="${STACK_MOTO_PORT:-5000}"
MOTO_DIR="$STACK_DIR/moto"
MOTO_VENV="$STACK_CACHE_DIR/moto-venv"
MOTO_REQUIREMENT='moto[server,dynamodb]>=5.2,<5.3'
MOTO_PIDFILE="$MOTO_DIR/moto.pid"
MOTO_LOG="$MOTO_DIR/moto.log"

# moto_prepare: venv + moto, only when missing or when MOTO_REQUIREMENT changed (stamp file).
moto_prepare() {
  local stamp="$MOTO_VENV/.requirement"
  if [[ -x "$MOTO_VENV/bin/moto_server" && -f "$stamp" && "$(<"$stamp")" == "$MOTO_REQUIREMENT" ]]; then
    return 0
  fi
  if ! command -v uv >/dev/null; then
    log "moto: installing uv with pip"
    python3 -m pip install -q uv
  fi
  log "moto: installing $MOTO_REQUIREMENT into $MOTO_VENV"
  mkdir -p "$MOTO_DIR"
  # The machine's python3 explicitly: uv must not try to download a managed Python.
  {
    uv venv -q --allow-existing --python "$(python3 -c 'import sys; print(sys.executable)')" "$MOTO_VENV" &&
      uv pip install -q --python "$MOTO_VENV/bin/python" "$MOTO_REQUIREMENT"
  } >"$MOTO_DIR/install.log" 2>&1 || {
    tail -30 "$MOTO_DIR/install.log" >&2
    die "moto: install failed (see $MOTO_DIR/install.log)"
  }
  echo "$MOTO_REQUIREMENT" >"$stamp"
}

# _moto_http_ok: any HTTP answer from moto's own API means the server is serving.
_moto_http_ok() {
  curl -sf -o /dev/null --max-time 2 "http://$MOTO_HOST:$MOTO_PORT/moto-api/"
}

moto_up() {
  local pid
  moto_prepare
  if pid="$(pid_alive "$MOTO_PIDFILE" moto_server)"; then
    log "moto: already running (pid $pid)"
    return 0
  fi
  ensure_port_free moto "$MOTO_HOST" "$MOTO_PORT"
  log "moto: starting"
  # moto_server_serial.py: moto's server one request at a time (why: see the file).
  start_background "$MOTO_PIDFILE" "$MOTO_LOG" \
    "$MOTO_VENV/bin/python" "$INFRA_DIR/moto/moto_server_serial.py" -H "$MOTO_HOST" -p "$MOTO_PORT"
  pid="$(<"$MOTO_PIDFILE")"
  if ! wait_until "moto HTTP" 30 _moto_http_ok; then
    tail -20 "$MOTO_LOG" >&2 || true
    kill -0 "$pid" 2>/dev/null || rm -f "$MOTO_PIDFILE"
    die "moto: not answering on http://$MOTO_HOST:$MOTO_PORT (see $MOTO_LOG)"
  fi
  log "moto: up on http://$MOTO_HOST:$MOTO_PORT (pid $pid)"
}

moto_down() {
  stop_pid moto "$MOTO_PIDFILE" moto_server 10
}

moto_status() {
  local pid
  if pid="$(pid_alive "$MOTO_PIDFILE" moto_server 2>/dev/null)" && _moto_http_ok; then
    print_status moto up "$pid" "http://$MOTO_HOST:$MOTO_PORT"
  else
    print_status moto down "" "http://$MOTO_HOST:$MOTO_PORT"
    return 1
  fi
}

# moto_reset_data: moto keeps its state in memory; only the log remains.
moto_reset_data() {
  rm -f "$MOTO_LOG"
}

if [[ "${BASH_SOURCE[0]}" == "$0" ]]; then
  run_component moto "$@"
fi
