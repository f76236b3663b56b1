#!/usr/bin/env bash
# Apache Kafka 4.x, single-node KRaft (combined broker + controller), from Maven Central jars.
#   Usage: kafka.sh up|down|status   (or sourced by stack.sh)
# Broker PLAINTEXT 127.0.0.1:9092, controller 127.0.0.1:9093 (STACK_KAFKA_PORT, STACK_KAFKA_CONTROLLER_PORT).
# Jars: $STACK_CACHE_DIR/kafka/lib (fetched once with infra/kafka/pom.xml); data: $STACK_DIR/kafka/data;
# log: $STACK_DIR/kafka/logs/server.log (JVM stdout/stderr: logs/stdout.log).
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

KAFKA_HOST=127.0.0.1
KAFKA_PORT="${STACK_KAFKA_PORT:-9092}"
KAFKA_CONTROLLER_PORT="${STACK_KAFKA_CONTROLLER_PORT:-9093}"
KAFKA_DIR="$STACK_DIR/kafka"
KAFKA_LIB="$STACK_CACHE_DIR/kafka/lib"
KAFKA_DATA="$KAFKA_DIR/data"
KAFKA_LOGS="$KAFKA_DIR/logs"
KAFKA_CONFIG="$KAFKA_DIR/server.properties"
KAFKA_PIDFILE="$KAFKA_DIR/kafka.pid"
KAFKA_POM="$INFRA_DIR/kafka/pom.xml"
# Modest heap: a test broker with a handful of topics needs little; the box has 2 cores.
KAFKA_HEAP_OPTS="${KAFKA_HEAP_OPTS:--Xms512m -Xmx1g}"
# What identifies our JVM in /proc/<pid>/cmdline (the config path is unique to this STACK_DIR).
KAFKA_CMD_PATTERN="kafka.Kafka $KAFKA_CONFIG"

_kafka_java() {
  java -cp "$KAFKA_LIB/*" "$@"
}

# kafka_prepare: jars, only when missing or when the pom changed since they were fetched
# (the stamp holds the pom's checksum). Fetched into a temporary directory and renamed, so an
# interrupted download never looks complete.
kafka_prepare() {
  local want have=""
  want="$(sha256sum "$KAFKA_POM" | cut -d' ' -f1)"
  [[ -f "$KAFKA_LIB/.pom.sha256" ]] && have="$(<"$KAFKA_LIB/.pom.sha256")"
  [[ "$want" == "$have" ]] && return 0
  command -v mvn >/dev/null || die "kafka: mvn (Maven) is required to fetch the broker jars"
  log "kafka: fetching broker jars from Maven Central (once, ~45 MB)"
  mkdir -p "$KAFKA_DIR" "$(dirname "$KAFKA_LIB")"
  rm -rf "$KAFKA_LIB.tmp"
  # -f with an absolute pom and -DoutputDirectory: mvn writes nothing next to the pom.
  if ! mvn -q -B -Dstyle.color=never -f "$KAFKA_POM" dependency:copy-dependencies \
      -DincludeScope=runtime -DoutputDirectory="$KAFKA_LIB.tmp" >"$KAFKA_DIR/mvn.log" 2>&1; then
    tail -30 "$KAFKA_DIR/mvn.log" >&2
    die "kafka: mvn dependency:copy-dependencies failed (see $KAFKA_DIR/mvn.log)"
  fi
  echo "$want" >"$KAFKA_LIB.tmp/.pom.sha256"
  rm -rf "$KAFKA_LIB"
  mv "$KAFKA_LIB.tmp" "$KAFKA_LIB"
}

# _kafka_render_config: infra/kafka/server.properties with this STACK_DIR's data dir and ports.
_kafka_render_config() {
  mkdir -p "$KAFKA_DATA" "$KAFKA_LOGS"
  sed -e "s|@KAFKA_DATA_DIR@|$KAFKA_DATA|" -e "s|@KAFKA_PORT@|$KAFKA_PORT|g" \
    -e "s|@KAFKA_CONTROLLER_PORT@|$KAFKA_CONTROLLER_PORT|g" "$INFRA_DIR/kafka/server.properties" >"$KAFKA_CONFIG.tmp"
  mv "$KAFKA_CONFIG.tmp" "$KAFKA_CONFIG"
}

# _kafka_format: KRaft storage is formatted once (meta.properties then exists). --standalone
# makes this node the single voter of a dynamic quorum (controller.quorum.bootstrap.servers).
# --ignore-formatted keeps it harmless should it run on formatted storage.
_kafka_format() {
  [[ -f "$KAFKA_DATA/meta.properties" ]] && return 0
  local cluster_id
  if [[ -s "$KAFKA_DIR/cluster.id" ]]; then
    cluster_id="$(<"$KAFKA_DIR/cluster.id")"
  else
    cluster_id="$(_kafka_java kafka.tools.StorageTool random-uuid 2>/dev/null | tail -1)"
    echo "$cluster_id" >"$KAFKA_DIR/cluster.id"
  fi
  log "kafka: formatting storage (cluster id $cluster_id)"
  _kafka_java -Dlog4j2.configurationFile="$INFRA_DIR/kafka/log4j2.properties" \
    -Dkafka.logs.dir="$KAFKA_LOGS" \
    kafka.tools.StorageTool format --standalone -t "$cluster_id" -c "$KAFKA_CONFIG" \
    --ignore-formatted >"$KAFKA_LOGS/format.log" 2>&1 \
    || { cat "$KAFKA_LOGS/format.log" >&2; die "kafka: storage format failed"; }
}

