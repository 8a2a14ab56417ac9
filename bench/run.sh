#!/bin/bash
# bench/run.sh - camgate side by side with what users would run instead.
#
# Installs what is missing (Debian postfix for smtp-sink and the Postfix
# peer, python3-aiosmtpd, python3-paho-mqtt, mosquitto; npm packages of the
# Node relay), builds camgate and bench/loadgen, starts one Mosquitto and,
# in turn, each server on free loopback ports, runs the same loads against
# each (150 KB mails at 1, 10 and 100 sessions; 1 MB at 10), BENCH_REPS
# times each, and prints a table of medians. Then camgate's end-to-end
# latency at 100 alerts/s and its memory: idle, 1,000 idle sessions, and
# while taking a 25 MB message.
#
# CPU is utime+stime (+cutime+cstime) from /proc/PID/stat of the server's
# process tree, sampled before and after each run (Postfix: the master,
# its live children, and through the master's cutime/cstime the children
# that exited). Peak RSS is the sum of VmHWM over that tree after the run.
# Mosquitto and the smtp-sink behind Postfix are not counted for anyone.
#
# Environment: BENCH_N (messages per run, 2000), BENCH_SECONDS (at most
# per run, 20), BENCH_REPS (3), BENCH_SERVERS (camgate smtp-sink postfix
# node python), BENCH_MEMORY (1: run the memory part), BUILD (build dir).
# Every process started here is stopped on exit; exit status 1 on failure.
set -euo pipefail

HERE=$(cd "$(dirname "$0")" && pwd)
ROOT=$(cd "$HERE/.." && pwd)
BUILD=${BUILD:-$ROOT/build-bench}
N=${BENCH_N:-2000}
SECS=${BENCH_SECONDS:-20}
REPS=${BENCH_REPS:-3}
SERVERS=${BENCH_SERVERS:-camgate smtp-sink postfix node python}
MEMORY=${BENCH_MEMORY:-1}
POINTS="150K:1 150K:10 150K:100 1M:10"
PY=/usr/bin/python3
PIDS=()
PF_CONF=
PF_SINK=
TMP=

log() { printf '[bench] %s\n' "$*" >&2; }
die() { log "error: $*"; exit 1; }

# ------------------------------------------------------------- clean-up

cleanup() {
  local pid
  if [ -n "$PF_CONF" ]; then
    postfix -c "$PF_CONF" stop >/dev/null 2>&1 || true
    PF_CONF=
  fi
  for pid in "${PIDS[@]}"; do
    kill "$pid" 2>/dev/null || true
  done
  for pid in "${PIDS[@]}"; do
    for _ in $(seq 50); do
      kill -0 "$pid" 2>/dev/null || break
      sleep 0.1
    done
    kill -9 "$pid" 2>/dev/null || true
  done
  PIDS=()
  if [ -n "$TMP" ] && [ -z "${BENCH_KEEP:-}" ]; then
    rm -rf "$TMP"
  fi
}
trap cleanup EXIT
trap 'exit 1' INT TERM

# Stops one process started here and forgets it.
stop_pid() {
  local pid=$1 keep=() p
  kill "$pid" 2>/dev/null || true
  for _ in $(seq 100); do
    kill -0 "$pid" 2>/dev/null || break
    sleep 0.1
  done
  kill -9 "$pid" 2>/dev/null || true
  wait "$pid" 2>/dev/null || true
  for p in "${PIDS[@]}"; do
    [ "$p" = "$pid" ] || keep+=("$p")
  done
  PIDS=("${keep[@]}")
}

# --------------------------------------------------------------- set-up

