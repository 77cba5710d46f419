#!/usr/bin/env bash
# Step-4 benchmark: durable binds on one node, side by side with Redis
# persisting every write (appendfsync always) and once a second
# (appendfsync everysec), in one run, through `x700 bench --mix bind=1`
# (fresh AXB binds; for Redis one MSET of the two plain keys per bind).
# Each server is pinned to core 0, the client to core 1. Per target: the
# closed-loop peak (8 connections x 256 in flight) and an open-loop run at
# half of that peak (latency from each request's intended send time). Then
# restart time with N bindings: after a clean stop, and after kill -9 with a
# log tail of about one second of binds.
# Usage: perf/bench-durable.sh [SECONDS] [N]   (defaults 10, 10000000)
# Writes perf/results/<date>-durable-binds.json (and one x700 bench JSON per
# run beside it, in perf/results/<date>-durable-binds/). Installs
# redis-server and jq with apt-get if missing; stops everything it starts,
# by process id.
set -euo pipefail
cd "$(dirname "$0")/.."
seconds=${1:-10}
n=${2:-10000000}
redis_port=${REDIS_PORT:-6397}
need=()
command -v redis-server >/dev/null || need+=(redis-server)
command -v jq >/dev/null || need+=(jq)
if [ ${#need[@]} -gt 0 ]; then apt-get install -y -qq "${need[@]}" >/dev/null; fi
cargo build --release --quiet --bin x700
x700=$PWD/target/release/x700
runs="perf/results/$(date -u +%F)-durable-binds"
mkdir -p "$runs"
work=$(mktemp -d -p "${BENCH_DIR:-/var/tmp}")
pids=()
cleanup() {
  for pid in "${pids[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
  for pid in "${pids[@]}"; do wait "$pid" 2>/dev/null || true; done
  rm -rf "$work"
}
trap cleanup EXIT
# Stops the newest process; says so if it had already gone.
stop_last() {
  kill -TERM "${pids[-1]}" 2>/dev/null || echo "process ${pids[-1]} had already exited" >&2
  wait "${pids[-1]}" || true
  unset 'pids[-1]'
}

# bench NAME ARGS...: one pinned `x700 bench` run; its JSON in $runs/NAME.json.
bench() {
  local name=$1; shift
  taskset -c 1 "$x700" bench --mix bind=1 --json "$runs/$name.json" "$@" > "$runs/$name.txt"
}
rate_of() { jq '.achieved_rate_per_s' "$runs/$1.json"; }
summary() { jq -c '{achieved_rate_per_s, target_rate_per_s, mode, requests_ok, requests_failed, latency_us: (.latency_us | {p50, p90, p99, p999, p9999, max}), client_cpu}' "$runs/$1.json"; }

start_x700() {  # data dir; sets $address
  taskset -c 0 "$x700" serve --data "$1" --listen 127.0.0.1:0 --shards 1 > "$work/serve.log" 2>&1 &
  pids+=($!)
  for _ in $(seq 200); do grep -q 'tcp=' "$work/serve.log" 2>/dev/null && break; sleep 0.05; done
  address=$(grep -o 'tcp=[^ ]*' "$work/serve.log" | cut -d= -f2)
}

echo "x700: closed-loop peak, then open loop at half of it" >&2
start_x700 "$work/x700"
load=(--connections 8 --pipeline 256 --warmup-s 1)
bench x700-peak --server "$address" "${load[@]}" --duration-s "$seconds" --seed 1
bench x700-half --server "$address" "${load[@]}" --duration-s "$seconds" --seed 2 \
  --rate "$(( $(rate_of x700-peak) / 2 ))"
x700_log=$("$x700" stats --server "$address" --json | jq -c '.log')
stop_last

# Waits (10 s at most) until nothing answers on the Redis port.
redis_port_free() {
  for _ in $(seq 100); do redis-cli -p "$redis_port" ping >/dev/null 2>&1 || return 0; sleep 0.1; done
  echo "something still answers on port $redis_port" >&2; return 1
}
redis_run() {  # appendfsync policy
  redis_port_free
  rm -rf "$work/redis"; mkdir -p "$work/redis"
  taskset -c 0 redis-server --port "$redis_port" --bind 127.0.0.1 --dir "$work/redis" --save '' \
    --appendonly yes --appendfsync "$1" --daemonize no > "$runs/redis-$1.log" 2>&1 &
  pids+=($!)
  for _ in $(seq 100); do redis-cli -p "$redis_port" ping >/dev/null 2>&1 && break; sleep 0.1; done
  bench "redis-$1-peak" --target "redis://127.0.0.1:$redis_port" --redis-layout keys \
    "${load[@]}" --duration-s "$seconds" --seed 1
  bench "redis-$1-half" --target "redis://127.0.0.1:$redis_port" --redis-layout keys "${load[@]}" \
    --duration-s "$seconds" --seed 2 --rate "$(( $(rate_of "redis-$1-peak") / 2 ))"
  stop_last
  redis_port_free
}
echo "redis appendfsync always" >&2
redis_run always
echo "redis appendfsync everysec" >&2
redis_run everysec

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
bench tail --server "$address" --duration-s 1 --warmup-s 0 --seed 3 --connections 4 --pipeline 64
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
  "setup": "server pinned to core 0 (x700 --shards 1: one event loop; its raft and log-sync threads share the core), x700 bench --mix bind=1 pinned to core 1, 8 connections x 256 in flight, loopback TCP; every x700 bind is fsync'd (group commit) before its answer; Redis: one MSET of the two keys per bind (keys layout), AOF on",
  "x700": {"peak": $(summary x700-peak), "half_peak": $(summary x700-half), "log": $x700_log},
  "redis_appendfsync_always": {"peak": $(summary redis-always-peak), "half_peak": $(summary redis-always-half)},
  "redis_appendfsync_everysec": {"peak": $(summary redis-everysec-peak), "half_peak": $(summary redis-everysec-half)},
  "ratios": {"x700_over_redis_always": $(ratio "$(rate_of x700-peak)" "$(rate_of redis-always-peak)"),
             "x700_over_redis_everysec": $(ratio "$(rate_of x700-peak)" "$(rate_of redis-everysec-peak)")},
  "restart": {"bindings": $n, "clean_stop_to_serving_s": $clean_restart, "tail_before_kill": $(summary tail), "kill_9_to_serving_s": $crash_restart, "recovery": "$replayed"},
  "targets": {"durable_binds_per_s": ">= 200000", "p99_at_half_peak_us": "reported", "restart_with_short_tail_s": "< 1"}
}
JSON
cat "$out"
