#!/usr/bin/env bash
# Runs the allocation simulator (src/pool/sim.rs through
# examples/alloc_sim.rs) and records it: the time series in
# perf/results/<date>-alloc-sim.csv (per area and `all`, every 5 simulated
# minutes: live pairs, X in use, Delta, lower bound, ratios), the summary in
# perf/results/<date>-alloc-sim.json, and the printed table with the
# command, commit and machine in perf/results/<date>-alloc-sim.txt.
#
# Usage: perf/alloc-sim.sh [--days N] [--seed S] [--cool-off S]
#                          [--max-pairs N] [--scale F]
# Example: perf/alloc-sim.sh --days 2 --cool-off 300
# Set X700_SIM_NAME to record under another name (default alloc-sim).
set -euo pipefail

cd "$(dirname "$0")/.."
results=perf/results
mkdir -p "$results"
name="${X700_SIM_NAME:-alloc-sim}"
prefix="$results/$(date -u +%Y-%m-%d)-$name"
command="cargo run --release --example alloc_sim -- $* --out $prefix"
echo "running: $command" >&2
load_before=$(cut -d' ' -f1-3 /proc/loadavg)
table=$(cargo run --release --quiet --example alloc_sim -- "$@" --out "$prefix")
load_after=$(cut -d' ' -f1-3 /proc/loadavg)
{
    echo "command: $command"
    echo "commit: $(git rev-parse --short HEAD)$(git diff --quiet || echo ' (with local changes)')"
    echo "finished: $(date -u +%Y-%m-%dT%H:%M:%SZ)"
    echo "machine: $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ *//')"
    echo "load before/after: $load_before / $load_after"
    echo
    echo "$table"
} > "$prefix.txt"
cat "$prefix.txt"
