#!/usr/bin/env bash
# Step-4 benchmark: durable binds on one node, side by side with Redis
# persisting every write (appendfsync always) and once a second
# (appendfsync everysec), in one run, the same load generator
# (examples/wire_binds: fresh AXB binds; one SET per bind for Redis). Each
# server is pinned to core 0, the client to core 1. Per target: the closed-
# loop peak (8 connections x 256 in flight) and an open-loop run at half of
# that peak (latency from each request's intended send time). Then restart
# time with N bindings: after a clean stop, and after kill -9 with a log tail
# of about one second of binds.
# Usage: perf/bench-durable.sh [SECONDS] [N]   (defaults 10, 10000000)
# Writes perf/results/<date>-durable-binds.json. Installs redis-server with
# apt-get if missing; stops everything it starts, by process id.
set -euo pipefail
cd "$(dirname "$0")/.."
seconds=${1:-10}
n=${2:-10000000}
redis_port=${REDIS_PORT:-6391}
command -v redis-server >/dev/null || apt-get install -y redis-server >/dev/null
cargo build --release --quiet --bin x700 --example wire_binds
x700=target/release/x700
client=target/release/examples/wire_binds
work=$(mktemp -d -p "${BENCH_DIR:-/var/tmp}")
pids=()
cleanup() {
  for pid in "${pids[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
  for pid in "${pids[@]}"; do wait "$pid" 2>/dev/null || true; done
  rm -rf "$work"
}
trap cleanup EXIT
# The first value of a JSON field (one run's object holds one of each).
field() { grep -o "\"$1\":[0-9.]*" <<<"$2" | head -1 | cut -d: -f2; }

start_x700() {  # data dir; sets $address
  taskset -c 0 "$x700" serve --data "$1" --listen 127.0.0.1:0 --shards 1 > "$work/serve.log" 2>&1 &
  pids+=($!)
  for _ in $(seq 200); do grep -q 'tcp=' "$work/serve.log" 2>/dev/null && break; sleep 0.05; done
  address=$(grep -o 'tcp=[^ ]*' "$work/serve.log" | cut -d= -f2)
}
stop_last() { kill -TERM "${pids[-1]}"; wait "${pids[-1]}" || true; unset 'pids[-1]'; }

echo "x700: closed-loop peak, then open loop at half of it" >&2
start_x700 "$work/x700"
x700_peak=$(taskset -c 1 "$client" x700 "$address" 8 256 "$seconds" 0 1)
half=$(awk -v r="$(field binds_per_s "$x700_peak")" 'BEGIN{printf "%d", r/2}')
x700_half=$(taskset -c 1 "$client" x700 "$address" 8 256 "$seconds" "$half" 100000000000)
x700_log=$("$x700" stats --server "$address" --json | sed 's/.*"log":\({[^}]*}\).*/\1/')
stop_last

redis_run() {  # appendfsync policy; sets $redis_result
  rm -rf "$work/redis"; mkdir -p "$work/redis"
  taskset -c 0 redis-server --port "$redis_port" --bind 127.0.0.1 --dir "$work/redis" --save '' \
    --appendonly yes --appendfsync "$1" --daemonize no > "$work/redis.log" 2>&1 &
  pids+=($!)
  for _ in $(seq 100); do redis-cli -p "$redis_port" ping >/dev/null 2>&1 && break; sleep 0.1; done
  local peak half_rate half_run
  peak=$(taskset -c 1 "$client" redis "127.0.0.1:$redis_port" 8 256 "$seconds" 0 1)
  half_rate=$(awk -v r="$(field binds_per_s "$peak")" 'BEGIN{printf "%d", r/2}')
  half_run=$(taskset -c 1 "$client" redis "127.0.0.1:$redis_port" 8 256 "$seconds" "$half_rate" 100000000000)
  stop_last
  redis_result="{\"peak\": $peak, \"half_peak\": $half_run}"
  redis_peak_rate=$(field binds_per_s "$peak")
}
echo "redis appendfsync always" >&2
redis_run always; redis_always=$redis_result; redis_always_rate=$redis_peak_rate
echo "redis appendfsync everysec" >&2
redis_run everysec; redis_everysec=$redis_result; redis_everysec_rate=$redis_peak_rate

echo "restart time with $n bindings" >&2
"$x700" load --data "$work/big" --bindings "$n" --quiet --json > /dev/null
time_to_serving() {  # data dir; sets $took and $address
  local t0 t1
  t0=$(date +%s.%N)
  taskset -c 0 "$x700" serve --data "$1" --listen 127.0.0.1:0 --shards 1 > "$work/serve.log" 2>&1 &
  pids+=($!)
  while ! grep -q 'tcp=' "$work/serve.log" 2>/dev/null; do sleep 0.002; done
  t1=$(date +%s.%N)
  took=$(awk -v a="$t0" -v b="$t1" 'BEGIN{printf "%.3f", b-a}')
  address=$(grep -o 'tcp=[^ ]*' "$work/serve.log" | cut -d= -f2)
}
time_to_serving "$work/big"; clean_restart=$took
tail_binds=$(taskset -c 1 "$client" x700 "$address" 4 64 1 0 200000000000)
kill -KILL "${pids[-1]}"; wait "${pids[-1]}" 2>/dev/null || true; unset 'pids[-1]'
time_to_serving "$work/big"; crash_restart=$took
replayed=$(grep -o 'replayed [0-9]* log entries ([0-9]* write batches)' "$work/serve.log" || echo "none")
stop_last

ratio() { awk -v a="$1" -v b="$2" 'BEGIN{printf "%.2f", a/b}'; }
out="perf/results/$(date -u +%F)-durable-binds.json"
cat > "$out" <<JSON
{
  "command": "perf/bench-durable.sh $seconds $n",
  "date": "$(date -u +%FT%TZ)",
  "commit": "$(git rev-parse --short HEAD)",
  "machine": {"cores": $(nproc), "cpu": "$(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs)", "kernel": "$(uname -r)", "load_average": "$(cut -d' ' -f1-3 /proc/loadavg)", "data_fs": "$(df -T "$work" | tail -1 | awk '{print $1" "$2}')"},
  "setup": "server pinned to core 0 (x700 --shards 1: one event loop; raft and log-sync threads share the core), client examples/wire_binds pinned to core 1, loopback TCP; every x700 bind is fsync'd (group commit) before its answer; Redis: one SET per bind, AOF on",
  "x700": {"peak": $x700_peak, "half_peak": $x700_half, "log": $x700_log},
  "redis_appendfsync_always": $redis_always,
  "redis_appendfsync_everysec": $redis_everysec,
  "ratios": {"x700_over_redis_always": $(ratio "$(field binds_per_s "$x700_peak")" "$redis_always_rate"),
             "x700_over_redis_everysec": $(ratio "$(field binds_per_s "$x700_peak")" "$redis_everysec_rate")},
  "restart": {"bindings": $n, "clean_stop_to_serving_s": $clean_restart, "tail_before_kill": $tail_binds, "kill_9_to_serving_s": $crash_restart, "recovery": "$replayed"},
  "targets": {"durable_binds_per_s": ">= 200000", "p99_at_half_peak_us": "reported", "restart_with_short_tail_s": "< 1"}
}
JSON
cat "$out"
