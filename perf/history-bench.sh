#!/usr/bin/env bash
# Step-8 benchmark: the traceability history at RECORDS records (default
# 100,000,000). Fills a store with realistic binding lives through
# `examples/history_bench.rs` (shape in its doc comment), reopens it, and
# times 10,000 random `at` and 10,000 random `order` queries: p50/p99/max,
# plus the append rate, the longest append call and bytes per life on disk.
# The page cache is not dropped before the queries (the store was just
# written: a warm node). Disk needed: about 135 bytes per life, 2.2 records
# per life: ~6.2 GB at 100M records, ~620 MB at 10M. The store goes in
# $HISTORY_BENCH_DIR (default /var/tmp) and is deleted afterwards.
# Usage: perf/history-bench.sh [RECORDS]
# Writes perf/results/<date>-history-bench-<RECORDS>.json.
set -euo pipefail
cd "$(dirname "$0")/.."
records=${1:-100000000}
cargo build --release --quiet --example history_bench
work=$(mktemp -d -p "${HISTORY_BENCH_DIR:-/var/tmp}")
trap 'rm -rf "$work"' EXIT
out="perf/results/$(date -u +%F)-history-bench-$records.json"
mkdir -p perf/results
commit=$(git rev-parse --short HEAD)
"${CARGO_TARGET_DIR:-target}/release/examples/history_bench" "$records" "$work/history" \
  | jq --arg commit "$commit" --arg cmd "perf/history-bench.sh $records" \
       '. + {commit: $commit, command: $cmd, machine: "2 vCPU shared with other jobs"}' > "$out"
cat "$out"
