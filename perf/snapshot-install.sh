#!/usr/bin/env bash
# Step-6 benchmark: how long a node added to a running cluster of three
# local members holding BINDINGS bindings takes to catch up by the leader's
# snapshot, and how long writes at the leader stall meanwhile.
#
# 1. Three `x700 serve --raft` members (`--shards 1 --no-pin`, a checkpoint
#    every CHECKPOINT_S seconds, `[log] margin_entries = 500`) are `x700
#    cluster init`ed on loopback. The margin is small so that the leader
#    purges the load from its log and a new node cannot catch up from it
#    (a pipelined load batches about 500 binds an entry: even 10M binds
#    stay under the default margin of 100,000 entries), yet holds the
#    writes made while the image travels and is checked (20 a second
#    below): with a margin of 10 the leader had purged past each snapshot
#    by the time the new node had installed it, and sent it the next one.
# 2. `x700 load --server LEADER` binds BINDINGS synthetic AXB bindings
#    (pipelined: 4 connections x 256 in flight); the client's CPU is timed.
# 3. The script waits for two checkpoints past the load and for the
#    followers to apply it.
# 4. An open-loop `x700 bench` binds fresh bindings at the leader at 20/s
#    (timeout 120 s) for 10 s (the baseline), then again throughout step 5:
#    its worst latency there is the longest stall of writes at the leader
#    (whose state machine holds off applies while it makes the image), to
#    within the 50 ms between two binds.
# 5. A fourth, empty member starts and `x700 cluster add-node` adds it. The
#    script polls every 50 ms: the leader's `DIR/snapshot/*.image.new`
#    (image being made) and `*.image` (made), the new node's
#    `DIR/snapshot-incoming.image` (first chunk) and its log lines
#    `received the leader's snapshot ... (B bytes, every page checked in T
#    ms)` and `installed ... in T ms`; then `x700 bench` looks up a sample
#    of 10,000 loaded bindings at the new node (uniform keys, every answer
#    checked) until all of them route.
# Usage: perf/snapshot-install.sh [BINDINGS]   (default 10000000)
# Writes perf/results/snapshot-install-<BINDINGS>.json and prints one line.
# Data directories live in a temporary directory under BENCH_DIR (default
# /var/tmp), removed at the end (kept if KEEP_WORK is set); every process started is stopped by its
# process id on exit. Ports PORT_BASE+1..+4 (clients), +11..+14 (raft);
# PORT_BASE defaults to 28800. Every wait is bounded.
set -euo pipefail
cd "$(dirname "$0")/.."
n=${1:-10000000}
base=${PORT_BASE:-28800}
checkpoint_s=${CHECKPOINT_S:-5}
# Longest wait for the new node to catch up (image, transfer, checks, swap).
catch_up_limit_s=$((120 + n / 20000))
# The stall bench runs from before add-node until well past the image.
stall_s=$((20 + n / 100000))
command -v jq >/dev/null || apt-get install -y -qq jq >/dev/null
cargo build --release --quiet --bin x700
x700=${CARGO_TARGET_DIR:-$PWD/target}/release/x700
work=$(mktemp -d -p "${BENCH_DIR:-/var/tmp}")
secret=snapshot-install-secret-0123456789
pids=()
cleanup() {
  for pid in "${pids[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
  for pid in "${pids[@]}"; do wait "$pid" 2>/dev/null || true; done
  if [ -n "${KEEP_WORK:-}" ]; then echo "kept $work" >&2; else rm -rf "$work"; fi
}
trap cleanup EXIT
client() { echo "127.0.0.1:$((base + $1))"; }
raft() { echo "127.0.0.1:$((base + 10 + $1))"; }
now_ms() { date +%s%3N; }
load_average() { cut -d' ' -f1-3 /proc/loadavg; }
started() {  # log file: waits for the start-up line
  for _ in $(seq 300); do grep -q 'tcp=' "$1" 2>/dev/null && return 0; sleep 0.05; done
  echo "did not start: $(cat "$1")" >&2; return 1
}
stats() { "$x700" stats --server "$(client "$1")" --json; }
cat > "$work/x700.toml" <<TOML
[log]
checkpoint_interval_s = $checkpoint_s
margin_entries = 500
TOML
serve() {  # id: starts member id on its own directory
  "$x700" serve --config "$work/x700.toml" --data "$work/n$1" --listen "$(client "$1")" \
    --raft "$(raft "$1")" --node-id "$1" --cluster-secret "$secret" --shards 1 --no-pin \
    > "$work/n$1.log" 2>&1 &
  pids+=($!)
  started "$work/n$1.log"
}

