#!/usr/bin/env bash
# Failover loop: three local `x700 serve --raft` members (`x700 cluster
# init`), and KILLS times: bind load at the leader and lookup load at a
# follower (`x700 bench`, open loop), plus a checker binding one fresh X
# after another with `x700 bind` and recording each acknowledged one; the
# leader is killed with SIGKILL mid-load and restarted on its data
# directory and addresses. Per kill it records the failover time (from
# the kill until a new leader acknowledges a write: `x700 cluster status`
# on the survivors, then one `x700 bind` at the leader they name), the
# lookups the follower failed, and how long the restarted member took to
# lag by no entry again (STATS `cluster.lag_entries`). At the end every
# acknowledged bind of the checker must route on every member.
# Usage: perf/failover-loop.sh [KILLS]   (default 100; at most 60 s a kill)
# Writes perf/results/<date>-failover-loop.json (and the per-kill lines and
# bench JSON in perf/results/<date>-failover-loop/). Installs jq if
# missing; stops every process it starts, by process id. Ports PORT_BASE+1..
# +3 (clients), +11..+13 (raft), +21..+23 (admin); PORT_BASE defaults to 27700.
set -euo pipefail
cd "$(dirname "$0")/.."
kills=${1:-100}
base=${PORT_BASE:-27700}
command -v jq >/dev/null || apt-get install -y -qq jq >/dev/null
cargo build --release --quiet --bin x700
x700=${CARGO_TARGET_DIR:-$PWD/target}/release/x700
runs="perf/results/$(date -u +%F)-failover-loop"
mkdir -p "$runs"
work=$(mktemp -d -p "${BENCH_DIR:-/var/tmp}")
secret=failover-loop-secret-0123456789
declare -A pid_of=()
others=()
cleanup() {
  touch "$work/stop"
  for pid in "${pid_of[@]}" "${others[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
  for pid in "${pid_of[@]}" "${others[@]}"; do wait "$pid" 2>/dev/null || true; done
  rm -rf "$work"
}
trap cleanup EXIT

client() { echo "127.0.0.1:$((base + $1))"; }
raft() { echo "127.0.0.1:$((base + 10 + $1))"; }
admin() { echo "127.0.0.1:$((base + 20 + $1))"; }
now() { date +%s.%N; }
ms_since() { awk -v a="$1" -v b="$(now)" 'BEGIN{printf "%d", (b-a)*1000}'; }

# Checkpoints an hour apart: a member down a few seconds must find the log
# it missed still there (no snapshots yet, OPERATIONS.md "Clusters").
for id in 1 2 3; do
  mkdir -p "$work/n$id"
  printf '[log]\ncheckpoint_interval_s = 3600\n' > "$work/n$id.toml"
done
start() {  # id: starts member id on its directory and addresses
  local id=$1
  "$x700" serve --config "$work/n$id.toml" --data "$work/n$id" --listen "$(client "$id")" \
    --admin "$(admin "$id")" --raft "$(raft "$id")" --node-id "$id" --cluster-secret "$secret" \
    --shards 1 --no-pin > "$work/n$id.log" 2>&1 &
  pid_of[$id]=$!
  for _ in $(seq 200); do grep -q 'tcp=' "$work/n$id.log" 2>/dev/null && return 0; sleep 0.05; done
  echo "member $id did not start: $(cat "$work/n$id.log")" >&2; return 1
}
leader_seen_by() {  # id: prints "leader_id leader_addr" if member id knows a leader
  "$x700" cluster status --server "$(client "$1")" --json 2>/dev/null \
    | jq -r 'select(.leader_id != null and .leader_addr != null) | "\(.leader_id) \(.leader_addr)"' \
    || true
}
bind_one() {  # server n: binds the checker's X number n; records it if acknowledged
  local x
  x=$(printf '700%012d' $((900000000000 + $2)))
  if "$x700" bind axb --server "$1" --x "$x" --a 13800000001 --b 13900000002 --tenant 7 \
      --order "failover-$2" --ttl-s 86400 > /dev/null 2>&1; then
    echo "$x" >> "$work/acked"; return 0
  fi
  return 1
}

for id in 1 2 3; do start "$id"; done
"$x700" cluster init --server "$(client 1)" --member "1=$(raft 1)=$(client 1)" \
  --member "2=$(raft 2)=$(client 2)" --member "3=$(raft 3)=$(client 3)" > /dev/null
leader=""
for _ in $(seq 100); do leader=$(leader_seen_by 1); [ -n "$leader" ] && break; sleep 0.1; done
[ -n "$leader" ] || { echo "no leader after cluster init" >&2; exit 1; }
read -r leader_id leader_addr <<< "$leader"
echo "$leader_addr" > "$work/leader"
preload=20000
"$x700" load --server "$leader_addr" --bindings "$preload" --quiet > /dev/null

# The checker: one fresh X after another at the leader it last heard of. A
# bind without an answer (leader killed, not_leader) is not acknowledged;
# its X is never tried again.
checker() {
  local n=0
  while [ ! -e "$work/stop" ]; do
    bind_one "$(cat "$work/leader")" "$n" || sleep 0.05
    n=$((n + 1))
    sleep 0.02
  done
}
checker &
others+=($!)

