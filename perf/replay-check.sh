#!/usr/bin/env bash
# Checks `x700 replay` end to end on a real session: an `x700 bench` run
# (a preload of binds, then lookups at a moderate open-loop rate, so that
# the node's own capture, which drops chunks at full load, stays complete)
# against node A is recorded twice, by tcpdump on lo and by A's `--capture`.
# Each capture is replayed to fresh empty nodes: its binds first
# (`--filter opcode=bind_axb`, max speed), then its lookups at `--speed 5`
# (node B5) and at `--speed max` (node Bmax). Every replayed answer is
# compared; changed answers must be 0. Beside the max replay, `x700 bench`
# closed-loop lookups against the same node Bmax, same connections: the
# ratio replay max / bench should be at least 0.5.
# Usage: perf/replay-check.sh [LOOKUPS]   (default 200000)
# Env: RATE (open-loop rate of the recorded run, default 50000/s),
#      CONNECTIONS (default 4), BINDINGS (default LOOKUPS/10).
# Writes perf/results/<date>-replay-check.json (-LOOKUPS.json at another
# size) and prints a summary.
set -euo pipefail
source "$(dirname "$0")/lib.sh"
perf_setup replay-check
lookups=${1:-200000}
rate=${RATE:-50000}
conns=${CONNECTIONS:-4}
bindings=${BINDINGS:-$((lookups / 10))}

# --- 1. Record: node A with --capture, tcpdump on lo, one bench run. ---
start_node a --capture "$dir/node.pcapng" --capture-max-bytes 4294967296 --capture-files 2
a_pid=$node_pid a_tcp=$tcp a_admin=$admin
tcpdump -i lo --immediate-mode -U -n -Z root -w "$dir/tcpdump.pcap" \
  "tcp port $a_tcp" >"$dir/tcpdump.log" 2>&1 &
tcpdump_pid=$!
pids+=("$tcpdump_pid")
# tcpdump may start capturing a little after it writes its header: knock
# (connect, close) until a knock is in the file, at most 15 s.
for i in $(seq 150); do
  (exec 3<>"/dev/tcp/127.0.0.1/$a_tcp") 2>/dev/null || true
  [ "$(stat -c %s "$dir/tcpdump.pcap" 2>/dev/null || echo 0)" -gt 24 ] && break
  [ "$i" = 150 ] && { echo "replay-check: tcpdump captures nothing" >&2; cat "$dir/tcpdump.log" >&2; exit 1; }
  sleep 0.1
done
"$bin" bench --server "127.0.0.1:$a_tcp" --preload "$bindings" --mix lookup=1 \
  --rate "$rate" --requests "$lookups" --warmup-s 0 --connections "$conns" --quiet \
  --json "$dir/bench-recorded.json" >/dev/null
sleep 0.5
kill -INT "$tcpdump_pid"
for _ in $(seq 100); do kill -0 "$tcpdump_pid" 2>/dev/null || break; sleep 0.1; done
wait "$tcpdump_pid" 2>/dev/null || true
# tcpdump's own count of what it lost ("N packets dropped by kernel").
tcpdump_dropped=$(awk '/dropped by kernel/ {print $1}' "$dir/tcpdump.log" | tail -1)
tcpdump_dropped=${tcpdump_dropped:-null}
curl -sf -X POST "http://127.0.0.1:$a_admin/capture/stop" >/dev/null
admin=$a_admin
dropped=$(metric x700_capture_dropped_total)
stop_node "$a_pid"

# --- 2. Replay each capture to fresh nodes. ---
# replay NAME CAPTURE SERVER ARGS...: the report JSON in $dir/NAME.json
# (the exit code is kept in the report as "exit_code").
replay() {
  local name=$1 capture=$2 server=$3
  shift 3
  local rc=0
  "$bin" replay "$capture" --server "$server" --port "$a_tcp" --json "$dir/$name.json" "$@" \
    >"$dir/$name.out" 2>"$dir/$name.err" || rc=$?
  [ -s "$dir/$name.json" ] || echo '{}' >"$dir/$name.json"
  jq --argjson rc "$rc" '. + {exit_code: $rc}' "$dir/$name.json" >"$dir/$name.tmp" && mv "$dir/$name.tmp" "$dir/$name.json"
}