# _kafka_started_since OFFSET: the broker logged that it finished starting, after byte OFFSET of
# server.log (the file keeps earlier runs). "Kafka Server started" is logged by KafkaRaftServer
# once broker and controller are RUNNING, after the listeners accept requests.
_kafka_started_since() {
  tail -c "+$(($1 + 1))" "$KAFKA_LOGS/server.log" 2>/dev/null | grep -q 'Kafka Server started'
}

_kafka_ready() {
  local pid=$1 offset=$2
  kill -0 "$pid" 2>/dev/null || return 2
  port_open "$KAFKA_HOST" "$KAFKA_PORT" && _kafka_started_since "$offset"
}

kafka_up() {
  local pid offset
  kafka_prepare
  if pid="$(pid_alive "$KAFKA_PIDFILE" "$KAFKA_CMD_PATTERN")"; then
    log "kafka: already running (pid $pid)"
    port_open "$KAFKA_HOST" "$KAFKA_PORT" || log "kafka: WARNING: pid $pid alive but port $KAFKA_PORT closed (still starting?)"
    return 0
  fi
  ensure_port_free kafka "$KAFKA_HOST" "$KAFKA_PORT"
  ensure_port_free kafka-controller "$KAFKA_HOST" "$KAFKA_CONTROLLER_PORT"
  _kafka_render_config
  _kafka_format
  offset="$(stat -c %s "$KAFKA_LOGS/server.log" 2>/dev/null || echo 0)"
  log "kafka: starting"
  # G1 with short pauses and the JVM flags of upstream's kafka-run-class.sh; exit on OOM
  # instead of limping on. kafka.logs.dir feeds infra/kafka/log4j2.properties.
  # shellcheck disable=SC2086  # KAFKA_HEAP_OPTS is a list of flags
  start_background "$KAFKA_PIDFILE" "$KAFKA_LOGS/stdout.log" \
    java $KAFKA_HEAP_OPTS -XX:+UseG1GC -XX:MaxGCPauseMillis=20 \
    -XX:InitiatingHeapOccupancyPercent=35 -XX:+ExplicitGCInvokesConcurrent \
    -XX:+ExitOnOutOfMemoryError -Djava.awt.headless=true \
    -Dlog4j2.configurationFile="$INFRA_DIR/kafka/log4j2.properties" \
    -Dkafka.logs.dir="$KAFKA_LOGS" \
    -cp "$KAFKA_LIB/*" kafka.Kafka "$KAFKA_CONFIG"
  pid="$(<"$KAFKA_PIDFILE")"
  local deadline=$((SECONDS + 90)) rc
  while true; do
    rc=0
    _kafka_ready "$pid" "$offset" || rc=$?
    ((rc == 0)) && break
    if ((rc == 2)); then
      tail -20 "$KAFKA_LOGS/stdout.log" "$KAFKA_LOGS/server.log" >&2 2>/dev/null || true
      rm -f "$KAFKA_PIDFILE"
      die "kafka: broker exited during startup (see $KAFKA_LOGS)"
    fi
    ((SECONDS < deadline)) || die "kafka: not ready after 90s (see $KAFKA_LOGS/server.log)"
    sleep 0.3
  done
  log "kafka: up on $KAFKA_HOST:$KAFKA_PORT (pid $pid)"
}

kafka_down() {
  # SIGTERM triggers a controlled shutdown (flushes logs, writes a clean-shutdown marker, so the
  # next start skips log recovery). A few seconds in combined mode; SIGKILL only after 60 s.
  stop_pid kafka "$KAFKA_PIDFILE" "$KAFKA_CMD_PATTERN" 60
}

kafka_status() {
  local pid
  if pid="$(pid_alive "$KAFKA_PIDFILE" "$KAFKA_CMD_PATTERN" 2>/dev/null)" \
     && port_open "$KAFKA_HOST" "$KAFKA_PORT"; then
    print_status kafka up "$pid" "$KAFKA_HOST:$KAFKA_PORT"
  else
    print_status kafka down "" "$KAFKA_HOST:$KAFKA_PORT"
    return 1
  fi
}

# kafka_reset_data: used by `stack.sh reset` (after down). Keeps the jars.
kafka_reset_data() {
  rm -rf "$KAFKA_DATA" "$KAFKA_LOGS" "$KAFKA_DIR/cluster.id" "$KAFKA_CONFIG"
}

if [[ "${BASH_SOURCE[0]}" == "$0" ]]; then
  run_component kafka "$@"
fi
