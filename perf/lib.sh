# Pieces shared by perf/*.sh scripts that run nodes: sourced, not run.
# Used by perf/capture-cost.sh, perf/replay-check.sh, perf/sip-vs-kamailio.sh
# and perf/enum-vs-knot.sh.
#
#   perf_setup NAME          cd to the repository, build the release binary;
#                            sets $perf_name (for messages), $bin, $dir (a
#                            temporary directory) and an EXIT trap that stops
#                            every pid in $pids and removes $dir
#   free_ports N             prints N free TCP ports on 127.0.0.1
#   start_node NAME [ARGS]   `x700 serve` on free ports with data in
#                            $dir/NAME (log $dir/NAME.log) and ARGS; sets
#                            $tcp, $admin, $node_pid; waits (at most 20 s)
#                            for /readyz; pinned with taskset -c when
#                            $node_cpus is set
#   stop_node PID            SIGTERM, up to 10 s, then SIGKILL
#   metric NAME              sums the samples of NAME on $admin's /metrics
#   process_cpu_s PID        user + system CPU seconds PID has used

perf_setup() {
  perf_name=$1
  cd "$(dirname "${BASH_SOURCE[0]}")/.."
  cargo build --release --quiet
  bin="${CARGO_TARGET_DIR:-target}/release/x700"
  dir=$(mktemp -d)
  pids=()
  trap perf_cleanup EXIT
}

perf_cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  for p in "${pids[@]}"; do wait "$p" 2>/dev/null || true; done
  rm -rf "$dir"
}

free_ports() {
  python3 -c 'import socket, sys
s = [socket.socket() for _ in range(int(sys.argv[1]))]
[x.bind(("127.0.0.1", 0)) for x in s]
print(" ".join(str(x.getsockname()[1]) for x in s))' "$1"
}

start_node() {
  local name=$1
  shift
  read -r tcp admin < <(free_ports 2)
  local pin=()
  [ -n "${node_cpus:-}" ] && pin=(taskset -c "$node_cpus")
  "${pin[@]}" "$bin" serve --data "$dir/$name" --listen "127.0.0.1:$tcp" --admin "127.0.0.1:$admin" \
    "$@" >"$dir/$name.log" 2>&1 &
  node_pid=$!
  pids+=("$node_pid")
  for _ in $(seq 200); do
    curl -sf "http://127.0.0.1:$admin/readyz" >/dev/null 2>&1 && return 0
    sleep 0.1
  done
  echo "$perf_name: node $name not ready in 20 s" >&2
  cat "$dir/$name.log" >&2
  exit 1
}

stop_node() {
  kill "$1" 2>/dev/null || true
  for _ in $(seq 100); do kill -0 "$1" 2>/dev/null || break; sleep 0.1; done
  kill -9 "$1" 2>/dev/null || true
  wait "$1" 2>/dev/null || true
}

metric() {
  curl -sf "http://127.0.0.1:$admin/metrics" | awk -v name="$1" '$1 == name || index($1, name "{") == 1 {s += $2} END {print s + 0}'
}

process_cpu_s() {
  # Fields 14 and 15 of /proc/PID/stat (after the command in parentheses).
  awk -v hz="$(getconf CLK_TCK)" '{sub(/.*\) /, ""); printf "%.2f\n", ($12 + $13) / hz}' "/proc/$1/stat"
}