results='{}'
for cap in tcpdump node; do
  file="$dir/tcpdump.pcap"
  [ "$cap" = node ] && file="$dir/node.pcapng"
  for speed in 5 max; do
    start_node "b-$cap-$speed"
    b="127.0.0.1:$tcp"
    replay "$cap-$speed-binds" "$file" "$b" --filter opcode=bind_axb --speed max
    replay "$cap-$speed-lookups" "$file" "$b" --filter opcode=lookup --speed "$speed"
    bench='null'
    if [ "$speed" = max ]; then
      "$bin" bench --server "$b" --bindings "$bindings" --mix lookup=1 --connections "$conns" \
        --duration-s 5 --quiet --json "$dir/bench-$cap.json" >/dev/null
      bench=$(cat "$dir/bench-$cap.json")
    fi
    # The node's own view of busy answers (which limit tripped).
    busy=$(curl -sf "http://127.0.0.1:$admin/metrics" |
      grep -E '^x700_(requests_total\{[^}]*status="busy"|requests_refused|queue_depth)' | jq -R . | jq -s -c . || echo '[]')
    stop_node "$node_pid"
    results=$(jq -n --argjson r "$results" --arg k "$cap" --arg s "speed_$speed" --argjson busy "$busy" \
      --slurpfile binds "$dir/$cap-$speed-binds.json" --slurpfile looks "$dir/$cap-$speed-lookups.json" \
      --argjson bench "$bench" \
      '$r | .[$k][$s] = {binds: $binds[0], lookups: $looks[0], bench_closed_loop: $bench, node_busy_metrics: $busy}')
  done
done

out="perf/results/$(date -u +%F)-replay-check.json"
[ "$lookups" = 200000 ] || out="perf/results/$(date -u +%F)-replay-check-$lookups.json"
machine=$(printf '{"cores":%s,"cpu":"%s","kernel":"%s","load_average":"%s"}' \
  "$(nproc)" "$(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs)" "$(uname -r)" "$(cut -d' ' -f1-3 /proc/loadavg)")
jq -n --arg cmd "perf/replay-check.sh $lookups (RATE=$rate CONNECTIONS=$conns BINDINGS=$bindings)" \
  --arg date "$(date -u +%FT%TZ)" --argjson machine "$machine" \
  --slurpfile rec "$dir/bench-recorded.json" --argjson dropped "$dropped" \
  --argjson tdropped "$tcpdump_dropped" \
  --arg commit "$(git rev-parse --short HEAD)" --argjson r "$results" \
  --arg tsize "$(stat -c %s "$dir/tcpdump.pcap")" --arg nsize "$(stat -c %s "$dir/node.pcapng")" \
  '{command: $cmd, date: $date, commit: $commit, machine: $machine,
    recorded: {bench: $rec[0], node_capture_dropped_chunks: $dropped,
               tcpdump_dropped_by_kernel: $tdropped,
               tcpdump_bytes: ($tsize | tonumber), node_capture_bytes: ($nsize | tonumber)},
    replays: $r,
    target: "answers_changed 0 for lookups; replay max / bench closed loop >= 0.5"}' >"$out"

# Summary.
printf '%-8s %-5s %-7s %9s %9s %8s %9s %9s %8s %s\n' capture speed part sent compared changed p99_us rate/s cpu_s exit
for cap in tcpdump node; do
  for speed in 5 max; do
    for part in binds lookups; do
      jq -r --arg c "$cap" --arg s "speed_$speed" --arg p "$part" \
        '.replays[$c][$s][$p] | [$c, ($s | ltrimstr("speed_")), $p, .requests_sent, .answers_compared,
          .answers_changed, .latency_us.p99, (.achieved_rate_per_s | floor? // .), .client_cpu_s, .exit_code] | @tsv' "$out" |
        awk -F'\t' '{printf "%-8s %-5s %-7s %9s %9s %8s %9s %9s %8s %s\n", $1,$2,$3,$4,$5,$6,$7,$8,$9,$10}'
    done
  done
  jq -r --arg c "$cap" '.replays[$c].speed_max as $m | ($m.bench_closed_loop.achieved_rate_per_s) as $b
    | "\($c): replay max \($m.lookups.achieved_rate_per_s | floor)/s, bench closed loop \($b | floor)/s, ratio \((($m.lookups.achieved_rate_per_s / $b) * 100 | floor) / 100)"' "$out" | head -1 || true
done
jq -r '.recorded | "recorded: \(.bench.requests_sent) lookups sent at \(.bench.target_rate_per_s)/s after \(.preload // "the") preload; node capture dropped \(.node_capture_dropped_chunks) chunks, tcpdump dropped \(.tcpdump_dropped_by_kernel) packets"' "$out"
echo "written $out"
