#!/usr/bin/env bash
# Step-6 benchmark, in one run on this machine: replicated durable binds
# per second on a cluster of three local members (`x700 serve --raft`,
# `x700 cluster init`) beside the same on a single node (step 4's
# one-member write path), and lookups per second served by a follower
# beside the leader's. Every figure is `x700 bench`'s closed-loop peak
# (8 connections x 256 in flight, fresh AXB binds; lookups of N preloaded
# bindings). A bind is answered once a majority holds it durably (each
# member's group commit fsyncs its log) and the leader has applied it.
# Nothing is pinned: the kernel shares the machine's cores among the three
# members (each `--shards 1`: one event loop, a raft thread, a log-sync
# thread) and the bench client (one thread); the single node runs the same
# way with the two other members stopped, so the two bind figures differ
# only by replication.
# Usage: perf/bench-cluster.sh [SECONDS] [N]   (defaults 10, 1000000)
# Writes perf/results/<date>-bench-cluster.json (and each x700 bench JSON
# in perf/results/<date>-bench-cluster/). Installs jq if missing; stops
# every process it starts, by process id. Ports PORT_BASE+1..+3 (clients),
# +11..+13 (raft); PORT_BASE defaults to 28700.
set -euo pipefail
cd "$(dirname "$0")/.."
seconds=${1:-10}
n=${2:-1000000}
base=${PORT_BASE:-28700}
command -v jq >/dev/null || apt-get install -y -qq jq >/dev/null
cargo build --release --quiet --bin x700
x700=${CARGO_TARGET_DIR:-$PWD/target}/release/x700
runs="perf/results/$(date -u +%F)-bench-cluster"
mkdir -p "$runs"
work=$(mktemp -d -p "${BENCH_DIR:-/var/tmp}")
secret=bench-cluster-secret-0123456789
pids=()
cleanup() {
  for pid in "${pids[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
  for pid in "${pids[@]}"; do wait "$pid" 2>/dev/null || true; done
  rm -rf "$work"
}
trap cleanup EXIT
client() { echo "127.0.0.1:$((base + $1))"; }
raft() { echo "127.0.0.1:$((base + 10 + $1))"; }
started() {  # log file: waits for the start-up line
  for _ in $(seq 200); do grep -q 'tcp=' "$1" 2>/dev/null && return 0; sleep 0.05; done
  echo "did not start: $(cat "$1")" >&2; return 1
}
stop_all() {
  for pid in "${pids[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
  for pid in "${pids[@]}"; do wait "$pid" 2>/dev/null || true; done
  pids=()
}
bench() {  # name args...: one x700 bench run; its JSON in $runs/name.json
  local name=$1; shift
  "$x700" bench --connections 8 --pipeline 256 --warmup-s 1 --duration-s "$seconds" --quiet \
    --json "$runs/$name.json" "$@" > "$runs/$name.txt"
}
summary() { jq -c '{achieved_rate_per_s, requests_ok, requests_failed, by_status, latency_us: (.latency_us | {p50, p99, p999, max}), client_cpu: (.client_cpu | {cores_used, saturated})}' "$runs/$1.json"; }
rate_of() { jq '.achieved_rate_per_s' "$runs/$1.json"; }
ratio() { awk -v a="$1" -v b="$2" 'BEGIN{printf "%.2f", a/b}'; }

echo "single node: binds" >&2
"$x700" serve --data "$work/single" --listen "$(client 1)" --shards 1 --no-pin > "$work/single.log" 2>&1 &
pids+=($!)
started "$work/single.log"
bench single-binds --server "$(client 1)" --mix bind=1 --seed 1
stop_all

echo "three members: binds at the leader" >&2
for id in 1 2 3; do
  "$x700" serve --data "$work/n$id" --listen "$(client "$id")" --raft "$(raft "$id")" \
    --node-id "$id" --cluster-secret "$secret" --shards 1 --no-pin > "$work/n$id.log" 2>&1 &
  pids+=($!)
done
for id in 1 2 3; do started "$work/n$id.log"; done
"$x700" cluster init --server "$(client 1)" --member "1=$(raft 1)=$(client 1)" \
  --member "2=$(raft 2)=$(client 2)" --member "3=$(raft 3)=$(client 3)" > /dev/null
leader_id=""
for _ in $(seq 100); do
  leader_id=$("$x700" cluster status --server "$(client 1)" --json | jq -r '.leader_id // empty')
  [ -n "$leader_id" ] && break
  sleep 0.1
done
[ -n "$leader_id" ] || { echo "no leader after cluster init" >&2; exit 1; }
follower=1
[ "$leader_id" != 1 ] || follower=2
bench cluster-binds --server "$(client "$leader_id")" --mix bind=1 --seed 2
cluster_log=$("$x700" stats --server "$(client "$leader_id")" --json | jq -c '.log | {syncs, appends_synced, sync_time_us_mean}')

echo "three members: lookups at the leader, then at a follower" >&2
"$x700" load --server "$(client "$leader_id")" --bindings "$n" --quiet > /dev/null
for _ in $(seq 600); do  # the follower applies the preload (60 s at most)
  lag=$("$x700" stats --server "$(client "$follower")" --json | jq '.cluster.lag_entries')
  [ "$lag" = 0 ] && break
  sleep 0.1
done
bench leader-lookups --server "$(client "$leader_id")" --mix lookup=1 --bindings "$n" --seed 1
bench follower-lookups --server "$(client "$follower")" --mix lookup=1 --bindings "$n" --seed 1
follower_lag=$("$x700" stats --server "$(client "$follower")" --json | jq -c '.cluster')
stop_all

out="perf/results/$(date -u +%F)-bench-cluster.json"
cat > "$out" <<JSON
{
  "command": "perf/bench-cluster.sh $seconds $n",
  "date": "$(date -u +%FT%TZ)",
  "commit": "$(git rev-parse --short HEAD)",
  "machine": {"cores": $(nproc), "cpu": "$(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs)", "kernel": "$(uname -r)", "load_average_at_end": "$(cut -d' ' -f1-3 /proc/loadavg)", "data_fs": "$(df -T "$work" | tail -1 | awk '{print $1" "$2}')"},
  "setup": "all on one $(nproc)-core machine, nothing pinned: the kernel shares the cores among the members (each --shards 1: one event loop, one raft thread, one log-sync thread, all fsyncing to the same disk) and the x700 bench client (one thread); closed loop, 8 connections x 256 in flight, loopback TCP. Single node: one member alone, the others not started. Lookups: $n preloaded AXB bindings, all hits, uniform keys",
  "single_node_binds": $(summary single-binds),
  "cluster_binds_at_leader": $(summary cluster-binds),
  "cluster_leader_log": $cluster_log,
  "cluster_over_single_binds": $(ratio "$(rate_of cluster-binds)" "$(rate_of single-binds)"),
  "leader_lookups": $(summary leader-lookups),
  "follower_lookups": $(summary follower-lookups),
  "follower_over_leader_lookups": $(ratio "$(rate_of follower-lookups)" "$(rate_of leader-lookups)"),
  "follower_lag_after": $follower_lag,
  "targets": {"replicated_binds_per_s": ">= 100000"}
}
JSON
cat "$out"
