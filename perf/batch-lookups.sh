#!/usr/bin/env bash
# In-process batch lookups (`examples/batch_lookups.rs`: N synthetic AXB
# bindings, then `Store::lookup_batch` over 1M random hits for SECONDS) of
# this tree, beside an older build of the same example when one is given,
# rounds interleaved (old new old new ...), pinned to core 1, the store
# reopened as the node serves it (REOPEN 1: files dropped from the page
# cache, mapped again). Then instructions per batch lookup under callgrind
# (200K bindings, 4 s), for each build: `lookup_batch`'s inclusive count
# divided by the lookups the run made.
#
# Usage: perf/batch-lookups.sh [OLD_EXAMPLE_BINARY]
#   OLD_EXAMPLE_BINARY: target/release/examples/batch_lookups of an older
#   commit, e.g. git worktree add /tmp/old e62849d~1 &&
#   (cd /tmp/old && cargo build --release --example batch_lookups)
# Env: N (10000000), SECONDS_PER_RUN (5), ROUNDS (3), BATCH (256),
#      CALLGRIND (1; 0 skips the instruction count).
# Writes perf/results/<date>-batch-lookups.txt.
set -euo pipefail
cd "$(dirname "$0")/.."
old=${1:+$(realpath "$1")}
n=${N:-10000000}
seconds=${SECONDS_PER_RUN:-5}
rounds=${ROUNDS:-3}
batch=${BATCH:-256}
cargo build --release --quiet --example batch_lookups
new=$PWD/target/release/examples/batch_lookups
out=perf/results/$(date -u +%Y-%m-%d)-batch-lookups.txt
builds=(new)
[ -n "$old" ] && builds=(old new)
{
  echo "command: perf/batch-lookups.sh ${1:-}  commit=$(git rev-parse --short HEAD)"
  echo "date: $(date -u +%FT%TZ)  load: $(cut -d' ' -f1-3 /proc/loadavg)"
  for round in $(seq "$rounds"); do
    for build in "${builds[@]}"; do
      binary=$new
      [ "$build" = old ] && binary=$old
      rate=$(taskset -c 1 "$binary" "$n" "$seconds" "$batch" 1 | sed 's/.*"lookups_per_s":\([0-9]*\).*/\1/')
      echo "round $round $build lookups_per_s=$rate"
    done
  done
  if [ "${CALLGRIND:-1}" = 1 ]; then
    command -v valgrind >/dev/null || { apt-get update -qq && apt-get install -y -qq valgrind >/dev/null; }
    work=$(mktemp -d)
    for build in "${builds[@]}"; do
      binary=$new
      [ "$build" = old ] && binary=$old
      lookups=$(valgrind --tool=callgrind --callgrind-out-file="$work/$build.out" "$binary" 200000 4 "$batch" 0 \
        2>/dev/null | sed 's/.*"lookups":\([0-9]*\).*/\1/')
      total=$(cd "$work" && callgrind_annotate --inclusive=yes "$build.out" 2>/dev/null |
        awk '/batch.rs:x700::store::batch::<impl x700::store::shard_set::ShardSet>::lookup_batch \[/ && !found {gsub(",", "", $1); print $1; found = 1}')
      echo "callgrind $build lookups=$lookups lookup_batch_instructions=$total per_lookup=$(echo "scale=1; $total / $lookups" | bc)"
    done
    rm -rf "$work"
  fi
} | tee "$out"
echo "written: $out"
