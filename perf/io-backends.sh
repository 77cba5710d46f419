#!/usr/bin/env bash
# The event loops' two I/O backends side by side: `serve --io epoll` and
# `--io uring`, lookups closed loop over TCP (`x700 bench`) and UDP
# (examples/udp_lookups.rs, one datagram of IN_FLIGHT lookups in flight
# per socket), at 4x64, 4x256, 64x16 and 256x4 (connections x in flight).
# One data directory, preloaded once with BINDINGS bindings; per round and
# shape each backend gets a fresh node on it (one event loop, pinned to
# core 0 with taskset), the order alternating (epoll,uring / uring,epoll
# ...) so that a drift of the machine's load weighs on both. The client
# runs on core 1, one thread. Per run: lookups/s, p99 (TCP), the client's
# CPU and the node's (/proc). The figures: per shape, the median over
# rounds of each backend's lookups/s and of uring/epoll.
# Usage: perf/io-backends.sh
# Env: ROUNDS (default 3), DURATION_S (per run, default 5), BINDINGS
#      (default 100000), SHAPES (default "4x64 4x256 64x16 256x4"),
#      PROTOS (default "tcp udp").
# Writes perf/results/io-backends-<date>.txt (-<HHMM> after the date if
# that exists) and prints the summary.
set -euo pipefail
source "$(dirname "$0")/lib.sh"
perf_setup io-backends
cargo build --release --quiet --example udp_lookups
udp_client="${CARGO_TARGET_DIR:-target}/release/examples/udp_lookups"
rounds=${ROUNDS:-3}
duration_s=${DURATION_S:-5}
bindings=${BINDINGS:-100000}
shapes=${SHAPES:-4x64 4x256 64x16 256x4}
protos=${PROTOS:-tcp udp}

# serve IO: a node on $dir/data with backend IO on core 0; sets $tcp,
# $udp, $admin, $node_pid.
serve() {
  read -r tcp udp admin < <(free_ports 3)
  taskset -c 0 "$bin" serve --data "$dir/data" --io "$1" --event-loops 1 --no-pin \
    --listen "127.0.0.1:$tcp" --udp "127.0.0.1:$udp" --admin "127.0.0.1:$admin" \
    >"$dir/node.log" 2>&1 &
  node_pid=$!
  pids+=("$node_pid")
  for _ in $(seq 200); do
    curl -sf "http://127.0.0.1:$admin/readyz" >/dev/null 2>&1 && return 0
    sleep 0.1
  done
  echo "io-backends: node ($1) not ready in 20 s" >&2
  cat "$dir/node.log" >&2
  exit 1
}

serve epoll
"$bin" bench --server "127.0.0.1:$tcp" --preload "$bindings" --mix lookup=1 \
  --duration-s 1 --warmup-s 0 --quiet --json "$dir/preload.json" >/dev/null
stop_node "$node_pid"

# run ROUND PROTO SHAPE IO: one run; its figures as one JSON line.
run() {
  local round=$1 proto=$2 shape=$3 io=$4
  local conns=${shape%x*} in_flight=${shape#*x}
  serve "$io"
  local cpu_before started line
  cpu_before=$(process_cpu_s "$node_pid")
  started=$(date +%s.%N)
  if [ "$proto" = tcp ]; then
    taskset -c 1 "$bin" bench --server "127.0.0.1:$tcp" --bindings "$bindings" --mix lookup=1 \
      --connections "$conns" --pipeline "$in_flight" --threads 1 --duration-s "$duration_s" \
      --warmup-s 1 --quiet --json "$dir/run.json" >/dev/null
    line=$(jq -c '{lookups_per_s: .achieved_rate_per_s, p99_us: .latency_us.p99,
      client_cpu: .client_cpu.cores_used, errors: ((.errors | length) + .timeouts)}' "$dir/run.json")
  else
    line=$(taskset -c 1 "$udp_client" "127.0.0.1:$udp" "$conns" "$in_flight" "$bindings" \
      "$duration_s" 1 | jq -c '{lookups_per_s, p99_us: null, client_cpu: .client_cpu_cores,
      errors: .lost_datagrams, ok_share}')
  fi
  local cpu wall
  cpu=$(process_cpu_s "$node_pid")
  wall=$(awk -v from="$started" -v to="$(date +%s.%N)" 'BEGIN {printf "%.3f", to - from}')
  stop_node "$node_pid"
  jq -c --argjson round "$round" --arg proto "$proto" --arg shape "$shape" --arg io "$io" \
    --argjson node_cpu "$(awk -v a="$cpu_before" -v b="$cpu" -v w="$wall" 'BEGIN {printf "%.2f", (b - a) / w}')" \
    '{round: $round, proto: $proto, shape: $shape, io: $io} + . + {node_cpu: $node_cpu}' \
    <<<"$line" | tee -a "$dir/runs.jsonl"
}

for round in $(seq "$rounds"); do
  if [ $((round % 2)) = 1 ]; then order=(epoll uring); else order=(uring epoll); fi
  for proto in $protos; do
    for shape in $shapes; do
      for io in "${order[@]}"; do run "$round" "$proto" "$shape" "$io"; done
    done
  done
done

out="perf/results/io-backends-$(date -u +%F).txt"
# A second run the same day keeps the first: -HHMM after the date.
[ -e "$out" ] && out="perf/results/io-backends-$(date -u +%F-%H%M).txt"
{
  echo "command: perf/io-backends.sh (ROUNDS=$rounds DURATION_S=$duration_s BINDINGS=$bindings)"
  echo "date: $(date -u +%FT%TZ)  commit: $(git rev-parse --short HEAD)"
  echo "machine: $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs), kernel $(uname -r), load $(cut -d' ' -f1-3 /proc/loadavg)"
  echo "node: one event loop, taskset -c 0; client: one thread, taskset -c 1"
  echo
  echo "summary (medians over rounds; cpu in cores used over the run):"
  printf '%-5s %-6s %12s %12s %8s %14s %14s %11s %11s\n' proto shape epoll/s uring/s ratio \
    client_cpu_ep client_cpu_ur node_cpu_ep node_cpu_ur
  jq -rs '
    def median: sort | if length % 2 == 1 then .[length / 2 | floor]
      else (.[length / 2 - 1] + .[length / 2]) / 2 end;
    group_by([.proto, .shape]) | sort_by(.[0].proto, (.[0].shape | split("x") | map(tonumber))) | .[]
    | . as $runs
    | ($runs | map(select(.io == "epoll"))) as $e | ($runs | map(select(.io == "uring"))) as $u
    | [range(1; ($runs | map(.round) | max) + 1) as $r
        | (($u | map(select(.round == $r))[0].lookups_per_s)
           / ($e | map(select(.round == $r))[0].lookups_per_s))] as $ratios
    | [$runs[0].proto, $runs[0].shape,
       ($e | map(.lookups_per_s) | median | floor), ($u | map(.lookups_per_s) | median | floor),
       ($ratios | median * 1000 | round / 1000),
       ($e | map(.client_cpu) | median), ($u | map(.client_cpu) | median),
       ($e | map(.node_cpu) | median), ($u | map(.node_cpu) | median)] | @tsv' "$dir/runs.jsonl" |
    awk -F'\t' '{printf "%-5s %-6s %12s %12s %8s %14s %14s %11s %11s\n", $1,$2,$3,$4,$5,$6,$7,$8,$9}'
  echo
  echo "runs:"
  cat "$dir/runs.jsonl"
} >"$out"
sed -n '/^summary/,/^$/p' "$out"
echo "written $out"
