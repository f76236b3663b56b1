# shellcheck shell=bash
# Shared helpers of the local stack scripts. Sourced by stack.sh and by each component script
# (postgres.sh, kafka.sh, ferretdb.sh, moto.sh); not meant to be run.
#
# Conventions:
#   - All state lives under $STACK_DIR (default <repo root>/.stack): data, logs, pids, and (unless
#     $STACK_CACHE_DIR names another directory) downloads and builds. Ports: STACK_*_PORT variables.
#   - A component we start in the background records its pid in $STACK_DIR/<name>/<name>.pid.
#     A pid file only counts when the process is alive AND its command line is the expected one,
#     so a stale file (crash, reboot, pid reused by something else) just means "not running".

# Guard against double sourcing (stack.sh sources every component, each sources this file).
if [[ -n "${_STACK_LIB_SOURCED:-}" ]]; then return 0; fi
_STACK_LIB_SOURCED=1

INFRA_SCRIPTS_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
REPO_ROOT="$(cd "$INFRA_SCRIPTS_DIR/../.." && pwd)"
# shellcheck disable=SC2034  # used by the component scripts that source this file
INFRA_DIR="$REPO_ROOT/infra"
STACK_DIR="${STACK_DIR:-$REPO_ROOT/.stack}"
mkdir -p "$STACK_DIR"
# Absolute path: postgres, the JVM and background processes must not depend on the caller's cwd.
STACK_DIR="$(cd "$STACK_DIR" && pwd)"
export STACK_DIR
# Downloads and builds (Kafka jars, the FerretDB binary, the moto venv) live under $STACK_CACHE_DIR
# (default $STACK_DIR), so a second stack on other ports (the soak's) reuses the first one's.
STACK_CACHE_DIR="${STACK_CACHE_DIR:-$STACK_DIR}"
mkdir -p "$STACK_CACHE_DIR"
STACK_CACHE_DIR="$(cd "$STACK_CACHE_DIR" && pwd)"
export STACK_CACHE_DIR

log() { printf '[stack %s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }
die() { log "ERROR: $*"; exit 1; }

# port_open HOST PORT: true when something accepts TCP connections there.
# Bash's /dev/tcp avoids depending on nc; timeout guards against a black-holed connect.
port_open() {
  timeout 1 bash -c "exec 3<>/dev/tcp/$1/$2" 2>/dev/null
}

# ensure_port_free NAME HOST PORT: called right before starting NAME, when our own process is
# known not to run. Anything listening there is someone else's: refuse with the owner's identity
# rather than start a second server that would fail to bind (or worse, let tests talk to a stranger).
ensure_port_free() {
  local name=$1 host=$2 port=$3
  if port_open "$host" "$port"; then
    local who
    who="$(ss -Hltnp "sport = :$port" 2>/dev/null | sed -n 's/.*users:((\(.*\)))/\1/p' | head -1)"
    die "$name: port $host:$port is already in use by a process that is not ours (${who:-unknown owner}). Stop it, then retry."
  fi
}

# pid_alive PIDFILE PATTERN: true (and prints the pid) when the pid file names a live process
# whose command line contains PATTERN. Removes a stale pid file.
pid_alive() {
  local pidfile=$1 pattern=$2 pid
  [[ -f "$pidfile" ]] || return 1
  pid="$(<"$pidfile")"
  if [[ "$pid" =~ ^[0-9]+$ ]] && kill -0 "$pid" 2>/dev/null \
     && tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null | grep -qF -- "$pattern"; then
    echo "$pid"
    return 0
  fi
  log "removing stale pid file $pidfile"
  rm -f "$pidfile"
  return 1
}

# start_background PIDFILE LOGFILE CMD...: start CMD detached from this shell.
# setsid: own session, so Ctrl-C in the caller's terminal and the end of the caller's process
# group do not kill it. stdin from /dev/null and stdout/stderr to the log: it must not hold the
# caller's pipes open (otherwise `stack.sh up | tee` or a CI step would never see EOF).
# `exec` inside the subshell keeps the recorded pid equal to the server's pid.
start_background() {
  local pidfile=$1 logfile=$2
  shift 2
  mkdir -p "$(dirname "$pidfile")" "$(dirname "$logfile")"
  ( exec setsid "$@" </dev/null >>"$logfile" 2>&1 ) &
  echo $! >"$pidfile"
}

# stop_pid NAME PIDFILE PATTERN [TIMEOUT_S]: SIGTERM, wait up to TIMEOUT_S for a graceful exit,
# then SIGKILL. Data is kept.
stop_pid() {
  local name=$1 pidfile=$2 pattern=$3 timeout_s=${4:-20} pid i
  if ! pid="$(pid_alive "$pidfile" "$pattern")"; then
    log "$name: not running"
    return 0
  fi
  log "$name: stopping pid $pid (SIGTERM, up to ${timeout_s}s)"
  kill -TERM "$pid" 2>/dev/null || true
  for ((i = 0; i < timeout_s * 10; i++)); do
    kill -0 "$pid" 2>/dev/null || break
    sleep 0.1
  done
  if kill -0 "$pid" 2>/dev/null; then
    log "$name: still alive after ${timeout_s}s, sending SIGKILL"
    kill -KILL "$pid" 2>/dev/null || true
    sleep 0.2
  fi
  rm -f "$pidfile"
  log "$name: stopped"
}

# wait_until DESCRIPTION TIMEOUT_S CMD...: poll CMD every 0.2 s until it succeeds.
wait_until() {
  local what=$1 timeout_s=$2
  shift 2
  local deadline=$((SECONDS + timeout_s))
  until "$@"; do
    if ((SECONDS >= deadline)); then
      log "timed out after ${timeout_s}s waiting for $what"
      return 1
    fi
    sleep 0.2
  done
}

# print_status NAME STATE PID ADDRESS: one aligned line of `stack.sh status`.
print_status() {
  printf '%-9s %-5s pid %-8s %s\n' "$1" "$2" "${3:--}" "$4"
}

# run_component FUNCTION_PREFIX "$@": dispatch for a component script run directly,
# e.g. `kafka.sh up` calls kafka_up.
run_component() {
  local prefix=$1 cmd=${2:-}
  case "$cmd" in
    up | down | status) "${prefix}_${cmd}" ;;
    *) echo "usage: $(basename "$0") up|down|status" >&2; exit 2 ;;
  esac
}
