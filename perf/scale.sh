#!/usr/bin/env bash
# Step 9: one node at carrier scale (perf/README.md "Step 9: scale").
#
# For each size N (default: 10M 100M 350M bindings):
#   1. `x700 load --data DIR --bindings N` offline: peak RSS of the load
#      (peak_rss_bytes: the load checkpoints whenever its anonymous memory
#      passes 4 GiB), binds/s, binds over 1 ms, disk bytes per binding;
#   2. restart to serving: `x700 serve` on DIR, time from exec to /readyz,
#      median of 3 starts (page cache warm: the load just wrote the files);
#   3. lookups/s at 4 x 64 (`x700 bench --bindings N`, closed loop), node on
#      core 0, client on core 1, with the client's CPU beside;
#   4. anonymous memory after a checkpoint: 1,000,000 binds over the wire,
#      then one more bind after the checkpoint interval (5 s here), so a
#      checkpoint holds them all, and the give-back; RssAnon of the node
#      divided by its live bindings;
# then `../shared/limits/ceiling.sh 4x64` in the same run, to put the
# lookup figures beside what a minimal C server does on this machine today.
#
# Disk: about 120 bytes per binding (records 32, cold 64, index and
# overflow about 12, growth slack); a size that does not fit in the free
# space of $SCALE_DIR (default /tmp) is skipped with a message.
#
# Usage: perf/scale.sh [N ...]        results: perf/results/scale-DATE.txt
set -euo pipefail
cd "$(dirname "$0")/.."
sizes=${*:-10000000 100000000 350000000}
cargo build --release --quiet
bin="${CARGO_TARGET_DIR:-target}/release/x700"
root=$(mktemp -d "${SCALE_DIR:-/tmp}/x700-scale.XXXXXX")
out="perf/results/scale-$(date -u +%Y-%m-%d).txt"
node_pid=""
cleanup() {
  [ -n "$node_pid" ] && kill "$node_pid" 2>/dev/null && wait "$node_pid" 2>/dev/null
  # The node's own log, for what a figure cannot say.
  [ -f "$root/node.log" ] && cp "$root/node.log" "perf/results/scale-node-$(date -u +%Y-%m-%d).log"
  rm -rf "$root"
}
trap cleanup EXIT
log() { echo "$*" | tee -a "$out"; }
ports() { python3 -c 'import socket
s=[socket.socket() for _ in range(2)]
[x.bind(("127.0.0.1",0)) for x in s]
print(" ".join(str(x.getsockname()[1]) for x in s))'; }
status_kb() { awk -v f="$2:" '$1==f {print $2}' "/proc/$1/status"; }
printf '[log]\ncheckpoint_interval_s = 5\n' >"$root/node.toml"

start_node() { # start_node DIR: sets node_pid, tcp, admin, ready_s
  read -r tcp admin < <(ports)
  local t0
  t0=$(date +%s.%N)
  taskset -c 0 "$bin" serve --config "$root/node.toml" --data "$1" --listen "127.0.0.1:$tcp" \
    --admin "127.0.0.1:$admin" >>"$root/node.log" 2>&1 &
  node_pid=$!
  for _ in $(seq 6000); do
    curl -sf "http://127.0.0.1:$admin/readyz" >/dev/null 2>&1 && break
    kill -0 "$node_pid" 2>/dev/null || { cat "$root/node.log" >&2; exit 1; }
    sleep 0.01
  done
  ready_s=$(echo "$(date +%s.%N) - $t0" | bc)
}
stop_node() { kill "$node_pid"; wait "$node_pid" || true; node_pid=""; }

log "# perf/scale.sh $(date -u +%FT%TZ) commit $(git rev-parse --short HEAD) load $(cut -d' ' -f1-3 /proc/loadavg)"
for n in $sizes; do
  shards=$([ "$n" -gt 120000000 ] && echo 32 || echo 8)
  need=$((n * 125))
  free=$(($(df --output=avail -B1 "$root" | tail -1)))
  if [ "$need" -gt "$free" ]; then
    log "size $n: skipped, needs about $((need >> 30)) GiB of disk, $((free >> 30)) GiB free in $root"
    continue
  fi
  dir="$root/d$n"
  "$bin" load --data "$dir" --bindings "$n" --shards "$shards" --quiet --json >"$root/load-$n.json"
  disk=$(du -sb "$dir" | cut -f1)
  log "size $n load: $(jq -c '{binds_per_s, binds_over_1ms, binds_over_1ms_by_cause, checkpoints_during_load, peak_rss_bytes, max_us: .bind_latency_us.max}' "$root/load-$n.json") peak_rss_per_binding=$(jq ".peak_rss_bytes / $n" "$root/load-$n.json") disk_bytes_per_binding=$(echo "scale=1; $disk / $n" | bc)"
  starts=()
  for _ in 1 2 3; do
    start_node "$dir"
    starts+=("$ready_s")
    stop_node
  done
  median=$(printf '%s\n' "${starts[@]}" | sort -n | sed -n 2p)
  log "size $n restart_to_ready_s: median $median (runs ${starts[*]})"
  start_node "$dir"
  log "size $n after start: RssAnon_kB $(status_kb "$node_pid" RssAnon) RssFile_kB $(status_kb "$node_pid" RssFile) FilePmdMapped_kB $(awk '/FilePmdMapped/ {s+=$2} END {print s}' "/proc/$node_pid/smaps")"
  taskset -c 1 "$bin" bench --server "127.0.0.1:$tcp" --bindings "$n" --connections 4 --pipeline 64 \
    --duration-s 10 --warmup-s 2 --quiet --json "$root/bench-$n.json" >/dev/null 2>&1 || true
  log "size $n lookups 4x64: $(jq -c '{achieved_rate_per_s, p50: .latency_us.p50, p99: .latency_us.p99, client_cpu}' "$root/bench-$n.json")"
  log "size $n after lookups: RssFile_kB $(status_kb "$node_pid" RssFile) FilePmdMapped_kB $(awk '/FilePmdMapped/ {s+=$2} END {print s}' "/proc/$node_pid/smaps") major_faults $(awk '{print $12}' "/proc/$node_pid/stat") MemAvailable_kB $(awk '/MemAvailable/ {print $2}' /proc/meminfo)"
  "$bin" load --server "127.0.0.1:$tcp" --bindings 1000000 --seed 99 --quiet --json >"$root/binds-$n.json"
  # Checkpoints run while writes arrive: one more bind after the interval
  # makes the node take one that holds every bind above.
  sleep 6
  "$bin" load --server "127.0.0.1:$tcp" --bindings 1 --seed 98 --quiet --json >/dev/null
  sleep 2
  anon_before=$(status_kb "$node_pid" RssAnon)
  last=$anon_before
  for _ in $(seq 60); do
    sleep 1
    now=$(status_kb "$node_pid" RssAnon)
    [ "$now" -ge "$last" ] && [ "$now" -lt "$anon_before" ] && break
    last=$now
  done
  anon=$(status_kb "$node_pid" RssAnon)
  live=$((n + $(jq .created "$root/binds-$n.json")))
  log "size $n after 1M binds: RssAnon_kB $anon_before; after the checkpoint: RssAnon_kB $anon = $(echo "scale=2; $anon * 1024 / $live" | bc) B per live binding ($live), RssFile_kB $(status_kb "$node_pid" RssFile)"
  stop_node
  rm -rf "$dir"
done
log "ceiling (../shared/limits/ceiling.sh 4x64, same run):"
bash ../shared/limits/ceiling.sh 4x64 2>&1 | tee -a "$out"
