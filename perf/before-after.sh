#!/usr/bin/env bash
# Lookup throughput of two x700 builds side by side in one run, on
# read-only connections (switches): the same client (this tree's
# `x700 bench`), the same bindings, both servers up at once, each one event
# loop pinned to core 1 (only the one measured is busy), the client pinned
# to core 0, rounds interleaved (A B A B ...) and the median kept, plus the
# machine's ceiling (`../shared/limits/ceiling.sh`, work=load) in the same
# run. Step 5 uses it to show that read-your-writes costs switches nothing.
#
# Usage: perf/before-after.sh OLD_X700 [N]      (N bindings, default 1000000)
#   OLD_X700: an older build's binary, e.g. from
#     git worktree add /tmp/old 9a72807 && (cd /tmp/old && cargo build --release)
# Env: SHAPES ("4x64 4x256"), REPEATS (5), DURATION_S (5), WARMUP_S (1).
# Writes perf/results/<date>-before-after.json (every round) and prints a
# summary with the exact commits.
set -euo pipefail
cd "$(dirname "$0")/.."
old=$(realpath "$1")
n=${2:-1000000}
shapes=${SHAPES:-"4x64 4x256"}
repeats=${REPEATS:-5}
duration=${DURATION_S:-5}
warmup=${WARMUP_S:-1}
command -v jq >/dev/null || { apt-get update -qq && apt-get install -y -qq jq >/dev/null; }
cargo build --release --quiet --bin x700
new=$PWD/target/release/x700
work=$(mktemp -d)
pids=()
cleanup() {
  for pid in "${pids[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
  for pid in "${pids[@]}"; do wait "$pid" 2>/dev/null || true; done
  rm -rf "$work"
}
trap cleanup EXIT
load_before=$(cut -d" " -f1-3 /proc/loadavg)

declare -A address
for build in old new; do
  binary=$old
  [ "$build" = new ] && binary=$new
  # Offline load: the same synthetic bindings (seed 1) in each directory.
  "$binary" load --data "$work/$build" --bindings "$n" --seed 1 --quiet >/dev/null 2>&1 ||
    "$binary" load --data "$work/$build" --bindings "$n" --seed 1 >/dev/null
  taskset -c 1 "$binary" serve --data "$work/$build" --listen 127.0.0.1:0 --shards 1 \
    >"$work/$build.log" 2>&1 &
  pids+=($!)
  for _ in $(seq 300); do grep -q 'tcp=' "$work/$build.log" 2>/dev/null && break; sleep 0.1; done
  address[$build]=$(grep -o 'tcp=[^ ]*' "$work/$build.log" | cut -d= -f2)
done

rounds='[]'
for shape in $shapes; do
  c=${shape%x*}
  d=${shape#*x}
  for r in $(seq "$repeats"); do
    for build in old new; do
      echo "== $build $shape round $r" >&2
      taskset -c 0 "$new" bench --quiet --server "${address[$build]}" --bindings "$n" \
        --connections "$c" --pipeline "$d" --duration-s "$duration" --warmup-s "$warmup" \
        --json "$work/run.json" >&2 || echo "   (failed requests: see JSON)" >&2
      rounds=$(jq --arg b "$build" --arg s "$shape" --argjson r "$r" \
        '. + [{build: $b, shape: $s, round: $r, achieved_rate_per_s: $run[0].achieved_rate_per_s,
               requests_failed: $run[0].requests_failed, wrong_answers: $run[0].wrong_answers,
               client_cpu: $run[0].client_cpu}]' \
        --slurpfile run "$work/run.json" <<<"$rounds")
    done
  done
done
ceiling=$(bash ../shared/limits/ceiling.sh $shapes 2>/dev/null | grep 'work=load' || true)

day=$(date -u +%F)
out=perf/results/$day-$(date -u +%H%M)-before-after.json
mkdir -p perf/results
jq -n --argjson rounds "$rounds" --arg old "$("$old" --version 2>/dev/null || echo "$old")" \
  --arg commit "$(git rev-parse --short HEAD)" --arg n "$n" --arg ceiling "$ceiling" \
  --arg load_before "$load_before" --arg load_after "$(cut -d" " -f1-3 /proc/loadavg)" \
  --arg cpu "$(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs)" \
  '{bindings: ($n | tonumber), new_commit: $commit, old_binary: $old, cpu: $cpu,
    load_before: $load_before, load_after: $load_after, ceiling: $ceiling, rounds: $rounds}' >"$out"
echo "bindings=$n new=$(git rev-parse --short HEAD) rounds=$repeats x ${duration}s, load $load_before"
for shape in $shapes; do
  jq -r --arg s "$shape" '
    def median: sort | .[length / 2 | floor];
    [.rounds[] | select(.shape == $s)] as $r
    | ($r | map(select(.build == "old") | .achieved_rate_per_s) | median) as $old
    | ($r | map(select(.build == "new") | .achieved_rate_per_s) | median) as $new
    | [range(0; $r | length; 2) | ($r[. + 1].achieved_rate_per_s / $r[.].achieved_rate_per_s)]
      as $ratios
    | "\($s): old median \($old | floor)/s, new median \($new | floor)/s, new/old \(($new / $old) * 1000 | round / 1000); per round new/old \($ratios | map(. * 1000 | round / 1000)); client cores used \([$r[] | .client_cpu.cores_used // "?"] | map(tostring) | join(","))"' "$out"
done
echo "$ceiling"
echo "written: $out"
