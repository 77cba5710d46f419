#!/usr/bin/env bash
# Step 9: what the bench client itself costs, old build against this one,
# side by side against the same server. One `x700 serve --shards 1` (this
# tree's build) pinned to core 0 holds N synthetic bindings; each client
# runs pinned to core 1, closed loop at 64 x 16, 256 x 4 and 4 x 64, and
# open loop at 64 x 16 and RATE/s (the shape where the step-8 client
# saturated its core), OLD and NEW alternating in each of ROUNDS rounds
# (the first to run swaps every round). Per run: requests/s and the
# client's CPU per request, from its own report (`client_cpu` user +
# system seconds over the phase's wall time, divided by the achieved rate:
# the same arithmetic for both builds, whose reports differ); the median
# of the rounds, and NEW / OLD of the medians.
#
# Usage: perf/bench-client.sh OLD_BINARY [NEW_ARGS...]
#   OLD_BINARY  an x700 built from an earlier commit (for example main's
#               HEAD: git worktree or git archive, cargo build --release,
#               copy target/release/x700 out)
#   NEW_ARGS    extra flags for the new client only (say `--io epoll`)
# Env: N (1000000) bindings, DURATION_S (5), WARMUP_S (1), ROUNDS (3),
#      RATE (250000) for the open-loop shape.
# Writes perf/results/<date>-<time>-bench-client.json.
set -euo pipefail
old=${1:?usage: perf/bench-client.sh OLD_BINARY [NEW_ARGS...]}
shift
new_args=("$@")
old=$(realpath "$old")
cd "$(dirname "$0")/.."
n=${N:-1000000}
duration=${DURATION_S:-5}
warmup=${WARMUP_S:-1}
rounds=${ROUNDS:-3}
rate=${RATE:-250000}
cargo build --release --quiet --bin x700
target_dir=${CARGO_TARGET_DIR:-target}
[[ $target_dir = /* ]] || target_dir="$PWD/$target_dir"
new="$target_dir/release/x700"
load_before=$(cut -d" " -f1-3 /proc/loadavg)
work=$(mktemp -d)
server=""
cleanup() {
  [ -n "$server" ] && kill -TERM "$server" 2>/dev/null && wait "$server" 2>/dev/null
  rm -rf "$work"
}
trap cleanup EXIT

"$new" load --data "$work/data" --bindings "$n" --quiet --json >/dev/null
taskset -c 0 "$new" serve --data "$work/data" --listen 127.0.0.1:0 --shards 1 >"$work/serve.log" 2>&1 &
server=$!
for _ in $(seq 300); do grep -q 'tcp=' "$work/serve.log" 2>/dev/null && break; sleep 0.1; done
address=$(grep -o 'tcp=[^ ]*' "$work/serve.log" | cut -d= -f2)

# run NAME BINARY SHAPE: one client run; its report as $work/NAME.json.
run() {
  local name=$1 binary=$2 shape=$3 extra=()
  [ "$binary" = "$new" ] && extra=("${new_args[@]+"${new_args[@]}"}")
  local connections pipeline rate_args=()
  case $shape in
    open-64x16) connections=64 pipeline=16 rate_args=(--rate "$rate") ;;
    *) connections=${shape%x*} pipeline=${shape#*x} ;;
  esac
  taskset -c 1 "$binary" bench --server "$address" --bindings "$n" --connections "$connections" \
    --pipeline "$pipeline" --duration-s "$duration" --warmup-s "$warmup" "${rate_args[@]}" \
    "${extra[@]}" --quiet --json "$work/$name.json" >/dev/null ||
    echo "   ($name reported failed requests; see its JSON)" >&2
}

shapes="64x16 256x4 4x64 open-64x16"
for r in $(seq "$rounds"); do
  for shape in $shapes; do
    if [ $((r % 2)) -eq 1 ]; then order="old new"; else order="new old"; fi
    for who in $order; do
      binary=$old
      [ "$who" = new ] && binary=$new
      echo "== round $r $shape $who" >&2
      run "$who-$shape-r$r" "$binary" "$shape"
    done
  done
done

# One run's figures, the same arithmetic for both builds.
figures='{rate: .achieved_rate_per_s,
  client_cores: ((.client_cpu.user_s + .client_cpu.system_s) / .client_cpu.wall_s * 1000 | round / 1000),
  client_cpu_us_per_request: (if .achieved_rate_per_s > 0 then
    ((.client_cpu.user_s + .client_cpu.system_s - (.client_cpu.spin_s // 0)) / .client_cpu.wall_s
      / .achieved_rate_per_s * 1e6 * 1000 | round / 1000) else null end),
  p50_us: .latency_us.p50, p99_us: .latency_us.p99,
  failed: .requests_failed, saturated: .client_cpu.saturated}'
shapes_json='{}'
for shape in $shapes; do
  per_build='{}'
  for who in old new; do
    files=()
    for r in $(seq "$rounds"); do files+=("$work/$who-$shape-r$r.json"); done
    build=$(jq -s "map($figures) | {rounds: .,
      median_rate: (map(.rate) | sort | .[length / 2 | floor]),
      median_client_cpu_us_per_request: (map(.client_cpu_us_per_request) | sort | .[length / 2 | floor]),
      median_p50_us: (map(.p50_us) | sort | .[length / 2 | floor])}" "${files[@]}")
    per_build=$(jq -n --argjson acc "$per_build" --argjson b "$build" --arg who "$who" '$acc + {($who): $b}')
  done
  shapes_json=$(jq -n --argjson acc "$shapes_json" --argjson s "$per_build" --arg shape "$shape" \
    '$acc + {($shape): ($s + {new_over_old: {
       rate: (($s.new.median_rate / $s.old.median_rate * 1000 | round) / 1000),
       client_cpu_per_request: (($s.new.median_client_cpu_us_per_request / $s.old.median_client_cpu_us_per_request * 1000 | round) / 1000)}})}')
done
out="perf/results/$(date -u +%F-%H%M)-bench-client.json"
mkdir -p perf/results
jq -n --argjson shapes "$shapes_json" \
  --arg command "perf/bench-client.sh $old ${new_args[*]-} (N=$n DURATION_S=$duration WARMUP_S=$warmup ROUNDS=$rounds RATE=$rate)" \
  --arg date "$(date -u +%FT%TZ)" --arg commit "$(git rev-parse --short HEAD)" \
  --arg cpu "$(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs)" --argjson cores "$(nproc)" \
  --arg kernel "$(uname -r)" --arg load_before "$load_before" --arg load "$(cut -d' ' -f1-3 /proc/loadavg)" \
  '{command: $command, date: $date, commit: $commit,
    machine: {cores: $cores, cpu: $cpu, kernel: $kernel, load_average_before: $load_before, load_average_after: $load},
    setup: "x700 serve --shards 1 (this tree) pinned to core 0 with N bindings loaded offline; each client pinned to core 1, old and new alternating, closed loop unless open-; lookups uniform over all N, every answer checked. client_cpu_us_per_request: (user + system - open-loop idle spin) / wall / achieved rate, from each client report",
    shapes: $shapes}' >"$out"
echo "wrote $out" >&2
jq '.shapes | map_values({old: {rate: .old.median_rate, cpu_us: .old.median_client_cpu_us_per_request, p50: .old.median_p50_us},
  new: {rate: .new.median_rate, cpu_us: .new.median_client_cpu_us_per_request, p50: .new.median_p50_us}, new_over_old})' "$out"
