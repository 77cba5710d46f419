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
# Control: how long one growth step takes on this file system (200
# posix_fallocate calls of 1.25 MB, the step of a 40 MB table file).
fallocate=$(python3 - "$dir" <<'PY'
import os, sys, time
path = os.path.join(sys.argv[1], "fallocate-probe")
fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_TRUNC)
size, step, times = 4096, 1_250_000, []
for _ in range(200):
    t = time.perf_counter(); os.posix_fallocate(fd, size, step); times.append(time.perf_counter() - t)
    size += step
os.close(fd); os.remove(path); times.sort()
print('{"step_bytes":%d,"median_us":%.1f,"max_us":%.1f}' % (step, times[100] * 1e6, times[-1] * 1e6))
PY
)
machine=$(printf '{"cores":%s,"cpu":"%s","kernel":"%s","load_average":"%s"}' \
  "$(nproc)" "$(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs)" "$(uname -r)" "$(cut -d' ' -f1-3 /proc/loadavg)")
printf '{"command":"perf/growth-pauses.sh %s","date":"%s","machine":%s,"load":%s,"fallocate_step":%s,"target":"no pause over 1 ms"}\n' \
  "$n" "$(date -u +%FT%TZ)" "$machine" "$result" "$fallocate" | tee "$out"