install_deps() {
  local pkgs=() had_postfix=1
  command -v smtp-sink >/dev/null || pkgs+=(postfix)
  command -v smtp-sink >/dev/null || had_postfix=0
  command -v mosquitto >/dev/null || pkgs+=(mosquitto)
  command -v node >/dev/null || pkgs+=(nodejs)
  command -v npm >/dev/null || pkgs+=(npm)
  command -v cmake >/dev/null || pkgs+=(cmake)
  $PY -c 'import aiosmtpd' 2>/dev/null || pkgs+=(python3-aiosmtpd)
  $PY -c 'import paho.mqtt' 2>/dev/null || pkgs+=(python3-paho-mqtt)
  if [ ${#pkgs[@]} -gt 0 ]; then
    log "installing ${pkgs[*]}"
    [ "$(id -u)" = 0 ] || die "need root to apt-get install ${pkgs[*]}"
    echo 'postfix postfix/main_mailer_type select No configuration' |
      debconf-set-selections
    DEBIAN_FRONTEND=noninteractive apt-get update -q >/dev/null
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q "${pkgs[@]}" \
      >/dev/null
  fi
  # The package's own instance must not be left serving port 25.
  if [ "$had_postfix" = 0 ] && postfix status >/dev/null 2>&1; then
    postfix stop >/dev/null 2>&1 || true
  fi
  if [ ! -d "$HERE/peers/node-relay/node_modules/smtp-server" ]; then
    log "npm install in bench/peers/node-relay"
    (cd "$HERE/peers/node-relay" &&
      timeout 300 npm install --no-audit --no-fund --loglevel=error \
        >/dev/null)
  fi
}

build() {
  log "building camgate and loadgen in $BUILD"
  cmake -S "$ROOT" -B "$BUILD" -DBUILD_TESTING=OFF >/dev/null
  cmake --build "$BUILD" -j2 --target camgate loadgen >/dev/null
  CAMGATE=$BUILD/camgate
  LOADGEN=$BUILD/bench/loadgen
}

free_ports() {
  $PY - "$1" <<'EOF'
import socket, sys
ss = [socket.socket() for _ in range(int(sys.argv[1]))]
for s in ss:
  s.bind(("127.0.0.1", 0))
print(" ".join(str(s.getsockname()[1]) for s in ss))
EOF
}

wait_port() {
  local port=$1 pid=$2
  for _ in $(seq 200); do
    if (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then
      return 0
    fi
    if [ -n "$pid" ] && ! kill -0 "$pid" 2>/dev/null; then
      return 1
    fi
    sleep 0.05
  done
  return 1
}

# ------------------------------------------------------ process-tree stats

tree_pids() {
  ps -e -o pid=,ppid= | awk -v root="$1" '
    { parent[$1] = $2 }
    END {
      keep[root] = 1; changed = 1
      while (changed) {
        changed = 0
        for (p in parent)
          if (!(p in keep) && (parent[p] in keep)) {
            keep[p] = 1; changed = 1
          }
      }
      for (p in keep) print p
    }'
}

# CPU seconds of the tree: utime+stime+cutime+cstime of each process.
tree_cpu() {
  local root=$1 hz total=0 p
  hz=$(getconf CLK_TCK)
  for p in $(tree_pids "$root"); do
    if [ -r "/proc/$p/stat" ]; then
      total=$((total + $(sed 's/^.*) //' "/proc/$p/stat" 2>/dev/null |
        awk '{print $12 + $13 + $14 + $15}' || echo 0)))
    fi
  done
  awk -v t="$total" -v hz="$hz" 'BEGIN { printf "%.3f", t / hz }'
}

# Sum of VmHWM (kB) over the tree.
tree_hwm_kb() {
  local root=$1 total=0 p v
  for p in $(tree_pids "$root"); do
    v=$(awk '/^VmHWM:/ {print $2}' "/proc/$p/status" 2>/dev/null || true)
    total=$((total + ${v:-0}))
  done
  echo "$total"
}

# ------------------------------------------------------------- servers

start_mosquitto() {
  MQTT_PORT=$(free_ports 1)
  cat >"$TMP/mosquitto.conf" <<EOF
listener $MQTT_PORT 127.0.0.1
allow_anonymous true
persistence false
max_queued_messages 100000
user $(id -un)
EOF
  mosquitto -c "$TMP/mosquitto.conf" >"$TMP/mosquitto.log" 2>&1 &
  PIDS+=($!)
  wait_port "$MQTT_PORT" $! || die "mosquitto did not start"
}

camgate_config() {
  local port=$1 path=$2 i
  {
    cat <<EOF
log: {level: warn}
spool: {path: $TMP/cg-var, retention: 7d}
smtp:
  listen: 127.0.0.1:$port
  hostname: bench.example.net
  max_size: 64M
  max_sessions: 2000
  max_sessions_per_address: 2000   # every bench session comes from 127.0.0.1
  idle_timeout: 5m
cameras:
EOF
    for i in $(seq 0 9); do
      printf '  - id: cam%02d\n    smtp: {user: bench%02d, ' "$i" "$i"
      printf 'password_hash: "%s"}\n' "$CAM_HASH"
    done
    cat <<EOF
backends:
  - {name: ha, type: mqtt, host: 127.0.0.1, port: $MQTT_PORT,
     topic_prefix: camgate, hold: 2s}
rules:
  - {name: all, backends: [ha]}
EOF
  } >"$path"
}

# Each start_X sets SRV_PID (root of the tree measured), SRV_PORT and
# LG_ARGS (how loadgen talks to it).
start_camgate() {
  SRV_PORT=$(free_ports 1)
  rm -rf "$TMP/cg-var"
  camgate_config "$SRV_PORT" "$TMP/camgate.yaml"
  "$CAMGATE" run -c "$TMP/camgate.yaml" >>"$TMP/camgate.log" 2>&1 &
  SRV_PID=$!
  PIDS+=("$SRV_PID")
  LG_ARGS=(-u bench --users 10 -w bench-pass -m "$MQTT_PORT"
           -t 'camgate/+/event')
}

start_smtp_sink() {
  SRV_PORT=$(free_ports 1)
  smtp-sink -u nobody "127.0.0.1:$SRV_PORT" 1000 >/dev/null 2>&1 &
  SRV_PID=$!
  PIDS+=("$SRV_PID")
  LG_ARGS=(--no-auth)
}

start_node() {
  SRV_PORT=$(free_ports 1)
  node "$HERE/peers/node-relay/relay.js" "$SRV_PORT" "$MQTT_PORT" bench \
    bench-pass bench >>"$TMP/node.log" 2>&1 &
  SRV_PID=$!
  PIDS+=("$SRV_PID")
  LG_ARGS=(-u bench --users 10 -w bench-pass -m "$MQTT_PORT"
           -t 'bench/+/event')
}

start_python() {
  SRV_PORT=$(free_ports 1)
  $PY -W ignore "$HERE/peers/python-relay/relay.py" "$SRV_PORT" \
    "$MQTT_PORT" bench bench-pass bench >>"$TMP/python.log" 2>&1 &
  SRV_PID=$!
  PIDS+=("$SRV_PID")
  LG_ARGS=(-u bench --users 10 -w bench-pass -m "$MQTT_PORT"
           -t 'bench/+/event')
}

# A private Postfix: its own config and queue under $TMP/pf, loopback
# only, smtpd on a custom port, everything relayed to an smtp-sink, no
# local delivery. The sink is not part of the measured tree.
start_postfix() {
  local pf=$TMP/pf sink
  read -r SRV_PORT sink < <(free_ports 2)
  rm -rf "$pf"
  mkdir -p "$pf/conf" "$pf/queue" "$pf/data"
  chown postfix:postfix "$pf/data"
  smtp-sink -u nobody "127.0.0.1:$sink" 1000 >/dev/null 2>&1 &
  PF_SINK=$!
  PIDS+=("$PF_SINK")
  cat >"$pf/conf/main.cf" <<EOF
compatibility_level = 3.6
queue_directory = $pf/queue
data_directory = $pf/data
meta_directory = /etc/postfix
mail_owner = postfix
setgid_group = postdrop
inet_interfaces = loopback-only
inet_protocols = ipv4
myhostname = postfix-bench.localdomain
mydomain = localdomain
mydestination =
local_recipient_maps =
local_transport = error:local delivery is disabled
alias_maps =
alias_database =
relayhost = [127.0.0.1]:$sink
mynetworks = 127.0.0.0/8
smtpd_relay_restrictions = permit_mynetworks, reject_unauth_destination
maillog_file = $pf/maillog
maillog_file_prefixes = $pf
smtp_tls_security_level = none
smtpd_tls_security_level = none
default_process_limit = 150
smtpd_client_connection_count_limit = 0
smtpd_client_connection_rate_limit = 0
smtpd_client_message_rate_limit = 0
message_size_limit = 67108864
biff = no
EOF
  awk -v port="$SRV_PORT" '/^#/ || /^[ \t]/ || NF < 8 {print; next}
    $1 == "smtp" && $2 == "inet" {$1 = "127.0.0.1:" port}
    {$5 = "n"; print}' /etc/postfix/master.cf >"$pf/conf/master.cf"
  postfix -c "$pf/conf" start >/dev/null 2>&1 ||
    die "postfix did not start: $(tail -3 "$pf/maillog" 2>/dev/null)"
  PF_CONF=$pf/conf
  for _ in $(seq 100); do
    SRV_PID=$(tr -d ' ' <"$pf/queue/pid/master.pid" 2>/dev/null || true)
    [ -n "$SRV_PID" ] && break
    sleep 0.05
  done
  LG_ARGS=(--no-auth)
}

postfix_drained() {
  local q=$TMP/pf/queue n
  for _ in $(seq 300); do
    n=$(find "$q/incoming" "$q/active" "$q/deferred" "$q/maildrop" \
      -type f 2>/dev/null | wc -l)
    [ "$n" = 0 ] && return 0
    sleep 0.1
  done
  return 1
}

stop_server() {
  local name=$1
  if [ "$name" = postfix ]; then
    postfix -c "$PF_CONF" stop >/dev/null 2>&1 || true
    PF_CONF=
    stop_pid "$PF_SINK"
    return
  fi
  stop_pid "$SRV_PID"
}

# ---------------------------------------------------------------- runs

# run_point SERVER SIZE SESSIONS REP: one run on a fresh server; appends a
# row to $TMP/results.tsv.
run_point() {
  local name=$1 size=$2 k=$3 rep=$4 out cpu0 cpu1 hwm
  "start_${name//-/_}"
  wait_port "$SRV_PORT" "$SRV_PID" || die "$name did not start"
  sleep 0.3
  cpu0=$(tree_cpu "$SRV_PID")
  out=$("$LOADGEN" -p "$SRV_PORT" "${LG_ARGS[@]}" -c "$k" -n "$N" \
        -d "$SECS" -s "$size" --wait 20 -q 2>>"$TMP/loadgen.err" |
        grep '^result' || true)
  [ "$name" = postfix ] && { postfix_drained || log "postfix queue not empty"; }
  cpu1=$(tree_cpu "$SRV_PID")
  hwm=$(tree_hwm_kb "$SRV_PID")
  stop_server "$name"
  [ -n "$out" ] || die "$name $size x$k: no result from loadgen"
  printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$name" "$size" "$k" "$rep" \
    "$(awk -v a="$cpu0" -v b="$cpu1" 'BEGIN {printf "%.3f", b - a}')" \
    "$hwm" "$out" >>"$TMP/results.tsv"
  log "$name size=$size sessions=$k rep=$rep: $(echo "$out" |
    grep -o 'msgs_per_s=[0-9.]*') errors=$(echo "$out" |
    grep -o ' errors=[0-9]*' | cut -d= -f2)"
}

run_all() {
  local name point rep
  : >"$TMP/results.tsv"
  for rep in $(seq "$REPS"); do
    for point in $POINTS; do
      for name in $SERVERS; do
        run_point "$name" "${point%%:*}" "${point##*:}" "$rep"
      done
    done
  done
}

# camgate alone: "." -> MQTT at a steady 100 alerts/s.
run_e2e_rate() {
  local out
  start_camgate
  wait_port "$SRV_PORT" "$SRV_PID" || die "camgate did not start"
  sleep 0.3
  out=$("$LOADGEN" -p "$SRV_PORT" "${LG_ARGS[@]}" -c 10 -n 1000 -r 100 \
        -s 150K -d 30 --wait 20 -q 2>>"$TMP/loadgen.err" |
        grep '^result' || true)
  stop_server camgate
  echo "$out" >"$TMP/e2e_rate.txt"
}

mb() {
  awk -v k="$1" 'BEGIN { printf "%.1f", k / 1024 }'
}

rss_kb() {
  awk '/^VmRSS:/ {print $2}' "/proc/$1/status"
}

# camgate's memory: idle on the example config; 1,000 idle sessions; a
# 25 MB message.
run_memory() {
  local port lgpid base peak v hwm0 hwm1
  port=$(free_ports 1)
  sed -e "s|path: ./var|path: $TMP/cg-example-var|" \
      -e "s|listen: 127.0.0.1:2525|listen: 127.0.0.1:$port|" \
      -e "s|port: 1883|port: $MQTT_PORT|" \
      "$ROOT/config/camgate.example.yaml" >"$TMP/example.yaml"
  "$CAMGATE" run -c "$TMP/example.yaml" >>"$TMP/camgate.log" 2>&1 &
  SRV_PID=$!
  PIDS+=("$SRV_PID")
  wait_port "$port" "$SRV_PID" || die "camgate (example config) did not start"
  sleep 2
  MEM_IDLE=$(rss_kb "$SRV_PID")
  stop_pid "$SRV_PID"

  start_camgate
  wait_port "$SRV_PORT" "$SRV_PID" || die "camgate did not start"
  sleep 1
  base=$(rss_kb "$SRV_PID")
  "$LOADGEN" -p "$SRV_PORT" --no-auth -c 1000 --idle --ramp 2 --hold 60 \
    -q >"$TMP/idle.out" 2>"$TMP/idle.err" &
  lgpid=$!
  PIDS+=("$lgpid")
  for _ in $(seq 1200); do
    grep -q 'sessions open' "$TMP/idle.err" && break
    kill -0 "$lgpid" 2>/dev/null || break
    sleep 0.05
  done
  grep -q 'sessions open' "$TMP/idle.err" ||
    die "1000 sessions did not open: $(tail -3 "$TMP/idle.err")"
  sleep 1
  MEM_SESS=$(rss_kb "$SRV_PID")
  MEM_SESS_BASE=$base
  stop_pid "$lgpid"

  # 25 MB: one small message first so that everything is warm.
  "$LOADGEN" -p "$SRV_PORT" "${LG_ARGS[@]}" -c 1 -n 1 -s 150K -q >/dev/null
  sleep 1
  base=$(rss_kb "$SRV_PID")
  hwm0=$(awk '/^VmHWM:/ {print $2}' "/proc/$SRV_PID/status")
  "$LOADGEN" -p "$SRV_PORT" "${LG_ARGS[@]}" -c 1 -n 1 -s 25M --wait 30 -q \
    >"$TMP/big.out" 2>>"$TMP/loadgen.err" &
  lgpid=$!
  PIDS+=("$lgpid")
  peak=$base
  for _ in $(seq 1200); do
    v=$(rss_kb "$SRV_PID")
    [ "${v:-0}" -gt "$peak" ] && peak=$v
    kill -0 "$lgpid" 2>/dev/null || break
    sleep 0.02
  done
  wait "$lgpid" || log "25 MB message: $(cat "$TMP/big.out")"
  hwm1=$(awk '/^VmHWM:/ {print $2}' "/proc/$SRV_PID/status")
  MEM_BIG_BASE=$base
  MEM_BIG_PEAK=$peak
  MEM_BIG_HWM=$((hwm1 - hwm0))
  stop_server camgate
}

report() {
  $PY - "$TMP/results.tsv" "$TMP/e2e_rate.txt" "$N" "$SECS" "$REPS" <<'EOF'
import statistics, sys
rows = {}
for line in open(sys.argv[1]):
  name, size, k, rep, cpu, hwm, res = line.rstrip("\n").split("\t")
  kv = dict(x.split("=", 1) for x in res.split()[1:])
  ok = int(kv["ok"])
  r = rows.setdefault((name, size, int(k)), [])
  r.append({"mps": float(kv["msgs_per_s"]), "p50": float(kv["ack_p50_ms"]),
            "p90": float(kv["ack_p90_ms"]), "p99": float(kv["ack_p99_ms"]),
            "max": float(kv["ack_max_ms"]),
            "cpu": float(cpu) * 1000 / ok if ok else float("nan"),
            "rss": int(hwm) / 1024, "err": int(kv["errors"]),
            "e2e99": float(kv.get("e2e_p99_ms", "nan"))})
med = lambda v: statistics.median(v)
print("medians of %s runs; N=%s messages or %s s per run" %
      (sys.argv[5], sys.argv[3], sys.argv[4]))
print("| server | mail | sessions | msg/s | p50 ms | p90 ms | p99 ms "
      "| max ms | e2e p99 ms | CPU s/1000 | peak RSS MB | errors |")
print("|---|---|---|---|---|---|---|---|---|---|---|---|")
order = ["camgate", "smtp-sink", "postfix", "node", "python"]
keys = sorted(rows, key=lambda x: (x[1] != "150K", x[2],
                                   order.index(x[0]) if x[0] in order
                                   else 9))
for key in keys:
  r = rows[key]
  m = {f: med([x[f] for x in r]) for f in r[0]}
  e2e = "%.1f" % m["e2e99"] if m["e2e99"] == m["e2e99"] else "-"
  print("| %s | %s | %d | %.0f | %.2f | %.2f | %.2f | %.2f | %s | %.2f "
        "| %.1f | %d |" % (key[0], key[1], key[2], m["mps"], m["p50"],
                           m["p90"], m["p99"], m["max"], e2e, m["cpu"],
                           m["rss"], sum(x["err"] for x in r)))
print()
print("camgate's msg/s as a ratio of each peer's (same point):")
for key in keys:
  if key[0] == "camgate":
    continue
  cg = rows.get(("camgate", key[1], key[2]))
  if not cg:
    continue
  a = med([x["mps"] for x in cg])
  b = med([x["mps"] for x in rows[key]])
  print("  %-9s %4s x%-3d %.2fx" % (key[0], key[1], key[2],
                                   a / b if b else float("nan")))
try:
  kv = dict(x.split("=", 1) for x in open(sys.argv[2]).read().split()[1:])
  print()
  print("camgate at 100 alerts/s, 10 sessions, 150 KB: '.' -> 250 p50 %s "
        "p99 %s ms; '.' -> MQTT p50 %s p90 %s p99 %s max %s ms (%s of %s)"
        % (kv["ack_p50_ms"], kv["ack_p99_ms"], kv["e2e_p50_ms"],
           kv["e2e_p90_ms"], kv["e2e_p99_ms"], kv["e2e_max_ms"],
           kv["arrived"], kv["sent"]))
except (OSError, KeyError):
  pass
EOF
}

main() {
  install_deps
  build
  TMP=$(mktemp -d /tmp/camgate-bench.XXXXXX)
  chmod 755 "$TMP"          # Postfix's daemons run as "postfix"
  ulimit -n "$(ulimit -Hn)" 2>/dev/null || true
  CAM_HASH=$(echo bench-pass | "$CAMGATE" passwd | tail -1)
  start_mosquitto
  log "results in $TMP (BENCH_KEEP=1 keeps them)"
  run_all
  if [[ " $SERVERS " == *" camgate "* ]]; then
    run_e2e_rate
  fi
  echo
  echo "camgate bench, $(date -u +%Y-%m-%d), $(nproc) cores," \
    "$(. /etc/os-release && echo "$PRETTY_NAME")"
  report
  if [ "$MEMORY" = 1 ]; then
    run_memory
    echo
    echo "camgate memory (VmRSS, MB):"
    echo "  idle on the example config: $(mb "$MEM_IDLE")"
    echo "  1,000 idle sessions: $(mb "$MEM_SESS")" \
      "(from $(mb "$MEM_SESS_BASE") before they opened)"
    echo "  receiving a 25 MB message: peak $(mb "$MEM_BIG_PEAK") from" \
      "$(mb "$MEM_BIG_BASE"): +$(mb $((MEM_BIG_PEAK - MEM_BIG_BASE)))" \
      "(VmHWM +$(mb "$MEM_BIG_HWM"))"
  fi
  if awk -F'\t' '{ if ($7 !~ / errors=0 /) bad = 1 } END { exit !bad }' \
      "$TMP/results.tsv"; then
    die "some runs had errors (see above)"
  fi
}

main "$@"
