#!/usr/bin/env bash
# What the node's own capture (`serve --capture`) costs lookups when on.
# One node, started with the capture configured but off (`--capture-off`),
# preloaded with BINDINGS bindings; then ROUNDS rounds, each one closed-loop
# `x700 bench` lookup run with the capture off and one with it on (POST
# /capture/start, /capture/stop on the admin port), the order alternating
# (off,on / on,off / ...) so that a drift of the machine's load weighs on
# both. Per run: lookups/s, latency, the client's CPU (bench) and the
# node's (/proc), and while on, the chunks the capture dropped and the
# packets it wrote (x700_capture_* metrics). The figure: the median over
# rounds of lookups/s on / off. Capture files rotate at 256 MiB, 2 kept.
# Usage: perf/capture-cost.sh
# Env: ROUNDS (default 3), DURATION_S (per run, default 5), CONNECTIONS
#      (default 4), PIPELINE (in flight per connection, default 64),
#      BINDINGS (default 100000), SHARDS (the node's event loops, default:
#      serve's own, one per core).
# Writes perf/results/<date>-<HHMM>-capture-cost.json and prints a summary.
set -euo pipefail
source "$(dirname "$0")/lib.sh"
perf_setup capture-cost
rounds=${ROUNDS:-3}
duration_s=${DURATION_S:-5}
conns=${CONNECTIONS:-4}
pipeline=${PIPELINE:-64}
bindings=${BINDINGS:-100000}
shards=()
[ -n "${SHARDS:-}" ] && shards=(--shards "$SHARDS")

start_node n "${shards[@]}" --capture "$dir/node.pcapng" --capture-off \
  --capture-max-bytes 268435456 --capture-files 2
"$bin" bench --server "127.0.0.1:$tcp" --preload "$bindings" --mix lookup=1 \
  --duration-s 1 --warmup-s 0 --connections "$conns" --quiet --json "$dir/preload.json" >/dev/null

capture() {
  local answer
  answer=$(curl -sf -X POST "http://127.0.0.1:$admin/capture/$1" -w '%{http_code}' -o /dev/null) || true
  [ "$answer" = 200 ] || { echo "capture-cost: POST /capture/$1 answered ${answer:-nothing}" >&2; exit 1; }
}

# run ROUND off|on: one bench run; its figures as one JSON line in runs.jsonl.
run() {
  local round=$1 state=$2 json="$dir/run-$1-$2.json"
  [ "$state" = on ] && capture start
  local dropped_before packets_before cpu_before
  dropped_before=$(metric x700_capture_dropped_total)
  packets_before=$(metric x700_capture_packets_total)
  cpu_before=$(process_cpu_s "$node_pid")
  local started
  started=$(date +%s.%N)
  "$bin" bench --server "127.0.0.1:$tcp" --bindings "$bindings" --mix lookup=1 \
    --connections "$conns" --pipeline "$pipeline" --duration-s "$duration_s" --warmup-s 1 \
    --quiet --json "$json" >/dev/null
  local wall dropped packets cpu
  wall=$(awk -v from="$started" -v to="$(date +%s.%N)" 'BEGIN {printf "%.3f", to - from}')
  dropped=$(($(metric x700_capture_dropped_total) - dropped_before))
  packets=$(($(metric x700_capture_packets_total) - packets_before))
  cpu=$(process_cpu_s "$node_pid")
  [ "$state" = on ] && capture stop
  jq -c --argjson round "$round" --arg state "$state" --argjson dropped "$dropped" \
    --argjson packets "$packets" --argjson cpu_before "$cpu_before" --argjson cpu "$cpu" \
    --argjson wall "$wall" \
    '{round: $round, capture: $state, lookups_per_s: .achieved_rate_per_s,
      latency_us: {p50: .latency_us.p50, p99: .latency_us.p99},
      ok: .by_status.ok, errors: (.errors | length), timeouts: .timeouts,
      client_cpu: .client_cpu,
      node_cpu_s: (($cpu - $cpu_before) * 100 | round / 100),
      node_cores_used: ((($cpu - $cpu_before) / $wall) * 100 | round / 100),
      capture_dropped_chunks: $dropped, capture_packets: $packets}' "$json" >>"$dir/runs.jsonl"
}

