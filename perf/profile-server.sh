#!/usr/bin/env bash
# Where a server core's time goes under pipelined wire lookups: N bindings,
# `x700 serve --shards 1` pinned to core 0, `x700 bench` pinned to core 1
# (closed loop, 4 connections x depth 64), `perf record -e cpu-clock` on the server
# for the run, then the top symbols. Needs linux-perf (installed with
# apt-get if missing); cpu-clock sampling works where hardware counters do
# not. Usage: perf/profile-server.sh [N] [SECONDS]  (defaults 1000000, 6)
# Writes perf/results/<date>-server-profile.txt.
set -euo pipefail
cd "$(dirname "$0")/.."
n=${1:-1000000}
seconds=${2:-6}
command -v perf >/dev/null || apt-get install -y linux-perf >/dev/null
cargo build --release --quiet --bin x700
work=$(mktemp -d)
server=""
cleanup() { [ -n "$server" ] && kill -TERM "$server" 2>/dev/null; wait 2>/dev/null || true; rm -rf "$work"; }
trap cleanup EXIT
target/release/x700 load --data "$work/data" --bindings "$n" --quiet --json >/dev/null
taskset -c 0 target/release/x700 serve --data "$work/data" --listen 127.0.0.1:0 --shards 1 > "$work/serve.log" 2>&1 &
server=$!
for _ in $(seq 100); do grep -q 'tcp=' "$work/serve.log" 2>/dev/null && break; sleep 0.1; done
address=$(grep -o 'tcp=[^ ]*' "$work/serve.log" | cut -d= -f2)
perf record -e cpu-clock -F 4000 -p "$server" -o "$work/perf.data" -- sleep "$seconds" >/dev/null 2>&1 &
recorder=$!
load=$(taskset -c 1 target/release/x700 bench --server "$address" --bindings "$n" --connections 4 \
  --pipeline 64 --duration-s "$seconds" --warmup-s 0 --quiet | grep -m1 achieved | xargs)
wait "$recorder" || true
out="perf/results/$(date -u +%F)-server-profile.txt"
{
  echo "command: perf/profile-server.sh $n $seconds"
  echo "date: $(date -u +%FT%TZ)  machine: $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs), $(uname -r)"
  echo "load: $load"
  echo "server samples by symbol ([k] = kernel):"
  perf report -i "$work/perf.data" --no-children --sort symbol 2>/dev/null | grep '%' | head -30
} | tee "$out"
