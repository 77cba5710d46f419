#!/usr/bin/env bash
# How long a checkpoint's capture holds an event loop (step 9, "no pause
# over 1 ms"): loads N bindings offline, then for each WRITES makes that
# many binds on fresh X in a copy and times `Shard::capture` per shard
# (examples/capture_pause.rs). The capture copies every page written since
# the last checkpoint while the loop that owns the shard waits.
# Usage: perf/capture-pause.sh [N [WRITES ...]]   (default 10000000, 100000 1000000)
set -euo pipefail
cd "$(dirname "$0")/.."
n=${1:-10000000}
shift || true
writes=${*:-100000 1000000}
cargo build --release --quiet --example capture_pause
bin="${CARGO_TARGET_DIR:-target}/release"
work=$(mktemp -d "${SCALE_DIR:-/tmp}/x700-capture.XXXXXX")
trap 'rm -rf "$work"' EXIT
out="perf/results/capture-pause-$(date -u +%Y-%m-%d).txt"
echo "# perf/capture-pause.sh $n ($(date -u +%FT%TZ), commit $(git rev-parse --short HEAD), load $(cut -d' ' -f1-3 /proc/loadavg))" | tee -a "$out"
"$bin/x700" load --data "$work/base" --bindings "$n" --quiet --json >/dev/null
for w in $writes; do
  rm -rf "$work/copy" && cp -a "$work/base" "$work/copy"
  echo "bindings $n writes $w: $("$bin/examples/capture_pause" "$work/copy" "$w")" | tee -a "$out"
done
