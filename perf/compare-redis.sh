#!/usr/bin/env bash
# x700 versus Redis, side by side in one run, through `x700 bench` (the same
# generator, bindings, key order, connections and pipelining for both).
# For each size N: Redis with plain keys, Redis with packed hashes and x700
# (one event loop: --shards 1) run at once, each pinned to core 0 (only the
# one being measured is busy), the client pinned to core 1. Each is loaded
# with N synthetic AXB bindings over the wire, then:
#   - closed loop, pipelined, 4 connections x 64 and x 256 in flight, the
#     three targets interleaved and repeated REPEATS times (the machine is
#     shared and noisy: the median run is kept, and the ratio of each
#     interleaved round);
#   - a sweep of open-loop rates (fractions of each one's own peak), drawn
#     as one latency-versus-throughput chart per N (one colour per target);
#   - x700 open loop at half of its own peak (the p99 target), on the same
#     4 connections and on one;
#   - memory per binding: Redis INFO used_memory growth / N per layout,
#     x700 `stats --json` bytes_per_binding after the node stops;
#   - Redis's own figure beside ours, so our Redis driver never understates
#     Redis: `redis-benchmark -t get -P DEPTH -c 4 -r N` (DEPTH 64 and 256,
#     pinned to core 1) on a third Redis of the same build, holding keys of
#     redis-benchmark's own pattern (`key:__rand_int__`, filled first with
#     `-t set -r N -n 2N -P 64`: about 86% of the GETs hit), interleaved
#     with the other targets in every round. The ratio that counts divides
#     x700 by the faster of the two Redis figures, round by round
#     (`x700_over_fastest_redis_4xDEPTH`).
# Lookups are uniform hits over all N bindings. Installs redis-server (and
# jq) with apt-get if missing; Redis runs with persistence off. Everything
# it starts it stops, by process id.
#
# Usage: perf/compare-redis.sh [N ...]        (default: 1000000 10000000)
# Env:   DURATION_S (10) seconds per closed/open figure, WARMUP_S (2),
#        REPEATS (3), SWEEP_DURATION_S (3) per sweep rate, REDIS_PORT (6390,
#        and the next two ports), REDIS_BENCHMARK_REQUESTS (GETs per
#        redis-benchmark run; default 8 N, at least 2M).
# Writes perf/results/<date>-compare-redis.json and
#        perf/results/<date>-compare-redis-<N>.svg.
set -euo pipefail
cd "$(dirname "$0")/.."
sizes=("$@")
[ ${#sizes[@]} -eq 0 ] && sizes=(1000000 10000000)
duration=${DURATION_S:-10}
warmup=${WARMUP_S:-2}
repeats=${REPEATS:-3}
sweep_duration=${SWEEP_DURATION_S:-3}
port_keys=${REDIS_PORT:-6390}
port_hash=$((port_keys + 1))
port_own=$((port_keys + 2))
# Open-loop figures: fractions of the target's own closed-loop peak.
sweep_fractions="0.1 0.25 0.5 0.75 0.9"

need=()
command -v redis-server >/dev/null || need+=(redis-server)
command -v jq >/dev/null || need+=(jq)
command -v redis-benchmark >/dev/null || need+=(redis-tools)
if [ ${#need[@]} -gt 0 ]; then
  apt-get update -qq && apt-get install -y -qq "${need[@]}" >/dev/null
fi
cargo build --release --quiet --bin x700
target_dir=${CARGO_TARGET_DIR:-target}
[[ $target_dir = /* ]] || target_dir="$PWD/$target_dir"
x700=$target_dir/release/x700
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

# redis_benchmark NAME DEPTH: redis-benchmark's own GET figure against the
# third Redis, 4 connections x DEPTH pipelined; its rate as $work/NAME.rps.
redis_benchmark() {
  local name=$1 depth=$2
  echo "== $name (redis-benchmark)" >&2
  taskset -c 1 redis-benchmark -p "$port_own" -c 4 -P "$depth" -n "$rb_requests" -r "$n" -t get --csv \
    >"$work/$name.csv" 2>/dev/null || true
  awk -F'"' '$2 == "GET" {print $4}' "$work/$name.csv" | head -1 >"$work/$name.rps"
  [ -s "$work/$name.rps" ] || echo 0 >"$work/$name.rps"
}

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

start_redis() { # start_redis PORT: a pinned Redis without persistence
  taskset -c 0 redis-server --port "$1" --bind 127.0.0.1 --save '' --appendonly no \
    --daemonize no --hash-max-listpack-entries 256 >"$work/redis-$1.log" 2>&1 &
  pids+=($!)
  for _ in $(seq 100); do redis-cli -p "$1" ping >/dev/null 2>&1 && return; sleep 0.1; done
  echo "redis did not start" >&2
  exit 1
}

used_memory() { redis-cli -p "$1" info memory | sed -n 's/^used_memory:\([0-9]*\).*/\1/p'; }

# median NAME...: the run (JSON) with the median achieved rate.
median() {
  local files=()
  for name in "$@"; do files+=("$work/$name.json"); done
  jq -s 'sort_by(.achieved_rate_per_s) | .[(length / 2 | floor)]' "${files[@]}"
}

all_sizes='{}'
for n in "${sizes[@]}"; do
  echo "### $n bindings" >&2
  # ---- start everything, load everything ----
  start_redis "$port_keys"
  redis_keys_pid=${pids[-1]}
  start_redis "$port_hash"
  redis_hash_pid=${pids[-1]}
  start_redis "$port_own"
  redis_own_pid=${pids[-1]}
  rb_requests=${REDIS_BENCHMARK_REQUESTS:-$((8 * n > 2000000 ? 8 * n : 2000000))}
  echo "== redis-benchmark fill: $((2 * n)) SETs of key:__rand_int__ below $n" >&2
  taskset -c 1 redis-benchmark -p "$port_own" -c 4 -P 64 -n $((2 * n)) -r "$n" -t set -q >/dev/null 2>&1
  own_keys=$(redis-cli -p "$port_own" dbsize)
  data="$work/x700-$n"
  taskset -c 0 "$x700" serve --data "$data" --listen 127.0.0.1:0 --shards 1 >"$work/serve.log" 2>&1 &
  pids+=($!)
  serve_pid=$!
  for _ in $(seq 300); do grep -q 'tcp=' "$work/serve.log" 2>/dev/null && break; sleep 0.1; done
  address=$(grep -o 'tcp=[^ ]*' "$work/serve.log" | cut -d= -f2)
  declare -A target_args=(
    [x700]="--server=$address"
    [keys]="--target=redis://127.0.0.1:$port_keys --redis-layout=keys"
    [hash]="--target=redis://127.0.0.1:$port_hash --redis-layout=hash"
  )
  baseline_keys=$(used_memory "$port_keys")
  baseline_hash=$(used_memory "$port_hash")
  for t in x700 keys hash; do
    # shellcheck disable=SC2086 # target_args holds several flags
    bench "$t-$n-preload" ${target_args[$t]} --preload "$n" --requests 0 --warmup-s 0
  done
  # The x700 preload filled the log: wait (2 min at most) for the
  # checkpoint that log size triggers to commit and purge it, so neither
  # the checkpoint nor the kernel's writeback runs during the figures.
  for _ in $(seq 240); do
    log_bytes=$("$x700" stats --server "$address" --json | jq '.log.segment_bytes // 0')
    [ "$log_bytes" -le $((128 << 20)) ] && break
    sleep 0.5
  done
  sync
  used_keys=$(used_memory "$port_keys")
  used_hash=$(used_memory "$port_hash")

  # ---- closed loop, interleaved, repeated ----
  for depth in 64 256; do
    for r in $(seq "$repeats"); do
      for t in x700 keys hash; do
        # shellcheck disable=SC2086
        bench "$t-$n-p$depth-r$r" ${target_args[$t]} --bindings "$n" --connections 4 \
          --pipeline "$depth" --duration-s "$duration" --warmup-s "$warmup"
      done
      redis_benchmark "rb-$n-p$depth-r$r" "$depth"
    done
  done
  declare -A peak=()
  for t in x700 keys hash; do
    for depth in 64 256; do
      names=()
      for r in $(seq "$repeats"); do names+=("$t-$n-p$depth-r$r"); done
      median "${names[@]}" >"$work/$t-$n-p$depth.json"
    done
    peak[$t]=$(jq -s 'map(.achieved_rate_per_s) | max' "$work/$t-$n-p64.json" "$work/$t-$n-p256.json")
  done

  # ---- open loop: x700 at half its peak, then every target's sweep ----
  half=$(awk -v p="${peak[x700]}" 'BEGIN{printf "%d", p/2}')
  bench "x700-$n-open-half" "${target_args[x700]}" --bindings "$n" --connections 4 --pipeline 256 \
    --duration-s "$duration" --warmup-s "$warmup" --rate "$half"
  # The same rate on one connection: ~20 requests per segment instead of ~5.
  bench "x700-$n-open-half-1conn" "${target_args[x700]}" --bindings "$n" --connections 1 \
    --pipeline 1024 --duration-s "$duration" --warmup-s "$warmup" --rate "$half"
  for t in keys hash; do
    # shellcheck disable=SC2086
    bench "$t-$n-sweep" ${target_args[$t]} --bindings "$n" --connections 4 --pipeline 256 \
      --warmup-s 0.5 --duration-s "$sweep_duration" --sweep "$(rates_of "${peak[$t]}")"
  done
  chart="$results/$day-compare-redis-$n.svg"
  bench "x700-$n-sweep" "${target_args[x700]}" --bindings "$n" --connections 4 --pipeline 256 \
    --warmup-s 0.5 --duration-s "$sweep_duration" --sweep "$(rates_of "${peak[x700]}")" \
    --chart "$chart" --chart-compare "redis keys=$work/keys-$n-sweep.json" \
    --chart-compare "redis hash=$work/hash-$n-sweep.json"

  # ---- stop everything; x700's memory from its files ----
  stop "$serve_pid"
  stop "$redis_keys_pid"
  stop "$redis_hash_pid"
  stop "$redis_own_pid"
  "$x700" stats --data "$data" --json >"$work/x700-$n-stats.json"
  rm -rf "$data"

  # Paired ratios: x700 over each Redis layout, round by round.
  rounds='{}'
  for depth in 64 256; do
    for layout in keys hash; do
      list=$(for r in $(seq "$repeats"); do
        jq -s '(.[0].achieved_rate_per_s / .[1].achieved_rate_per_s * 100 | round) / 100' \
          "$work/x700-$n-p$depth-r$r.json" "$work/$layout-$n-p$depth-r$r.json"
      done | jq -s -c .)
      rounds=$(jq -n --argjson acc "$rounds" --argjson list "$list" --arg key "x700_over_redis_${layout}_4x$depth" \
        '$acc + {($key): $list}')
    done
    # The ratio that counts: x700 over the faster Redis figure of the
    # same round (x700 bench's keys layout or redis-benchmark's GET).
    list=$(for r in $(seq "$repeats"); do
      jq -n --slurpfile x "$work/x700-$n-p$depth-r$r.json" --slurpfile k "$work/keys-$n-p$depth-r$r.json" \
        --argjson own "$(cat "$work/rb-$n-p$depth-r$r.rps")" \
        '([$k[0].achieved_rate_per_s, $own] | max) as $redis
         | if $redis > 0 then ($x[0].achieved_rate_per_s / $redis * 100 | round) / 100 else null end'
    done | jq -s -c .)
    rounds=$(jq -n --argjson acc "$rounds" --argjson list "$list" --arg key "x700_over_fastest_redis_4x$depth" \
      '$acc + {($key): $list}')
  done
  own_rates='{}'
  for depth in 64 256; do
    list=$(for r in $(seq "$repeats"); do cat "$work/rb-$n-p$depth-r$r.rps"; done | jq -s -c .)
    own_rates=$(jq -n --argjson acc "$own_rates" --argjson list "$list" --arg key "redis_benchmark_get_4x$depth" '$acc + {($key): $list}')
  done
  rates='{}'
  for t in x700 keys hash; do
    for depth in 64 256; do
      list=$(for r in $(seq "$repeats"); do jq '.achieved_rate_per_s' "$work/$t-$n-p$depth-r$r.json"; done | jq -s -c .)
      rates=$(jq -n --argjson acc "$rates" --argjson list "$list" --arg key "${t}_4x$depth" '$acc + {($key): $list}')
    done
  done
  rates=$(jq -n --argjson acc "$rates" --argjson own "$own_rates" '$acc + $own')

  redis_part() { # redis_part LAYOUT USED BASELINE
    jq -n --argjson used "$2" --argjson baseline "$3" --argjson n "$n" \
      --slurpfile preload "$work/$1-$n-preload.json" \
      --slurpfile p64 "$work/$1-$n-p64.json" --slurpfile p256 "$work/$1-$n-p256.json" \
      --slurpfile sweep "$work/$1-$n-sweep.json" \
      "{preload: \$preload[0].preload,
        used_memory: \$used, used_memory_empty: \$baseline,
        bytes_per_binding: (((\$used - \$baseline) / \$n * 10 | round) / 10),
        hash_buckets: \$sweep[0].target.hash_buckets,
        closed_4x64_median: (\$p64[0] | $summary), closed_4x256_median: (\$p256[0] | $summary),
        sweep: [\$sweep[0].sweep[] | $summary]}"
  }
  all_sizes=$(jq -n --argjson acc "$all_sizes" --arg n "$n" --arg chart "$chart" \
    --argjson keys "$(redis_part keys "$used_keys" "$baseline_keys")" \
    --argjson hash "$(redis_part hash "$used_hash" "$baseline_hash")" \
    --argjson rounds "$rounds" --argjson rates "$rates" \
    --argjson own_keys "$own_keys" --arg own_command "redis-benchmark -c 4 -P DEPTH -n $rb_requests -r $n -t get (after -t set -r $n -n $((2 * n)) -P 64)" \
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
              closed_4x64_median: ($p64[0] | '"$summary"'),
              closed_4x256_median: ($p256[0] | '"$summary"'),
              open_half_peak: ($half[0] | '"$summary"'),
              open_half_peak_1_connection: ($half1[0] | '"$summary"'),
              sweep: [$sweep[0].sweep[] | '"$summary"']},
       redis: {keys: $keys, hash: $hash,
               redis_benchmark: {command: $own_command, keys: $own_keys,
                 get_4x64_every_round: $rates.redis_benchmark_get_4x64,
                 get_4x256_every_round: $rates.redis_benchmark_get_4x256}},
       closed_loop_rates_every_round: $rates,
       chart: $chart,
       ratios: {
         lookups_per_core_x700_over_redis_keys_4x64: ratio($x64; $keys.closed_4x64_median.achieved_rate_per_s),
         lookups_per_core_x700_over_redis_keys_4x256: ratio($x256; $keys.closed_4x256_median.achieved_rate_per_s),
         lookups_per_core_x700_over_redis_hash_4x64: ratio($x64; $hash.closed_4x64_median.achieved_rate_per_s),
         lookups_per_core_x700_over_redis_hash_4x256: ratio($x256; $hash.closed_4x256_median.achieved_rate_per_s),
         lookups_per_core_x700_over_fastest_redis_4x64: ratio($x64; ([$keys.closed_4x64_median.achieved_rate_per_s, ($rates.redis_benchmark_get_4x64 | sort | .[length / 2 | floor])] | max)),
         lookups_per_core_x700_over_fastest_redis_4x256: ratio($x256; ([$keys.closed_4x256_median.achieved_rate_per_s, ($rates.redis_benchmark_get_4x256 | sort | .[length / 2 | floor])] | max)),
         every_round: $rounds,
         memory_redis_keys_over_x700: ratio($keys.bytes_per_binding; $xb),
         memory_redis_hash_over_x700: ratio($hash.bytes_per_binding; $xb)},
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
  --arg command "perf/compare-redis.sh ${sizes[*]} (DURATION_S=$duration WARMUP_S=$warmup REPEATS=$repeats SWEEP_DURATION_S=$sweep_duration)" \
  --arg date "$(date -u +%FT%TZ)" --arg commit "$(git rev-parse --short HEAD)" \
  --arg cpu "$(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs)" \
  --arg kernel "$(uname -r)" --argjson cores "$(nproc)" --arg load "$(cut -d' ' -f1-3 /proc/loadavg)" \
  --arg load_before "$load_before" --arg redis "$(redis-server --version | head -1)" \
  '{command: $command, date: $date, commit: $commit,
    machine: {cores: $cores, cpu: $cpu, kernel: $kernel, load_average_before: $load_before, load_average_after: $load},
    setup: ("x700 serve --shards 1 (one event loop) and two " + $redis
      + " (--save \"\" --appendonly no --hash-max-listpack-entries 256) and a third for redis-benchmark'"'"'s own keys, all pinned to core 0, only the measured one busy;"
      + " the x700 bench client pinned to core 1; loopback TCP; lookups are uniform hits over all N loaded"
      + " bindings (no repeated query set), every answer checked; sync after the preloads"),
    sizes: $sizes}' >"$out"
echo "wrote $out" >&2
jq '.sizes | map_values({ratios, x700_p99_half_peak: .targets.x700_p99_us_measured,
  x700_p99_half_peak_1conn: .targets.x700_p99_us_measured_1_connection,
  rates: .closed_loop_rates_every_round, x700_bytes: .x700.bytes_per_binding,
  redis_keys_bytes: .redis.keys.bytes_per_binding, redis_hash_bytes: .redis.hash.bytes_per_binding})' "$out"
