#!/usr/bin/env bash
# x700's SIP redirect front-end versus Kamailio answering 302 from an
# htable of the same bindings, side by side in one run. Both serve one core:
# x700 with one event loop, Kamailio with one UDP worker (children=1), each
# pinned to core 0 with taskset (only the one being measured is busy); sipp,
# the load generator, is pinned to core 1. Calls are INVITE -> 302 -> ACK
# over UDP, every one a hit on a random binding of N AXB bindings (the
# caller is A, so both targets look up the pair X+A).
#
# Kamailio: sl (stateless), htable loaded at start from a db_text file of
# the same bindings, one entry per (X, caller) in each direction (2 N
# entries), the Contact built with append_to_reply; ACK absorbed. x700: the
# bindings imported offline (`x700 import`), `x700 serve --sip`.
#
# For each target, interleaved, REPEATS rounds:
#   - peak: sipp at PEAK_RATE calls/s (at most LIMIT calls open),
#     DURATION_S seconds: successful calls/s, retransmissions, failed calls,
#     sipp's CPU and the server's CPU per call (the server's calls/s per
#     core, were it the bottleneck, is 1 / its CPU per call);
#   - half of that target's median peak, DURATION_S seconds: p50/p99 of the
#     INVITE->302 time as sipp measures it (rtd, every call), retransmissions.
# Memory per entry: Kamailio's processes' PSS with the table loaded minus
# with an empty table, per entry and per binding; x700's
# `x700 stats --json` bytes per binding.
# sipp saturates neither server (it ticks in milliseconds and schedules its
# calls a tick at a time): the server's CPU per call compares them, and the
# same figures are taken again with examples/sip_blast.rs as the caller
# (one socket, a microsecond clock, no retransmissions): closed loop with
# BLAST_WINDOW (256) calls open for the peak, open loop at half of each
# one's peak (and Kamailio at half of x700's) for latency in microseconds.
# Installs sip-tester (sipp) and kamailio with apt-get when missing.
#
# Usage: perf/sip-vs-kamailio.sh
# Env:   N (100000) bindings, DURATION_S (10), REPEATS (3), PEAK_RATE
#        (40000: the rate sipp 3.6 sustains best on one core here; asked for
#        more it spends itself on scheduling and manages less), LIMIT (1000
#        calls open at once; sipp's socket buffers are raised to 8 MiB so
#        that its own receive queue drops no 302)
# Writes perf/results/sip-vs-kamailio-<date>.txt (and prints it).
set -euo pipefail
cd "$(dirname "$0")/.."
n=${N:-100000}
duration=${DURATION_S:-10}
repeats=${REPEATS:-3}
rate_max=${PEAK_RATE:-40000}
limit=${LIMIT:-1000}