: > "$runs/kills.txt"
probe=1000000000
deadline=$(( $(date +%s) + 60 * kills ))
for k in $(seq "$kills"); do
  [ "$(date +%s)" -lt "$deadline" ] || { echo "time limit reached after $((k - 1)) kills" >&2; break; }
  follower=""
  for id in 1 2 3; do [ "$id" != "$leader_id" ] && { follower=$id; break; }; done
  # Seed 1: the preloaded bindings (`x700 load`'s seed), all hits.
  "$x700" bench --server "$(client "$follower")" --mix lookup=1 --bindings "$preload" \
    --rate 4000 --connections 2 --pipeline 16 --duration-s 4 --warmup-s 0 --seed 1 --quiet \
    --json "$runs/lookups-$k.json" > /dev/null 2>&1 &
  lookups=$!
  "$x700" bench --server "$leader_addr" --mix bind=1 --rate 4000 --connections 2 --pipeline 16 \
    --duration-s 4 --warmup-s 0 --seed "$k" --quiet --json "$runs/binds-$k.json" > /dev/null 2>&1 &
  binds=$!
  sleep 1.5
  t0=$(now)
  kill -KILL "${pid_of[$leader_id]}"; wait "${pid_of[$leader_id]}" 2>/dev/null || true
  unset "pid_of[$leader_id]"
  killed=$leader_id
  failover_ms=""
  while [ "$(ms_since "$t0")" -lt 30000 ]; do
    for id in 1 2 3; do
      [ "$id" = "$killed" ] && continue
      leader=$(leader_seen_by "$id")
      [ -n "$leader" ] || continue
      read -r new_id new_addr <<< "$leader"
      [ "$new_id" != "$killed" ] || continue
      probe=$((probe + 1))
      if bind_one "$new_addr" "$probe"; then
        failover_ms=$(ms_since "$t0")
        leader_id=$new_id; leader_addr=$new_addr
        echo "$leader_addr" > "$work/leader"
        break 2
      fi
    done
    sleep 0.02
  done
  [ -n "$failover_ms" ] || { echo "kill $k: no new leader took a write within 30 s" >&2; exit 1; }
  start "$killed"
  t1=$(now)
  catch_up_ms=""
  while [ "$(ms_since "$t1")" -lt 20000 ]; do
    stats=$("$x700" stats --server "$(client "$killed")" --json 2>/dev/null || echo '{}')
    lag=$(jq -r '.cluster.lag_entries // empty' <<< "$stats")
    ms=$(jq -r '.cluster.lag_ms // empty' <<< "$stats")
    if [ "$lag" = 0 ] && [ -n "$ms" ] && [ "$ms" -lt 1000 ]; then catch_up_ms=$(ms_since "$t1"); break; fi
    sleep 0.05
  done
  wait "$lookups" || true
  wait "$binds" || true
  failed=$(jq '.requests_failed + .timeouts + .lost_on_close + .connection_errors' "$runs/lookups-$k.json")
  line="{\"kill\": $k, \"killed\": $killed, \"new_leader\": $leader_id, \"failover_ms\": $failover_ms, \"catch_up_ms\": ${catch_up_ms:-null}, \"lookups_answered\": $(jq .requests_answered "$runs/lookups-$k.json"), \"lookups_failed\": $failed, \"binds_acked_by_bench\": $(jq .requests_ok "$runs/binds-$k.json")}"
  echo "$line" | tee -a "$runs/kills.txt"
done
touch "$work/stop"
for pid in "${others[@]}"; do wait "$pid" 2>/dev/null || true; done
others=()

# Every acknowledged bind of the checker on every member (each has had
# 20 s to catch up above; give the last one a few more).
sleep 2
acked=$(wc -l < "$work/acked")
lost=0
for id in 1 2 3; do
  missing=0
  while read -r x; do
    "$x700" lookup --server "$(client "$id")" --caller 13800000001 --called "$x" --json 2>/dev/null \
      | jq -e '.callee == "13900000002"' > /dev/null || missing=$((missing + 1))
  done < "$work/acked"
  echo "member $id misses $missing of $acked acknowledged binds" >&2
  [ "$missing" -le "$lost" ] || lost=$missing
done

out="perf/results/$(date -u +%F)-failover-loop.json"
jq -s --arg command "perf/failover-loop.sh $kills" --arg date "$(date -u +%FT%TZ)" \
  --arg commit "$(git rev-parse --short HEAD)" --arg machine "$(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs), load $(cut -d' ' -f1-3 /proc/loadavg)" \
  --argjson acked "$acked" --argjson lost "$lost" '
  def pct(p): sort | .[((length - 1) * p | floor)];
  {command: $command, date: $date, commit: $commit, machine: $machine,
   setup: "3 members on one machine (--shards 1 --no-pin: the scheduler shares the 2 cores among 3 nodes, 2 bench clients and the checker); per kill: bind load 4000/s at the leader, lookup load 4000/s at a follower (x700 bench, open loop, 4 s, 20,000 preloaded bindings), leader killed 1.5 s in",
   kills: length,
   failover_ms: (map(.failover_ms) | {p50: pct(0.5), p99: pct(0.99), max: max}),
   catch_up_ms: (map(.catch_up_ms | select(. != null)) | {p50: pct(0.5), max: max}),
   restarted_members_not_caught_up_in_20_s: (map(select(.catch_up_ms == null)) | length),
   lookups_answered: (map(.lookups_answered) | add), lookups_failed: (map(.lookups_failed) | add),
   checker_binds_acked: $acked, acked_binds_lost_worst_member: $lost,
   targets: {lookups_failed: 0, acked_binds_lost: 0},
   per_kill: .}' "$runs/kills.txt" > "$out"
cat "$out"
[ "$lost" -eq 0 ]
