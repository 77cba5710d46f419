#!/usr/bin/env bash
# Durable bind throughput of two x700 builds side by side in one run: both
# nodes up at once (one event loop each), the same client (this tree's
# `x700 bench`, closed loop, binds only), rounds interleaved (A B A B ...),
# the median of each kept. Shows what a change to the write path costs
# (step 8: the registry checks, the allocator's bookkeeping and the
# traceability history appended on every apply).
#
# Usage: perf/binds-before-after.sh OLD_X700 [ROUNDS]     (default 3)
# Env: DURATION_S (per run, default 5), CONNECTIONS (4), PIPELINE (64).
# Writes perf/results/<date>-binds-before-after.json and prints a summary.
set -euo pipefail
source "$(dirname "$0")/lib.sh"
old=${1:?usage: perf/binds-before-after.sh OLD_X700 [ROUNDS]}
rounds=${2:-3}
perf_setup binds-before-after
new_bin=$bin
bin=$old start_node old --shards 1
old_tcp=$tcp old_pid=$node_pid
bin=$new_bin start_node new --shards 1
new_tcp=$tcp new_pid=$node_pid
runs=()
for round in $(seq "$rounds"); do
  for which in old new; do
    addr=$([ "$which" = old ] && echo "$old_tcp" || echo "$new_tcp")
    json="$dir/$which-$round.json"
    "$new_bin" bench --server "127.0.0.1:$addr" --mix bind=1 \
      --duration-s "${DURATION_S:-5}" --warmup-s 1 \
      --connections "${CONNECTIONS:-4}" --pipeline "${PIPELINE:-64}" \
      --quiet --json "$json" >/dev/null
    runs+=("$which=$json")
  done
done
out="perf/results/$(date -u +%Y-%m-%d-%H%M)-binds-before-after.json"
python3 - "$out" "$old" "$(git rev-parse --short HEAD)" "$(cut -d' ' -f1-3 /proc/loadavg)" "${runs[@]}" <<'PY'
import json, statistics, sys
out, old, commit, load = sys.argv[1:5]
rates = {"old": [], "new": []}
for run in sys.argv[5:]:
    which, path = run.split("=", 1)
    report = json.load(open(path))
    rate = report.get("achieved_rate_per_s") or report.get("throughput_per_s") or report.get("rate_per_s")
    if rate is None:
        for key, value in report.items():
            if "per_s" in key and isinstance(value, (int, float)):
                rate = value
                break
    rates[which].append(rate)
summary = {
    "old_binary": old, "commit": commit, "load_average": load,
    "old_binds_per_s": rates["old"], "new_binds_per_s": rates["new"],
    "old_median": statistics.median(rates["old"]), "new_median": statistics.median(rates["new"]),
}
summary["new_over_old"] = round(summary["new_median"] / summary["old_median"], 3)
json.dump(summary, open(out, "w"), indent=2)
print(json.dumps(summary, indent=2))
PY
echo "written $out"