need=()
command -v sipp >/dev/null || need+=(sip-tester)
command -v kamailio >/dev/null || need+=(kamailio)
if [ ${#need[@]} -gt 0 ]; then
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
fi
source perf/lib.sh
perf_setup sip-vs-kamailio
cargo build --release --quiet --example sip_blast
blast="${CARGO_TARGET_DIR:-target}/release/examples/sip_blast"
out="perf/results/sip-vs-kamailio-$(date -u +%Y-%m-%d).txt"

# ---- the bindings, for both ----
mkdir -p "$dir/db" "$dir/empty"
python3 - "$n" "$dir" <<'EOF'
import sys
n, d = int(sys.argv[1]), sys.argv[2]
with open(f"{d}/bindings.csv", "w") as f, open(f"{d}/calls.csv", "w") as calls, \
     open(f"{d}/db/x700", "w") as table:
    f.write("x,a,b,order,ttl_s\n")
    calls.write("RANDOM\n")
    table.write("id(int,auto) key_name(string) key_type(int) value_type(int) key_value(string) expires(int)\n")
    for i in range(n):
        x, a, b = f"700{i:012d}", f"130{i:08d}", f"150{i:08d}"
        f.write(f"{x},{a},{b},o{i},2592000\n")
        calls.write(f"{a};{x}\n")
        table.write(f"{2*i+1}:{x}-{a}:0:0:{b}:0\n{2*i+2}:{x}-{b}:0:0:{a}:0\n")
with open(f"{d}/db/version", "w") as v:
    v.write("table_name(string) table_version(int)\nx700:2\n")
EOF
head -1 "$dir/db/x700" >"$dir/empty/x700"
cp "$dir/db/version" "$dir/empty/version"

"$bin" import --tenant 1 "$dir/bindings.csv" --data "$dir/x700" --json >"$dir/import.json"
x700_bytes_per_binding=$("$bin" stats --data "$dir/x700" --json |
  python3 -c 'import json,sys; print(json.load(sys.stdin).get("bytes_per_binding", "n/a"))')

# ---- the caller's scenario: INVITE, 302 (timed), ACK ----
cat >"$dir/uac.xml" <<'EOF'
<?xml version="1.0" encoding="ISO-8859-1" ?>
<scenario name="redirect">
  <send retrans="500">
    <![CDATA[

      INVITE sip:[field1]@[remote_ip]:[remote_port] SIP/2.0
      Via: SIP/2.0/[transport] [local_ip]:[local_port];branch=[branch]
      From: <sip:[field0]@[local_ip]:[local_port]>;tag=[pid]t[call_number]
      To: <sip:[field1]@[remote_ip]:[remote_port]>
      Call-ID: [call_id]
      CSeq: 1 INVITE
      Contact: <sip:[field0]@[local_ip]:[local_port]>
      Max-Forwards: 70
      Content-Length: 0

    ]]>
  </send>
  <recv response="302" rtd="true"/>
  <send>
    <![CDATA[

      ACK sip:[field1]@[remote_ip]:[remote_port] SIP/2.0
      Via: SIP/2.0/[transport] [local_ip]:[local_port];branch=[branch]
      From: <sip:[field0]@[local_ip]:[local_port]>;tag=[pid]t[call_number]
      To: <sip:[field1]@[remote_ip]:[remote_port]>[peer_tag_param]
      Call-ID: [call_id]
      CSeq: 1 ACK
      Max-Forwards: 70
      Content-Length: 0

    ]]>
  </send>
</scenario>
EOF

read -r x700_port kam_port < <(free_ports 2)

# ---- Kamailio ----
kamailio_cfg() { # DB_DIR
  cat <<EOF
#!KAMAILIO
debug=1
log_stderror=yes
children=1
disable_tcp=yes
listen=udp:127.0.0.1:$kam_port
mpath="/usr/lib/x86_64-linux-gnu/kamailio/modules/"
loadmodule "sl.so"
loadmodule "pv.so"
loadmodule "textops.so"
loadmodule "db_text.so"
loadmodule "htable.so"
modparam("db_text", "max_result_rows", $((2 * n + 1)))
modparam("htable", "db_url", "text://$1")
modparam("htable", "htable", "x700=>size=20;dbtable=x700;")
request_route {
    if (is_method("ACK")) {
        exit;
    }
    if (!is_method("INVITE")) {
        sl_send_reply("405", "Method Not Allowed");
        exit;
    }
    \$var(key) = \$rU + "-" + \$fU;
    \$var(callee) = \$sht(x700=>\$var(key));
    if (\$var(callee) == \$null || \$var(callee) == 0) {
        sl_send_reply("404", "Not Found");
        exit;
    }
    append_to_reply("Contact: <sip:\$var(callee)@gw.example;x700-display=\$rU;x700-recording=0>\r\n");
    sl_send_reply("302", "Moved Temporarily");
}
EOF
}
kam_pids() { pgrep -P "$1" | tr '\n' ' '; echo "$1"; }
pss_kb() { # PIDS
  local total=0 p
  for p in "$@"; do
    total=$((total + $(awk '/^Pss:/ {print $2}' "/proc/$p/smaps_rollup" 2>/dev/null || echo 0)))
  done
  echo "$total"
}
start_kamailio() { # DB_DIR
  kamailio_cfg "$1" >"$dir/kamailio.cfg"
  taskset -c 0 kamailio -f "$dir/kamailio.cfg" -DD -E -m 512 -M 16 -Y "$dir" -w "$dir" \
    >"$dir/kamailio.log" 2>&1 &
  kam_pid=$!
  pids+=("$kam_pid")
  # Its workers are forked once every module (the table) is loaded.
  for _ in $(seq 1200); do
    pgrep -P "$kam_pid" >/dev/null && break
    kill -0 "$kam_pid" || { cat "$dir/kamailio.log" >&2; exit 1; }
    sleep 0.1
  done
  sleep 1
}

start_kamailio "$dir/empty"
kam_empty_kb=$(pss_kb $(kam_pids "$kam_pid"))
stop_node "$kam_pid"
start_kamailio "$dir/db"
kam_full_kb=$(pss_kb $(kam_pids "$kam_pid"))

# ---- x700 ----
node_cpus=0 start_node x700 --sip "127.0.0.1:$x700_port" --event-loops 1 --no-pin
x700_pid=$node_pid
kam_all=$(kam_pids "$kam_pid")

cpu_s() { # PIDS: user + system seconds, summed
  local total=0 p
  for p in "$@"; do total=$(echo "$total + $(process_cpu_s "$p")" | bc); done
  echo "$total"
}

# One sipp run: TARGET_PORT RATE CALLS TAG TIMEOUT_S; prints
# "calls_per_s retransmissions failed sipp_cpu_s server_cpu_s
# server_us_per_call p50_ms p99_ms
# within_1ms_share". sipp times responses in whole milliseconds (its clock
# ticks in ms): p50/p99 are multiples of 1 ms, and the share of calls whose
# 302 came within the tick it was sent in or the next says more.
run_sipp() {
  local port=$1 rate=$2 calls=$3 tag=$4 timeout_s=$5 server_pids
  if [ "$port" = "$x700_port" ]; then server_pids=$x700_pid; else server_pids=$kam_all; fi
  local before_server
  before_server=$(cpu_s $server_pids)
  rm -f "$dir"/uac_*_rtt.csv "$dir/$tag.stat.csv"
  (cd "$dir" && exec taskset -c 1 sipp "127.0.0.1:$port" -sf uac.xml -inf calls.csv -t u1 -i 127.0.0.1 \
    -r "$rate" -l "$limit" -m "$calls" -timeout "${timeout_s}s" -nostdin -buff_size 8388608 \
    -trace_stat -stf "$tag.stat.csv" -fd 1 -trace_rtt -rtt_freq 1000 >/dev/null 2>&1) &
  local sipp_pid=$! sipp_cpu=0 started
  started=$(date +%s.%N)
  while kill -0 "$sipp_pid" 2>/dev/null; do
    sipp_cpu=$(process_cpu_s "$sipp_pid" 2>/dev/null || echo "$sipp_cpu")
    sleep 0.2
  done
  wait "$sipp_pid" || true
  local wall_s
  wall_s=$(echo "$(date +%s.%N) - $started" | bc)
  local server_cpu
  server_cpu=$(echo "$(cpu_s $server_pids) - $before_server" | bc)
  python3 - "$dir/$tag.stat.csv" "$dir" "$sipp_cpu" "$server_cpu" "$wall_s" <<'EOF'
import csv, glob, sys
rows = list(csv.reader(open(sys.argv[1]), delimiter=';'))
head, last = rows[0], rows[-1]
col = lambda name: last[head.index(name)]
ok, failed = int(col('SuccessfulCall(C)')), int(col('FailedCall(C)'))
elapsed = float(sys.argv[5])  # sipp's own ElapsedTime counts whole seconds
retrans = int(col('Retransmissions(C)'))
times = []
for f in glob.glob(sys.argv[2] + '/uac_*_rtt.csv'):
    for line in open(f).read().splitlines()[1:]:
        parts = line.split(';')
        if len(parts) >= 2:
            try: times.append(float(parts[1]))
            except ValueError: pass
times.sort()
pick = lambda q: times[min(len(times) - 1, int(q * len(times)))] if times else float('nan')
within = sum(1 for t in times if t <= 1.0) / len(times) if times else float('nan')
us = float(sys.argv[4]) * 1e6 / ok if ok else float('nan')
print(f"{ok / elapsed:.0f} {retrans} {failed} {sys.argv[3]} {sys.argv[4]} {us:.1f} {pick(0.5):.0f} {pick(0.99):.0f} {within:.4f}")
EOF
}

median() { sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }

{
  echo "# perf/sip-vs-kamailio.sh, $(date -u +%FT%TZ), N=$n bindings, ${duration}s per figure, $repeats rounds"
  echo "# $(nproc) cores; servers pinned to core 0, sipp to core 1; $(kamailio -v | head -1); $(sipp -v 2>&1 | grep -o 'SIPp v[^ ]*')"
  echo "# kamailio processes: $kam_all; x700: $x700_pid"
  echo "# columns: target round kind rate_asked calls_per_s retransmissions failed sipp_cpu_s server_cpu_s server_us_per_call p50_ms p99_ms within_1ms_share"
} | tee "$out"
declare -A peaks
for round in $(seq "$repeats"); do
  for target in x700 kamailio; do
    port=$x700_port
    [ "$target" = kamailio ] && port=$kam_port
    read -r cps retrans failed sipp_cpu server_cpu us p50 p99 within < <(run_sipp "$port" "$rate_max" "$((rate_max * duration))" "$target-peak-$round" "$duration")
    echo "$target $round peak $rate_max $cps $retrans $failed $sipp_cpu $server_cpu $us $p50 $p99 $within" | tee -a "$out"
    peaks[$target]="${peaks[$target]:-} $cps"
  done
done
for target in x700 kamailio; do
  port=$x700_port
  [ "$target" = kamailio ] && port=$kam_port
  peak=$(echo ${peaks[$target]} | tr ' ' '\n' | median)
  half=$((peak / 2))
  read -r cps retrans failed sipp_cpu server_cpu us p50 p99 within < <(run_sipp "$port" "$half" "$((half * duration))" "$target-half" "$((duration * 3))")
  echo "$target - half_peak $half $cps $retrans $failed $sipp_cpu $server_cpu $us $p50 $p99 $within" | tee -a "$out"
  echo "$target median_peak_calls_per_s $peak" | tee -a "$out"
done
# ---- the same, with examples/sip_blast.rs as the caller ----
# sipp cannot saturate either server (see the header); sip_blast (one
# socket, a microsecond clock, no retransmissions) can. Closed loop with
# BLAST_WINDOW calls open: the peak; then open loop at half of each one's
# peak: latency in microseconds.
# One run: TARGET_PORT WINDOW [RATE]; prints "calls_per_s ok other lost
# p50_us p99_us server_cpu_s client_cpu_s server_us_per_call".
run_blast() {
  local port=$1 window=$2 rate=${3:-} server_pids
  if [ "$port" = "$x700_port" ]; then server_pids=$x700_pid; else server_pids=$kam_all; fi
  local before_server before_self
  before_server=$(cpu_s $server_pids)
  local line
  line=$(cd "$dir" && /usr/bin/time -f "%U %S" -o "$dir/blast.time" taskset -c 1 "$blast" "127.0.0.1:$port" calls.csv "$window" "$duration" $rate)
  local server_cpu client_cpu
  server_cpu=$(echo "$(cpu_s $server_pids) - $before_server" | bc)
  client_cpu=$(awk '{print $1 + $2}' "$dir/blast.time")
  read -r cps ok other lost p50 p99 <<<"$line"
  echo "$cps $ok $other $lost $p50 $p99 $server_cpu $client_cpu $(echo "scale=2; $server_cpu * 1000000 / ($ok + $other + 1)" | bc)"
}
blast_window=${BLAST_WINDOW:-256}
echo "# sip_blast: columns: target round kind window rate calls_per_s answered_302 other lost p50_us p99_us server_cpu_s client_cpu_s server_us_per_call" | tee -a "$out"
declare -A blast_peaks
for round in $(seq "$repeats"); do
  for target in x700 kamailio; do
    port=$x700_port
    [ "$target" = kamailio ] && port=$kam_port
    read -r cps rest < <(run_blast "$port" "$blast_window")
    echo "blast $target $round peak $blast_window - $cps $rest" | tee -a "$out"
    blast_peaks[$target]="${blast_peaks[$target]:-} $cps"
  done
done
x700_blast_peak=$(echo ${blast_peaks[x700]} | tr ' ' '\n' | median)
kam_blast_peak=$(echo ${blast_peaks[kamailio]} | tr ' ' '\n' | median)
for target in x700 kamailio; do
  port=$x700_port
  [ "$target" = kamailio ] && port=$kam_port
  peak=$x700_blast_peak
  [ "$target" = kamailio ] && peak=$kam_blast_peak
  read -r cps rest < <(run_blast "$port" 4096 "$((peak / 2))")
  echo "blast $target - half_own_peak 4096 $((peak / 2)) $cps $rest" | tee -a "$out"
done
read -r cps rest < <(run_blast "$kam_port" 4096 "$((x700_blast_peak / 2))")
echo "blast kamailio - half_x700_peak 4096 $((x700_blast_peak / 2)) $cps $rest" | tee -a "$out"
echo "blast ratio x700/kamailio median peak calls/s: $(echo "scale=2; $x700_blast_peak / $kam_blast_peak" | bc)" | tee -a "$out"

kam_per_entry=$(echo "scale=1; ($kam_full_kb - $kam_empty_kb) * 1024 / (2 * $n)" | bc)
{
  echo "kamailio memory: PSS $kam_empty_kb KiB empty, $kam_full_kb KiB with $((2 * n)) entries: $kam_per_entry B per entry, $(echo "scale=1; $kam_per_entry * 2" | bc) B per binding"
  echo "x700 memory: $x700_bytes_per_binding B per binding (x700 stats --data --json bytes_per_binding: both directions of a pair)"
  x=$(echo ${peaks[x700]} | tr ' ' '\n' | median)
  k=$(echo ${peaks[kamailio]} | tr ' ' '\n' | median)
  echo "ratio x700/kamailio median peak calls/s: $(echo "scale=2; $x / $k" | bc)"
} | tee -a "$out"