load_before=$(load_average)
echo "three members" >&2
for id in 1 2 3; do serve "$id"; done
"$x700" cluster init --server "$(client 1)" --member "1=$(raft 1)=$(client 1)" \
  --member "2=$(raft 2)=$(client 2)" --member "3=$(raft 3)=$(client 3)" > /dev/null
leader=""
for _ in $(seq 200); do
  leader=$("$x700" cluster status --server "$(client 1)" --json | jq -r '.leader_id // empty')
  [ -n "$leader" ] && break
  sleep 0.1
done
[ -n "$leader" ] || { echo "no leader after cluster init" >&2; exit 1; }

echo "loading $n bindings at the leader (node $leader)" >&2
TIMEFORMAT='%R %U %S'
{ time timeout 7200 "$x700" load --server "$(client "$leader")" --bindings "$n" --quiet --json \
    > "$work/load.json"; } 2> "$work/load.time"
read -r load_real load_user load_sys < "$work/load.time"
load_cpu=$(awk -v r="$load_real" -v u="$load_user" -v s="$load_sys" 'BEGIN{printf "%.2f", (u+s)/r}')
load_average_after_load=$(load_average)

echo "waiting for two checkpoints past the load" >&2
checkpoints_at_load=$(stats "$leader" | jq '.log.checkpoints')
for _ in $(seq $((checkpoint_s * 40 + 600))); do
  [ "$(stats "$leader" | jq '.log.checkpoints')" -ge $((checkpoints_at_load + 2)) ] && break
  sleep 0.1
done
for id in 1 2 3; do  # the followers apply the load (10 minutes at most)
  for _ in $(seq 6000); do
    [ "$(stats "$id" | jq '.cluster.lag_entries')" = 0 ] && break
    sleep 0.1
  done
done
leader_stats=$(stats "$leader" | jq -c '{bindings_live, log: (.log | {applied_index, checkpoints, checkpoint_page_bytes, segment_bytes})}')
table_bytes=$(du -sb --exclude=log "$work/n$leader" | cut -f1)

echo "binds at the leader, 10 s without add-node (the baseline)" >&2
"$x700" bench --server "$(client "$leader")" --mix bind=1 --rate 20 --connections 1 \
  --pipeline 256 --warmup-s 0.5 --duration-s 10 --timeout-ms 120000 --slow-ms 50 \
  --seed 2 --quiet --json "$work/baseline.json" > /dev/null 2>&1

echo "a fourth member: add-node while binds go on at the leader" >&2
"$x700" bench --server "$(client "$leader")" --mix bind=1 --rate 20 --connections 1 \
  --pipeline 256 --warmup-s 0.5 --duration-s "$stall_s" --timeout-ms 120000 --slow-ms 50 \
  --seed 3 --quiet --json "$work/stall.json" > "$work/stall.txt" 2>&1 &
stall_pid=$!
pids+=("$stall_pid")
serve 4
sleep 2
load_average_at_add=$(load_average)
added_ms=$(now_ms)
"$x700" cluster add-node --server "$(client "$leader")" --member "4=$(raft 4)=$(client 4)" \
  --json > "$work/add.json" 2>&1 &
