#!/usr/bin/env bash
# Binds per second with automatic X selection (BIND_AXB_AUTO) on one event
# loop, beside plain BIND_AXB with X named, in one run against one node
# (durable: every bind is in the log, fsync'd, before its answer).
#
#   perf/auto-bind.sh [BINDS] [CONNS] [DEPTH]     (defaults 200000 4 64)
#
# Writes perf/results/<date>-auto-bind.json. Target (issue 12): >= 100,000
# automatic binds per second on one core.
set -euo pipefail
source "$(dirname "$0")/lib.sh"
perf_setup auto-bind
binds=${1:-200000}
conns=${2:-4}
depth=${3:-64}
cargo build --release --quiet --example auto_bind_bench
example="${CARGO_TARGET_DIR:-target}/release/examples/auto_bind_bench"
start_node node --shards 1
node_cpu_before=$(process_cpu_s "$node_pid")
result=$("$example" "127.0.0.1:$tcp" "$binds" "$conns" "$depth")
node_cpu_after=$(process_cpu_s "$node_pid")
out="perf/results/$(date -u +%Y-%m-%d-%H%M)-auto-bind.json"
python3 - "$result" "$node_cpu_before" "$node_cpu_after" "$(git rev-parse --short HEAD)" "$(cut -d' ' -f1-3 /proc/loadavg)" > "$out" <<'PY'
import json, sys
r = json.loads(sys.argv[1])
r["node_cpu_s"] = round(float(sys.argv[3]) - float(sys.argv[2]), 2)
r["commit"] = sys.argv[4]
r["load_average"] = sys.argv[5]
print(json.dumps(r, indent=2))
PY
cat "$out"
