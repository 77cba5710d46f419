#!/usr/bin/env bash
# Step 9: tail latency at realistic load (perf/README.md "Step 9: tail").
#
# One node with N bindings (default 10M, loaded offline first), pinned to
# core 0 with one event loop; `x700 bench` on core 1. For each shape
# (connections x in flight: 4x64 4x256 64x16 256x4):
#   - the closed-loop peak (10 s);
#   - open loop at 10%, 25%, 50% and 75% of that peak (10 s each): p50,
#     p99, p99.9 as the client saw them, the client's CPU, and beside them
#     the node's own time per request (read to answer: the histogram
#     x700_request_latency_seconds on /metrics, the difference over the
#     run, its p50 and p99 by bucket upper bound);
# and once more at 50% of the 4x64 peak while 200,000 binds arrive over
# another connection, so checkpoints capture and commit during the run
# (checkpoint interval 5 s here).
#
# Usage: perf/tail.sh [N [SHAPE ...]]   results: perf/results/tail-DATE.txt
set -euo pipefail
cd "$(dirname "$0")/.."
n=${1:-10000000}
shift || true
shapes=${*:-4x64 4x256 64x16 256x4}
cargo build --release --quiet
bin="${CARGO_TARGET_DIR:-target}/release/x700"
work=$(mktemp -d "${SCALE_DIR:-/tmp}/x700-tail.XXXXXX")
node_pid=""
trap '[ -n "$node_pid" ] && kill "$node_pid" 2>/dev/null; wait 2>/dev/null; rm -rf "$work"' EXIT
out="perf/results/tail-$(date -u +%Y-%m-%d).txt"
log() { echo "$*" | tee -a "$out"; }
read -r tcp admin < <(python3 -c 'import socket
s=[socket.socket() for _ in range(2)]
[x.bind(("127.0.0.1",0)) for x in s]
print(" ".join(str(x.getsockname()[1]) for x in s))')
printf '[log]\ncheckpoint_interval_s = 5\n' >"$work/node.toml"

log "# perf/tail.sh $n ($(date -u +%FT%TZ), commit $(git rev-parse --short HEAD), load $(cut -d' ' -f1-3 /proc/loadavg))"
"$bin" load --data "$work/data" --bindings "$n" --quiet --json >/dev/null
taskset -c 0 "$bin" serve --config "$work/node.toml" --data "$work/data" --event-loops 1 \
  --listen "127.0.0.1:$tcp" --admin "127.0.0.1:$admin" >"$work/node.log" 2>&1 &
node_pid=$!
for _ in $(seq 3000); do curl -sf "http://127.0.0.1:$admin/readyz" >/dev/null 2>&1 && break; sleep 0.01; done

histogram() { curl -s "http://127.0.0.1:$admin/metrics" | grep '^x700_request_latency_seconds_bucket' || true; }
# server_time BEFORE AFTER: p50 and p99 (bucket upper bounds, us) of the
# requests answered between two /metrics reads.
server_time() {
  python3 - "$1" "$2" <<'PY'
import re, sys
def read(path):
    out = {}
    for line in open(path):
        m = re.search(r'le="([^"]+)"\} (\S+)', line)
        if m:
            out[m.group(1)] = out.get(m.group(1), 0) + float(m.group(2))
    return out
a, b = read(sys.argv[1]), read(sys.argv[2])
bounds = sorted((float(k) if k != "+Inf" else float("inf"), b[k] - a.get(k, 0)) for k in b)
total = bounds[-1][1] if bounds else 0
def q(f):
    for bound, count in bounds:
        if total and count >= f * total:
            return "<=%gus" % (bound * 1e6) if bound != float("inf") else ">10ms"
    return "n/a"
print("server_p50 %s server_p99 %s requests %d" % (q(0.5), q(0.99), total))
PY
}
run() { # run NAME ARGS...: one bench run, its summary line
  local name=$1
  shift
  histogram >"$work/h0"
  taskset -c 1 "$bin" bench --server "127.0.0.1:$tcp" --bindings "$n" --duration-s 10 --warmup-s 1 \
    --quiet --json "$work/$name.json" "$@" >/dev/null 2>&1 || true
  histogram >"$work/h1"
  log "$name: $(jq -c '{rate: .achieved_rate_per_s, p50: .latency_us.p50, p99: .latency_us.p99, p999: .latency_us.p999, max: .latency_us.max, client_cores: .client_cpu.cores_used, client_saturated: .client_cpu.saturated}' "$work/$name.json") $(server_time "$work/h0" "$work/h1")"
}
for shape in $shapes; do
  c=${shape%x*}
  d=${shape#*x}
  run "$shape-closed" --connections "$c" --pipeline "$d"
  peak=$(jq '.achieved_rate_per_s | floor' "$work/$shape-closed.json")
  for pct in 10 25 50 75; do
    run "$shape-open-$pct%" --connections "$c" --pipeline "$d" --rate $((peak * pct / 100))
  done
  [ "$shape" = 4x64 ] && half=$((peak / 2))
done
if [ -n "${half:-}" ]; then
  "$bin" load --server "127.0.0.1:$tcp" --bindings 200000 --seed 77 --connections 1 --quiet --json \
    >"$work/binds.json" &
  binds=$!
  run "4x64-open-50%-with-binds-and-checkpoints" --connections 4 --pipeline 64 --rate "$half"
  wait "$binds" || true
  log "   binds during it: $(jq -c '{binds_per_s, binds_over_1ms}' "$work/binds.json"); checkpoints so far: $("$bin" stats --server "127.0.0.1:$tcp" --json | jq '.log.checkpoints')"
fi