add_pid=$!
pids+=("$add_pid")
image_started_ms="" image_made_ms="" first_chunk_ms="" received_ms="" installed_ms=""
for _ in $(seq $((catch_up_limit_s * 20))); do
  t=$(now_ms)
  # Seen before the log is read: add-node answers ok only after the
  # install. (Its client gives up after 30 s without an answer while the
  # leader goes on: then only the new member's log tells.)
  add_ok=""
  if ! kill -0 "$add_pid" 2>/dev/null; then
    add_ok=$(jq -r 'select(.status == "ok") | "yes"' "$work/add.json" 2>/dev/null || true)
  fi
  if [ -z "$image_started_ms" ] && compgen -G "$work/n$leader/snapshot/*.image.new" > /dev/null; then
    image_started_ms=$t
  fi
  if [ -z "$image_made_ms" ] && compgen -G "$work/n$leader/snapshot/*.image" > /dev/null; then
    image_made_ms=$t
  fi
  if [ -z "$first_chunk_ms" ] && [ -e "$work/n4/snapshot-incoming.image" ]; then
    first_chunk_ms=$t
  fi
  if [ -z "$received_ms" ] && grep -q "received the leader's snapshot" "$work/n4.log"; then
    received_ms=$t
  fi
  if grep -q "installed the leader's snapshot" "$work/n4.log"; then
    installed_ms=$t
    break
  fi
  grep -q "refused the leader's snapshot" "$work/n4.log" && break
  if [ -n "$add_ok" ]; then
    echo "add-node returned, and no snapshot was installed: $(cat "$work/add.json")" >&2
    echo "the new member: $(stats 4 | jq -c '{bindings_live, log}')" >&2
    echo "the leader: $(stats "$leader" | jq -c '{bindings_live, log}'); $(ls "$work/n$leader/log" "$work/n4/log")" >&2
    break
  fi
  sleep 0.05
done
[ -n "$installed_ms" ] || { echo "no snapshot installed: $(cat "$work/n4.log")" >&2; exit 1; }

echo "looking up 10,000 loaded bindings at the new member" >&2
routed_ms="" sample_rounds=0
for _ in $(seq 600); do
  sample_rounds=$((sample_rounds + 1))
  if "$x700" bench --server "$(client 4)" --mix lookup=1 --bindings "$n" --requests 10000 \
      --connections 1 --pipeline 64 --warmup-s 0 --seed 1 --quiet \
      --json "$work/sample.json" > /dev/null 2>&1 \
    && [ "$(jq '.requests_ok' "$work/sample.json")" = 10000 ]; then
    routed_ms=$(now_ms)
    break
  fi
  sleep 0.1
done
[ -n "$routed_ms" ] || {
  echo "the new member does not route the sample: $(jq -c '{requests_ok, requests_failed, wrong_answers, timeouts, by_status, errors}' "$work/sample.json" 2>&1)" >&2
  exit 1
}

for _ in $(seq 3000); do kill -0 "$add_pid" 2>/dev/null || break; sleep 0.1; done
add_answer=$(jq -c '{members: [.members[]? | {id, role}], error}' "$work/add.json" 2>/dev/null \
  || jq -Rsc . "$work/add.json")
for _ in $(seq $((stall_s * 10 + 600))); do kill -0 "$stall_pid" 2>/dev/null || break; sleep 0.1; done
new_stats=$(stats 4 | jq -c '{bindings_live, log: (.log | {applied_index, snapshots_installed})}')
received_line=$(grep -m1 "received the leader's snapshot" "$work/n4.log")
installed_line=$(grep -m1 "installed the leader's snapshot" "$work/n4.log")
snapshot_index=$(sed -E 's/.*log index ([0-9]+).*/\1/' <<< "$received_line")
image_bytes=$(sed -E 's/.*\(([0-9]+) bytes.*/\1/' <<< "$received_line")
checked_ms=$(sed -E 's/.*checked in ([0-9]+) ms.*/\1/' <<< "$received_line")
swap_ms=$(sed -E 's/.* in ([0-9]+) ms$/\1/' <<< "$installed_line")
since() { [ -n "$1" ] && echo $(($1 - added_ms)) || echo null; }
rate() { awk -v b="$1" -v ms="$2" 'BEGIN{ if (ms > 0) printf "%.0f", b / ms * 1000; else print "null" }'; }
transfer_ms=$(( received_ms - checked_ms - ${first_chunk_ms:-$added_ms} ))

