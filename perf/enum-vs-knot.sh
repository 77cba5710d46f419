#!/usr/bin/env bash
# x700's ENUM front-end versus Knot DNS (knotd) serving a zone of the same
# numbers, side by side in one run, through dnsperf (the same query file
# for both: every number once, shuffled, NAPTR).
#
# N AXN bindings (X = 700100000000000 + i, A = 13000000000 + i) are
# imported into x700 (one event loop), and the same N NAPTR records
# (`!^.*$!sip:A@localhost!`) are written into a zone file Knot loads (one
# UDP worker, one TCP worker). Both servers are pinned to core 0 and never
# busy at the same time; dnsperf is pinned to core 1. Then:
#   - closed loop, UDP, 4 clients x 500 queries outstanding, the two
#     servers interleaved REPEATS times: queries per second (median), the
#     server's own CPU per query (its CPU seconds over the run, from
#     /proc/PID/stat: what a core buys when dnsperf saturates first), and
#     dnsperf's CPU beside;
#   - open loop at half of each server's own median peak (dnsperf -Q, one
#     client, at most 100 outstanding: more only measures dnsperf's own
#     queue), every answer's latency (dnsperf -v): p50, p99, p99.9;
#   - one closed-loop run over TCP each (dnsperf -m tcp);
#   - memory per binding: growth of each server's VmRSS from before the
#     data to after the runs (which touched every record), over N; and
#     x700's own `bytes_per_binding` (STATS).
# Answers of both are compared on a sample first (kdig +short).
# Installs dnsperf, knot and knot-dnsutils with apt-get when missing.
# Everything it starts it stops, by process id.
#
# Usage: perf/enum-vs-knot.sh [N]            (default 100000, at most 1000000)
# Env:   DURATION_S (10) seconds per figure, REPEATS (3).
# Writes perf/results/enum-vs-knot-<date>.txt.
set -euo pipefail
n=${1:-100000}
duration=${DURATION_S:-10}
repeats=${REPEATS:-3}
need=()
command -v dnsperf >/dev/null || need+=(dnsperf)
command -v knotd >/dev/null || need+=(knot)
command -v kdig >/dev/null || need+=(knot-dnsutils)
if [ ${#need[@]} -gt 0 ]; then
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
fi
# shellcheck source=perf/lib.sh
source "$(dirname "$0")/lib.sh"
perf_setup enum-vs-knot
out="perf/results/enum-vs-knot-$(date -u +%F).txt"
exec > >(tee "$out") 2>&1
echo "# perf/enum-vs-knot.sh $n  (DURATION_S=$duration REPEATS=$repeats)  $(date -u +%FT%TZ)"
echo "# $(uname -r), $(nproc) cores, $(knotd --version), $(dnsperf -h 2>&1 | grep Version)"

# ---- data: the CSV for x700, the zone for Knot, the queries ----
python3 - "$n" "$dir" <<'PY'
import random, sys
n, d = int(sys.argv[1]), sys.argv[2]
names = []
with open(f"{d}/bindings.csv", "w") as csv, open(f"{d}/enum.zone", "w") as zone:
    csv.write("mode,x,a,order,ttl_s\n")
    zone.write("$ORIGIN 6.8.e164.arpa.\n$TTL 0\n")
    zone.write("@ IN SOA localhost. hostmaster.localhost. 1 3600 600 604800 0\n")
    zone.write("@ IN NS localhost.\n")
    for i in range(n):
        x, a = str(700100000000000 + i), str(13000000000 + i)
        csv.write(f"axn,{x},{a},o{i},2592000\n")
        # Relative to the origin: X's digits reversed.
        zone.write(f'{".".join(reversed(x))} IN NAPTR 100 10 "u" "E2U+sip" "!^.*$!sip:{a}@localhost!" .\n')
        names.append(".".join(reversed(x)) + ".6.8.e164.arpa.")
random.seed(1)
random.shuffle(names)
with open(f"{d}/queries.txt", "w") as q:
    for name in names:
        q.write(f"{name} NAPTR\n")
PY

vm_rss_kb() { awk '/^VmRSS:/ {print $2}' "/proc/$1/status"; }

# ---- x700: one event loop on core 0 ----
read -r x700_port knot_port < <(free_ports 2)
node_cpus=0 start_node x700 --enum "127.0.0.1:$x700_port" --event-loops 1 --no-pin
x700_pid=$node_pid
x700_rss_empty=$(vm_rss_kb "$x700_pid")
"$bin" import --tenant 1 "$dir/bindings.csv" --server "127.0.0.1:$tcp" --batch 10000 --json >"$dir/import.json"

# ---- Knot: one UDP and one TCP worker on core 0 ----
mkdir -p "$dir/knot"
cat >"$dir/knot.conf" <<CONF
server:
    rundir: "$dir/knot"
    listen: 127.0.0.1@$knot_port
    udp-workers: 1
    tcp-workers: 1
    background-workers: 1
database:
    storage: "$dir/knot"
log:
  - target: stderr
    any: warning
zone:
  - domain: 6.8.e164.arpa.
    file: "$dir/knot/enum.zone"
    journal-content: none
    zonefile-sync: -1
CONF
# First an empty zone (SOA and NS only), for the memory baseline.
head -4 "$dir/enum.zone" >"$dir/knot/enum.zone"
taskset -c 0 knotd -c "$dir/knot.conf" >"$dir/knot.log" 2>&1 &
knot_pid=$!
pids+=("$knot_pid")
wait_soa() {
  for _ in $(seq 600); do
    [ -n "$(kdig @127.0.0.1 -p "$knot_port" +short +timeout=1 SOA 6.8.e164.arpa. 2>/dev/null)" ] && return 0
    sleep 0.1
  done
  echo "enum-vs-knot: knotd did not answer" >&2
  cat "$dir/knot.log" >&2
  exit 1
}
wait_soa
knot_rss_empty=$(vm_rss_kb "$knot_pid")
cp "$dir/enum.zone" "$dir/knot/enum.zone"
knotc -c "$dir/knot.conf" zone-reload 6.8.e164.arpa. >/dev/null
for _ in $(seq 1200); do
  last=$(tail -1 "$dir/queries.txt" | cut -d' ' -f1)
  [ -n "$(kdig @127.0.0.1 -p "$knot_port" +short +timeout=1 NAPTR "$last" 2>/dev/null)" ] && break
  sleep 0.1
done

# ---- the same answers ----
head -20 "$dir/queries.txt" | while read -r name _; do
  a=$(kdig @127.0.0.1 -p "$x700_port" +short NAPTR "$name")
  b=$(kdig @127.0.0.1 -p "$knot_port" +short NAPTR "$name")
  if [ "$a" != "$b" ] || [ -z "$a" ]; then
    echo "enum-vs-knot: answers differ for $name: x700 [$a] knot [$b]" >&2
    exit 1
  fi
done
echo "answers: the same for a sample of 20 numbers"

# dnsperf against port $1 with the rest as options; prints
# "qps server_cpu_s client_cpu_s completed lost".
run_dnsperf() {
  local port=$1 pid=$2
  shift 2
  local before after
  before=$(process_cpu_s "$pid")
  /usr/bin/time -f '%U %S' -o "$dir/time.txt" taskset -c 1 dnsperf -s 127.0.0.1 -p "$port" \
    -d "$dir/queries.txt" -l "$duration" -t 1 "$@" >"$dir/dnsperf.txt" 2>&1
  after=$(process_cpu_s "$pid")
  local qps completed lost
  qps=$(awk '/Queries per second:/ {print $4}' "$dir/dnsperf.txt")
  completed=$(awk '/Queries completed:/ {print $3}' "$dir/dnsperf.txt")
  lost=$(awk '/Queries lost:/ {print $3}' "$dir/dnsperf.txt")
  echo "$qps $(echo "$after - $before" | bc) $(awk '{print $1 + $2}' "$dir/time.txt") $completed $lost"
}

median() { sort -g | awk '{a[NR] = $1} END {print a[int((NR + 1) / 2)]}'; }

# x700's own lookup-time histogram (x700_request_latency_seconds_bucket,
# cumulative "le count" lines), for the node's side of the latency.
latency_buckets() {
  curl -sf "http://127.0.0.1:$admin/metrics" |
    awk -F'[{}" ]+' '/^x700_request_latency_seconds_bucket/ {for (i = 1; i < NF; i++) if ($i == "le=") print $(i + 1), $NF}'
}
# The bucket bound (us) under which a share $3 of the lookups between two
# snapshots $1 and $2 fall.
bucket_bound_us() {
  paste "$1" "$2" | awk -v share="$3" '{le[NR] = $1; n[NR] = $4 - $2} END {
    total = n[NR]; for (i = 1; i <= NR; i++) if (n[i] >= share * total) {
      if (le[i] ~ /Inf|e\+308/) print "inf"; else printf "%.0f\n", le[i] * 1000000; exit } }'
}

echo
echo "## closed loop, UDP, dnsperf -c 4 -q 500, ${duration} s, $repeats rounds interleaved"
printf '%-6s %-5s %12s %16s %14s %10s %6s\n' server round queries_per_s server_cpu_us_per_q dnsperf_cpu_s completed lost
: >"$dir/peaks.txt"
for round in $(seq "$repeats"); do
  for target in x700 knot; do
    if [ "$target" = x700 ]; then port=$x700_port pid=$x700_pid; else port=$knot_port pid=$knot_pid; fi
    read -r qps cpu client completed lost < <(run_dnsperf "$port" "$pid" -c 4 -q 500)
    cpu_us=$(echo "scale=3; $cpu * 1000000 / $completed" | bc)
    printf '%-6s %-5s %12.0f %16.2f %14.2f %10s %6s\n' "$target" "$round" "$qps" "$cpu_us" "$client" "$completed" "$lost"
    echo "$target $qps $cpu_us" >>"$dir/peaks.txt"
  done
done
x700_peak=$(awk '$1 == "x700" {print $2}' "$dir/peaks.txt" | median)
knot_peak=$(awk '$1 == "knot" {print $2}' "$dir/peaks.txt" | median)
x700_cpu=$(awk '$1 == "x700" {print $3}' "$dir/peaks.txt" | median)
knot_cpu=$(awk '$1 == "knot" {print $3}' "$dir/peaks.txt" | median)
echo "median: x700 $x700_peak q/s, knot $knot_peak q/s, ratio $(echo "scale=2; $x700_peak / $knot_peak" | bc)"
echo "median server CPU per query: x700 $x700_cpu us, knot $knot_cpu us; queries per server-core-second: x700 $(echo "1000000 / $x700_cpu" | bc), knot $(echo "1000000 / $knot_cpu" | bc), ratio $(echo "scale=2; $knot_cpu / $x700_cpu" | bc)"

echo
echo "## open loop at half of each one's own median peak (dnsperf -c 1 -q 100 -Q), latency of every answer"
printf '%-6s %10s %10s %10s %10s %10s %14s\n' server rate_q_s answered p50_us p99_us p999_us dnsperf_cpu_s
for target in x700 knot; do
  if [ "$target" = x700 ]; then port=$x700_port pid=$x700_pid peak=$x700_peak; else port=$knot_port pid=$knot_pid peak=$knot_peak; fi
  rate=$(echo "$peak / 2" | bc)
  [ "$target" = x700 ] && latency_buckets >"$dir/buckets-before.txt"
  read -r qps _ client _ _ < <(run_dnsperf "$port" "$pid" -c 1 -q 100 -Q "$rate" -v)
  [ "$target" = x700 ] && latency_buckets >"$dir/buckets-after.txt"
  grep '^> ' "$dir/dnsperf.txt" | awk '{print $NF * 1000000}' | sort -g >"$dir/latency.txt"
  count=$(wc -l <"$dir/latency.txt")
  pct() { awk -v p="$1" -v n="$count" 'NR == int(n * p + 0.999999) {print; exit}' "$dir/latency.txt"; }
  printf '%-6s %10s %10s %10.0f %10.0f %10.0f %14.2f\n' "$target" "$rate" "$count" "$(pct 0.5)" "$(pct 0.99)" "$(pct 0.999)" "$client"
done
echo "x700's own time per lookup in that run (read to answer encoded, /metrics histogram): p50 <= $(bucket_bound_us "$dir/buckets-before.txt" "$dir/buckets-after.txt" 0.5) us, p99 <= $(bucket_bound_us "$dir/buckets-before.txt" "$dir/buckets-after.txt" 0.99) us"

echo
echo "## closed loop, TCP, dnsperf -m tcp -c 4 -q 500, ${duration} s, one run each"
for target in x700 knot; do
  if [ "$target" = x700 ]; then port=$x700_port pid=$x700_pid; else port=$knot_port pid=$knot_pid; fi
  read -r qps cpu client completed lost < <(run_dnsperf "$port" "$pid" -m tcp -c 4 -q 500)
  printf '%-6s %12.0f q/s  server %.2f us CPU per query  dnsperf CPU %.2f s  lost %s\n' "$target" "$qps" \
    "$(echo "scale=3; $cpu * 1000000 / $completed" | bc)" "$client" "$lost"
done

echo
echo "## memory per binding (VmRSS growth from before the data to after the runs, / N)"
x700_rss=$(vm_rss_kb "$x700_pid")
knot_rss=$(vm_rss_kb "$knot_pid")
stats=$("$bin" stats --server "127.0.0.1:$tcp" --json 2>/dev/null || true)
echo "x700: VmRSS $x700_rss_empty -> $x700_rss KiB: $(echo "scale=1; ($x700_rss - $x700_rss_empty) * 1024 / $n" | bc) B per binding; STATS: $(echo "$stats" | python3 -c 'import json,sys; s=json.load(sys.stdin); print({k: s[k] for k in s if "bytes" in k or k == "bindings_live"})' 2>/dev/null || echo n/a)"
echo "knot: VmRSS $knot_rss_empty -> $knot_rss KiB: $(echo "scale=1; ($knot_rss - $knot_rss_empty) * 1024 / $n" | bc) B per record"
