#!/usr/bin/env bash
# x700 versus Redis, side by side in one run, through `x700 bench` (the same
# generator, bindings, key order, connections and pipelining for both):
# for each size N, Redis (plain keys, then packed hashes) and x700 (one
# event loop: --shards 1) are each pinned to core 0, the client to core 1,
# loaded with N synthetic AXB bindings over the wire, then measured:
#   - closed loop, pipelined: 4 connections x 64 and x 256 in flight;
#   - a sweep of open-loop rates (fractions of each one's own peak), drawn
#     as one latency-versus-throughput chart per N (x700 solid, Redis dashed);
#   - x700 open loop at half of its own peak (the p99 target), on the same
#     4 connections and on one;
#   - memory per binding: Redis INFO used_memory growth / N per layout,
#     x700 `stats --json` bytes_per_binding after the node stops.
# Installs redis-server (and jq) with apt-get if missing; Redis runs with
# persistence off. Everything it starts it stops, by process id.
#
# Usage: perf/compare-redis.sh [N ...]        (default: 1000000 10000000)
# Env:   DURATION_S (10) seconds per closed/open figure, WARMUP_S (2),
#        SWEEP_DURATION_S (3) per sweep rate, REDIS_PORT (6390).
# Writes perf/results/<date>-compare-redis.json and
#        perf/results/<date>-compare-redis-<N>.svg.
set -euo pipefail
cd "$(dirname "$0")/.."
sizes=("$@")
[ ${#sizes[@]} -eq 0 ] && sizes=(1000000 10000000)
duration=${DURATION_S:-10}
warmup=${WARMUP_S:-2}
sweep_duration=${SWEEP_DURATION_S:-3}
redis_port=${REDIS_PORT:-6390}
# Open-loop figures: fractions of the target's own closed-loop peak.
sweep_fractions="0.1 0.25 0.5 0.75 0.9"

need=()
command -v redis-server >/dev/null || need+=(redis-server)
command -v jq >/dev/null || need+=(jq)
if [ ${#need[@]} -gt 0 ]; then
  apt-get update -qq && apt-get install -y -qq "${need[@]}" >/dev/null
fi
cargo build --release --quiet --bin x700
x700=$PWD/target/release/x700
day=$(date -u +%F)
results=perf/results
mkdir -p "$results"
load_before=$(cut -d" " -f1-3 /proc/loadavg)
work=$(mktemp -d)
pids=()
cleanup() {
  for pid in "${pids[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
  for pid in "${pids[@]}"; do wait "$pid" 2>/dev/null || true; done
  rm -rf "$work"
}
trap cleanup EXIT

# Stops one process this script started (SIGTERM, then waits).
stop() {
  kill -TERM "$1" 2>/dev/null || true
  wait "$1" 2>/dev/null || true
  local kept=()
  for pid in "${pids[@]}"; do [ "$pid" != "$1" ] && kept+=("$pid"); done
  pids=("${kept[@]+"${kept[@]}"}")
}

# bench NAME ARGS...: runs the client on core 1, keeps its JSON as
# $work/NAME.json. A run with failed requests still records its figures.
bench() {
  local name=$1
  shift
  echo "== $name" >&2
  taskset -c 1 "$x700" bench --quiet --json "$work/$name.json" "$@" >&2 ||
    echo "   ($name reported failed requests; see its JSON)" >&2
}

figure() { jq -r "$2" "$work/$1.json"; }

# The part of a run's report kept in the results file.
summary='{mode, target_rate_per_s, achieved_rate_per_s, requests_ok, requests_failed,
  wrong_answers, timeouts, latency_us, by_status, client_cpu, client_send_lag_us,
  client_fell_behind, command: .parameters.command}'

rates_of() { # rates_of PEAK: the sweep rates, comma-separated
  local peak=$1 out=() f
  for f in $sweep_fractions; do out+=("$(awk -v p="$peak" -v f="$f" 'BEGIN{printf "%d", p*f}')"); done
  local IFS=,
  echo "${out[*]}"
}

start_redis() {
  taskset -c 0 redis-server --port "$redis_port" --bind 127.0.0.1 --save '' --appendonly no \
    --daemonize no --hash-max-listpack-entries 256 >"$work/redis.log" 2>&1 &
  pids+=($!)
  redis_pid=$!
  for _ in $(seq 100); do redis-cli -p "$redis_port" ping >/dev/null 2>&1 && return; sleep 0.1; done
  echo "redis did not start" >&2
  exit 1
}

used_memory() { redis-cli -p "$redis_port" info memory | sed -n 's/^used_memory:\([0-9]*\).*/\1/p'; }

all_sizes='{}'
for n in "${sizes[@]}"; do
  echo "### $n bindings" >&2
  common=(--connections 4 --duration-s "$duration" --warmup-s "$warmup" --bindings "$n")
  # ---- Redis, both layouts ----
  redis_json='{}'
  compare=()
  for layout in keys hash; do
    start_redis
    baseline=$(used_memory)
    redis="--target=redis://127.0.0.1:$redis_port"
    bench "redis-$layout-$n-preload" "$redis" --redis-layout "$layout" --preload "$n" --requests 0 --warmup-s 0
    sync
    used=$(used_memory)
    keys=$(redis-cli -p "$redis_port" dbsize | tr -d '\r')
    bench "redis-$layout-$n-p64" "$redis" --redis-layout "$layout" "${common[@]}" --pipeline 64
    bench "redis-$layout-$n-p256" "$redis" --redis-layout "$layout" "${common[@]}" --pipeline 256
    peak=$(jq -s 'map(.achieved_rate_per_s) | max' "$work/redis-$layout-$n-p64.json" "$work/redis-$layout-$n-p256.json")
    bench "redis-$layout-$n-sweep" "$redis" --redis-layout "$layout" --connections 4 --pipeline 256 \
      --bindings "$n" --warmup-s 0.5 --duration-s "$sweep_duration" --sweep "$(rates_of "$peak")"
    compare+=(--chart-compare "redis $layout=$work/redis-$layout-$n-sweep.json")
    stop "$redis_pid"
    redis_json=$(jq -n --argjson acc "$redis_json" --arg layout "$layout" \
      --argjson used "$used" --argjson baseline "$baseline" --argjson keys "$keys" --argjson n "$n" \
      --slurpfile preload "$work/redis-$layout-$n-preload.json" \
      --slurpfile p64 "$work/redis-$layout-$n-p64.json" \
      --slurpfile p256 "$work/redis-$layout-$n-p256.json" \
      --slurpfile sweep "$work/redis-$layout-$n-sweep.json" \
      "\$acc + {(\$layout): {
         preload: \$preload[0].preload,
         used_memory: \$used, used_memory_empty: \$baseline, keys: \$keys,
         bytes_per_binding: (((\$used - \$baseline) / \$n * 10 | round) / 10),
         hash_buckets: \$sweep[0].target.hash_buckets,
         closed_4x64: (\$p64[0] | $summary), closed_4x256: (\$p256[0] | $summary),
         sweep: [\$sweep[0].sweep[] | $summary]}}")
  done

  # ---- x700: one event loop on core 0 ----
  data="$work/x700-$n"
  taskset -c 0 "$x700" serve --data "$data" --listen 127.0.0.1:0 --shards 1 >"$work/serve.log" 2>&1 &
  pids+=($!)
  serve_pid=$!
  for _ in $(seq 300); do grep -q 'tcp=' "$work/serve.log" 2>/dev/null && break; sleep 0.1; done
  address=$(grep -o 'tcp=[^ ]*' "$work/serve.log" | cut -d= -f2)
  bench "x700-$n-preload" --server "$address" --preload "$n" --requests 0 --warmup-s 0
  # The preload left ~110 bytes per binding of dirty mapped pages; let the
  # kernel write them back now rather than during the lookup figures.
  sync
  bench "x700-$n-p64" --server "$address" "${common[@]}" --pipeline 64
  bench "x700-$n-p256" --server "$address" "${common[@]}" --pipeline 256
  peak=$(jq -s 'map(.achieved_rate_per_s) | max' "$work/x700-$n-p64.json" "$work/x700-$n-p256.json")
  half=$(awk -v p="$peak" 'BEGIN{printf "%d", p/2}')
  bench "x700-$n-open-half" --server "$address" "${common[@]}" --pipeline 256 --rate "$half"
  # The same rate on one connection: ~20 requests per segment instead of ~5.
  bench "x700-$n-open-half-1conn" --server "$address" --bindings "$n" --duration-s "$duration" \
    --warmup-s "$warmup" --connections 1 --pipeline 1024 --rate "$half"
  chart="$results/$day-compare-redis-$n.svg"
  bench "x700-$n-sweep" --server "$address" --connections 4 --pipeline 256 --bindings "$n" \
    --warmup-s 0.5 --duration-s "$sweep_duration" --sweep "$(rates_of "$peak")" \
    --chart "$chart" "${compare[@]}"
  stop "$serve_pid"
  "$x700" stats --data "$data" --json >"$work/x700-$n-stats.json"
  rm -rf "$data"

  all_sizes=$(jq -n --argjson acc "$all_sizes" --arg n "$n" --argjson redis "$redis_json" \
    --arg chart "$chart" \
    --slurpfile stats "$work/x700-$n-stats.json" \
    --slurpfile preload "$work/x700-$n-preload.json" \
    --slurpfile p64 "$work/x700-$n-p64.json" \
    --slurpfile p256 "$work/x700-$n-p256.json" \
    --slurpfile half "$work/x700-$n-open-half.json" \
    --slurpfile half1 "$work/x700-$n-open-half-1conn.json" \
    --slurpfile sweep "$work/x700-$n-sweep.json" \
    '($p64[0].achieved_rate_per_s) as $x64 | ($p256[0].achieved_rate_per_s) as $x256
     | ($stats[0].bytes_per_binding) as $xb
     | def ratio(a; b): if b > 0 then ((a / b * 100 | round) / 100) else null end;
     $acc + {($n): {
       x700: {preload: $preload[0].preload, bytes_per_binding: $xb,
              bindings_live: $stats[0].bindings_live,
              closed_4x64: ($p64[0] | '"$summary"'), closed_4x256: ($p256[0] | '"$summary"'),
              open_half_peak: ($half[0] | '"$summary"'),
              open_half_peak_1_connection: ($half1[0] | '"$summary"'),
              sweep: [$sweep[0].sweep[] | '"$summary"']},
       redis: $redis,
       chart: $chart,
       ratios: {
         lookups_per_core_x700_over_redis_keys_4x64: ratio($x64; $redis.keys.closed_4x64.achieved_rate_per_s),
         lookups_per_core_x700_over_redis_keys_4x256: ratio($x256; $redis.keys.closed_4x256.achieved_rate_per_s),
         lookups_per_core_x700_over_redis_hash_4x64: ratio($x64; $redis.hash.closed_4x64.achieved_rate_per_s),
         lookups_per_core_x700_over_redis_hash_4x256: ratio($x256; $redis.hash.closed_4x256.achieved_rate_per_s),
         memory_redis_keys_over_x700: ratio($redis.keys.bytes_per_binding; $xb),
         memory_redis_hash_over_x700: ratio($redis.hash.bytes_per_binding; $xb)},
       targets: {
         lookups_per_core_over_redis: ">= 5x (10M, pipelined)",
         x700_p99_us_open_loop_at_half_peak: "< 100",
         x700_p99_us_measured: $half[0].latency_us.p99,
         x700_p99_us_measured_1_connection: $half1[0].latency_us.p99,
         memory_vs_redis_keys: ">= 3.5x smaller",
         memory_vs_redis_hash: ">= 1.3x smaller"}}}')
done

out="$results/$day-compare-redis.json"
jq -n --argjson sizes "$all_sizes" \
  --arg command "perf/compare-redis.sh ${sizes[*]} (DURATION_S=$duration WARMUP_S=$warmup SWEEP_DURATION_S=$sweep_duration)" \
  --arg date "$(date -u +%FT%TZ)" --arg commit "$(git rev-parse --short HEAD)" \
  --arg cpu "$(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs)" \
  --arg kernel "$(uname -r)" --argjson cores "$(nproc)" --arg load "$(cut -d' ' -f1-3 /proc/loadavg)" --arg load_before "$load_before" \
  --arg redis "$(redis-server --version | head -1)" \
  '{command: $command, date: $date, commit: $commit,
    machine: {cores: $cores, cpu: $cpu, kernel: $kernel, load_average_before: $load_before, load_average_after: $load},
    setup: ("each server pinned to core 0 (x700 serve --shards 1: one event loop; " + $redis
      + ", --save \"\" --appendonly no --hash-max-listpack-entries 256), the x700 bench client pinned to core 1, loopback TCP;"
      + " lookups are uniform hits over all N loaded bindings (no repeated query set), every answer checked;"
      + " sync after each preload"),
    sizes: $sizes}' >"$out"
echo "wrote $out" >&2
jq '.sizes | map_values({ratios, x700_p99_half_peak: .targets.x700_p99_us_measured,
  x700_4x64: .x700.closed_4x64.achieved_rate_per_s, redis_keys_4x64: .redis.keys.closed_4x64.achieved_rate_per_s,
  x700_bytes: .x700.bytes_per_binding, redis_keys_bytes: .redis.keys.bytes_per_binding,
  redis_hash_bytes: .redis.hash.bytes_per_binding})' "$out"
