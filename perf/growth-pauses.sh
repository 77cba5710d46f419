#!/usr/bin/env bash
# Measures the longest pause a growing table imposes: `x700 load` times
# every bind (hdrhistogram) while the records, cold, index and overflow files
# grow from empty to N bindings. A shard has one writer thread, so a lookup
# waits at most as long as the longest bind in front of it.
# Usage: perf/growth-pauses.sh [N]   (default 10000000)
# Writes perf/results/<date>-growth-pauses.json.
set -euo pipefail
cd "$(dirname "$0")/.."
n=${1:-10000000}
cargo build --release --quiet
dir=$(mktemp -d)
trap 'rm -rf "$dir"' EXIT
out="perf/results/$(date -u +%F)-growth-pauses.json"
result=$(target/release/x700 load --data "$dir/data" --bindings "$n" --json)
machine=$(printf '{"cores":%s,"cpu":"%s","kernel":"%s","load_average":"%s"}' \
  "$(nproc)" "$(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs)" "$(uname -r)" "$(cut -d' ' -f1-3 /proc/loadavg)")
printf '{"command":"perf/growth-pauses.sh %s","date":"%s","machine":%s,"load":%s,"target":"no pause over 1 ms"}\n' \
  "$n" "$(date -u +%FT%TZ)" "$machine" "$result" | tee "$out"
