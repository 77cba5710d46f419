#!/usr/bin/env bash
# Step-2 wire benchmark, side by side with Redis in one run: N synthetic AXB
# bindings, the server pinned to core 0, the load generator
# (examples/wire_lookups.rs) pinned to core 1, pipelined lookups over TCP
# loopback at 4 connections x depth 64 and x 256. Redis gets the same
# bindings as two plain keys each and the same GETs (one per lookup), plus
# redis-benchmark's own GET figure. Installs redis-server with apt-get if it
# is missing; stops everything it starts, by process id.
# Usage: perf/bench-server.sh [N] [SECONDS]   (defaults 10000000, 20)
# Writes perf/results/<date>-server-lookups.json.
set -euo pipefail
cd "$(dirname "$0")/.."
n=${1:-10000000}
seconds=${2:-20}
redis_port=${REDIS_PORT:-6390}
command -v redis-server >/dev/null || apt-get install -y redis-server >/dev/null
cargo build --release --quiet --bin x700 --example wire_lookups
x700=target/release/x700
client=target/release/examples/wire_lookups
work=$(mktemp -d)
pids=()
cleanup() {
  for pid in "${pids[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
  for pid in "${pids[@]}"; do wait "$pid" 2>/dev/null || true; done
  rm -rf "$work"
}
trap cleanup EXIT

echo "loading $n bindings into x700" >&2
taskset -c 0 "$x700" load --data "$work/data" --bindings "$n" --quiet --json > "$work/load.json"
x700_stats=$("$x700" stats --data "$work/data" --json)
taskset -c 0 "$x700" serve --data "$work/data" --listen 127.0.0.1:0 --shards 1 > "$work/serve.log" 2>&1 &
pids+=($!)
for _ in $(seq 100); do grep -q 'tcp=' "$work/serve.log" 2>/dev/null && break; sleep 0.1; done
address=$(grep -o 'tcp=[^ ]*' "$work/serve.log" | cut -d= -f2)
x700_64=$(taskset -c 1 "$client" x700 "$address" "$n" 4 64 "$seconds")
x700_256=$(taskset -c 1 "$client" x700 "$address" "$n" 4 256 "$seconds")
kill -TERM "${pids[0]}"; wait "${pids[0]}" || true; pids=()

echo "loading $n bindings (2 keys each) into redis" >&2
taskset -c 0 redis-server --port "$redis_port" --bind 127.0.0.1 --save '' --appendonly no --daemonize no > "$work/redis.log" 2>&1 &
pids+=($!)
for _ in $(seq 100); do redis-cli -p "$redis_port" ping >/dev/null 2>&1 && break; sleep 0.1; done
taskset -c 1 "$client" redis-load "127.0.0.1:$redis_port" "$n" 2>/dev/null
redis_used=$(redis-cli -p "$redis_port" info memory | grep '^used_memory:' | cut -d: -f2 | tr -d '\r')
redis_keys=$(redis-cli -p "$redis_port" dbsize | tr -d '\r')
redis_64=$(taskset -c 1 "$client" redis "127.0.0.1:$redis_port" "$n" 4 64 "$seconds")
redis_256=$(taskset -c 1 "$client" redis "127.0.0.1:$redis_port" "$n" 4 256 "$seconds")
# redis-benchmark's own figure: its random keys (key:NNNNNNNNNNNN) miss.
redis_benchmark=$(taskset -c 1 redis-benchmark -p "$redis_port" -t get -P 64 -c 4 -n 5000000 -r 10000000 --csv 2>/dev/null | grep GET | tr -d "\"\r" || true)

rate() { sed -n 's/.*"lookups_per_s":\([0-9]*\).*/\1/p' <<<"$1"; }
x700_bpb=$(sed -n 's/.*"bytes_per_binding":\([0-9.]*\).*/\1/p' <<<"$x700_stats")
redis_bpb=$(awk -v u="$redis_used" -v n="$n" 'BEGIN{printf "%.1f", u/n}')
ratio() { awk -v a="$1" -v b="$2" 'BEGIN{printf "%.2f", a/b}'; }
out="perf/results/$(date -u +%F)-server-lookups.json"
cat > "$out" <<JSON
{
  "command": "perf/bench-server.sh $n $seconds",
  "date": "$(date -u +%FT%TZ)",
  "machine": {"cores": $(nproc), "cpu": "$(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs)", "kernel": "$(uname -r)", "load_average": "$(cut -d' ' -f1-3 /proc/loadavg)"},
  "setup": "server pinned to core 0 (x700 --shards 1: one event loop), client pinned to core 1, loopback TCP, 4 connections",
  "bindings": $n,
  "x700": {"depth_64": $x700_64, "depth_256": $x700_256, "lookup_bytes_per_binding": $x700_bpb},
  "redis": {"depth_64": $redis_64, "depth_256": $redis_256, "used_memory": $redis_used, "keys": $redis_keys, "bytes_per_binding": $redis_bpb,
            "redis_benchmark_get_P64_c4_random_keys_mostly_miss": "$redis_benchmark"},
  "ratios": {"x700_over_redis_depth_64": $(ratio "$(rate "$x700_64")" "$(rate "$redis_64")"),
             "x700_over_redis_depth_256": $(ratio "$(rate "$x700_256")" "$(rate "$redis_256")"),
             "redis_bytes_over_x700_bytes": $(ratio "$redis_bpb" "$x700_bpb")},
  "targets": {"x700_lookups_per_s_one_core": ">= 2000000", "x700_over_redis": ">= 5x"}
}
JSON
cat "$out"