out="perf/results/snapshot-install-$n.json"
cat > "$out" <<JSON
{
  "command": "perf/snapshot-install.sh $n",
  "date": "$(date -u +%FT%TZ)",
  "commit": "$(git rev-parse --short HEAD)",
  "machine": {"cores": $(nproc), "cpu": "$(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs)", "kernel": "$(uname -r)", "data_fs": "$(df -T "$work" | tail -1 | awk '{print $1" "$2}')"},
  "load_average": {"before": "$load_before", "after_load": "$load_average_after_load", "at_add_node": "$load_average_at_add", "at_end": "$(load_average)"},
  "setup": "one $(nproc)-core machine, nothing pinned: three members and then a fourth (each --shards 1: one event loop, a raft thread, a log-sync thread, all on the same disk) and the clients; checkpoint every $checkpoint_s s, margin_entries 500; loopback TCP; times polled every 50 ms",
  "load": {"bindings": $n, "client": $(jq -c '{created, failed, elapsed_s, binds_per_s, bind_latency_us}' "$work/load.json"), "client_cpu": {"real_s": $load_real, "user_s": $load_user, "sys_s": $load_sys, "cores_used": $load_cpu}},
  "leader_before_add_node": $leader_stats,
  "leader_table_bytes": $table_bytes,
  "snapshot": {
    "log_index": $snapshot_index,
    "image_bytes": $image_bytes,
    "leader_image_ms": $( [ -n "$image_started_ms" ] && [ -n "$image_made_ms" ] && echo $((image_made_ms - image_started_ms)) || echo null ),
    "add_node_to_image_started_ms": $(since "$image_started_ms"),
    "add_node_to_image_made_ms": $(since "$image_made_ms"),
    "add_node_to_first_chunk_ms": $(since "$first_chunk_ms"),
    "transfer_ms": $transfer_ms,
    "transfer_bytes_per_s": $(rate "$image_bytes" "$transfer_ms"),
    "received_checked_ms": $checked_ms,
    "add_node_to_received_ms": $(since "$received_ms"),
    "install_swap_ms": $swap_ms,
    "add_node_to_installed_ms": $(since "$installed_ms"),
    "add_node_to_sample_routed_ms": $(since "$routed_ms"),
    "sample_lookups": 10000,
    "sample_rounds": $sample_rounds,
    "sample_client_cpu": $(jq -c '.client_cpu | {cores_used, saturated}' "$work/sample.json"),
    "received_line": $(jq -Rn --arg l "$received_line" '$l'),
    "installed_line": $(jq -Rn --arg l "$installed_line" '$l')
  },
  "add_node_answer": $add_answer,
  "new_member_after": $new_stats,
  "writes_at_leader_before_add_node": $(jq -c '{target_rate_per_s, elapsed_s, requests_ok, requests_failed, slow_requests, latency_us: (.latency_us | {p50, p99, p999, max})}' "$work/baseline.json"),
  "writes_at_leader_during_add_node": $(jq -c '{target_rate_per_s, elapsed_s, requests_ok, requests_failed, timeouts, by_status, slow_threshold_ms, slow_requests, latency_us: (.latency_us | {p50, p99, p999, max}), client_cpu: (.client_cpu | {cores_used})}' "$work/stall.json")
}
JSON
jq -c '{bindings: .load.bindings, load_s: .load.client.elapsed_s, image_bytes: .snapshot.image_bytes, image_ms: .snapshot.leader_image_ms, to_first_chunk_ms: .snapshot.add_node_to_first_chunk_ms, checked_ms: .snapshot.received_checked_ms, to_received_ms: .snapshot.add_node_to_received_ms, swap_ms: .snapshot.install_swap_ms, to_routed_ms: .snapshot.add_node_to_sample_routed_ms, bind_max_us_before: .writes_at_leader_before_add_node.latency_us.max, bind_max_us_during: .writes_at_leader_during_add_node.latency_us.max, load_average: .load_average.at_add_node}' "$out"