for round in $(seq "$rounds"); do
  if [ $((round % 2)) = 1 ]; then order=(off on); else order=(on off); fi
  for state in "${order[@]}"; do run "$round" "$state"; done
done
capture_bytes=$(du -cb "$dir"/node*.pcapng 2>/dev/null | tail -1 | cut -f1)
stop_node "$node_pid"

out="perf/results/$(date -u +%F-%H%M)-capture-cost.json"
machine=$(printf '{"cores":%s,"cpu":"%s","kernel":"%s","load_average":"%s"}' \
  "$(nproc)" "$(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs)" "$(uname -r)" "$(cut -d' ' -f1-3 /proc/loadavg)")
jq -s --arg cmd "perf/capture-cost.sh (ROUNDS=$rounds DURATION_S=$duration_s CONNECTIONS=$conns PIPELINE=$pipeline BINDINGS=$bindings SHARDS=${SHARDS:-default})" \
  --arg date "$(date -u +%FT%TZ)" --arg commit "$(git rev-parse --short HEAD)" \
  --argjson machine "$machine" --argjson bytes "${capture_bytes:-0}" '
  def median: sort | if length % 2 == 1 then .[length / 2 | floor]
    else (.[length / 2 - 1] + .[length / 2]) / 2 end;
  def rate($s): map(select(.capture == $s) | .lookups_per_s);
  . as $runs
  | [range(1; ($runs | map(.round) | max) + 1) as $r
      | ($runs | map(select(.round == $r))) as $pair
      | ($pair | map(select(.capture == "on"))[0].lookups_per_s)
        / ($pair | map(select(.capture == "off"))[0].lookups_per_s)] as $ratios
  | {command: $cmd, date: $date, commit: $commit, machine: $machine,
     runs: $runs,
     summary: {
       lookups_per_s_off_median: ($runs | rate("off") | median),
       lookups_per_s_on_median: ($runs | rate("on") | median),
       on_over_off_by_round: ($ratios | map(. * 1000 | round / 1000)),
       on_over_off_median: ($ratios | median * 1000 | round / 1000),
       capture_dropped_chunks: ($runs | map(.capture_dropped_chunks) | add),
       capture_packets: ($runs | map(.capture_packets) | add),
       dropped_share: (($runs | map(.capture_dropped_chunks) | add) as $d
         | ($runs | map(.capture_packets) | add) as $p
         | if $d + $p > 0 then ($d / ($d + $p) * 10000 | round / 10000) else 0 end),
       capture_bytes_kept: $bytes}}' "$dir/runs.jsonl" >"$out"

printf '%-5s %-4s %11s %8s %8s %11s %9s %9s %9s\n' round cap lookups/s p50_us p99_us client_cpu node_cpu dropped packets
jq -r '.runs[] | [.round, .capture, (.lookups_per_s | floor), .latency_us.p50, .latency_us.p99,
  .client_cpu.cores_used, .node_cores_used, .capture_dropped_chunks, .capture_packets] | @tsv' "$out" |
  awk -F'\t' '{printf "%-5s %-4s %11s %8s %8s %11s %9s %9s %9s\n", $1,$2,$3,$4,$5,$6,$7,$8,$9}'
jq -r '.summary | "median lookups/s off \(.lookups_per_s_off_median | floor), on \(.lookups_per_s_on_median | floor); on/off median \(.on_over_off_median) (rounds \(.on_over_off_by_round | map(tostring) | join(", "))); chunks dropped \(.capture_dropped_chunks) of \(.capture_dropped_chunks + .capture_packets) (\(.dropped_share * 100)%)"' "$out"
echo "(client_cpu and node_cpu in cores used over the run)"
echo "written $out"
