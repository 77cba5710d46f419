#!/usr/bin/env bash
# What 2 MiB pages on the lookup path are worth (docs/STORAGE.md section 12, "Huge pages on the
# lookup path"): one binary, one data directory, lookups 4 x 64 for 8 s, alternating
#   small: the lookup files' page cache rebuilt from 4 KiB reads (POSIX_FADV_RANDOM: no readahead),
#          as a bulk load's faults and writes leave it; the node can map it only 4 KiB at a time;
#   huge:  the page cache dropped, so the node's start reads the files into 2 MiB folios.
# Each round prints the rate, p99, the client's CPU and the node's FilePmdMapped (kB mapped 2 MiB).
# Usage: perf/huge-pages.sh DATA_DIR BINDINGS [ROUNDS]   (DATA_DIR from `x700 load`; node on CPU 0,
# client on CPU 1). Results: perf/results/huge-pages-DATE.txt
set -euo pipefail
cd "$(dirname "$0")/.."
dir=$1; bindings=$2; rounds=${3:-3}
cargo build --release --quiet
bin="${CARGO_TARGET_DIR:-target}/release/x700"
out="perf/results/huge-pages-$(date -u +%Y-%m-%d).txt"
work=$(mktemp -d); pid=""
trap '[ -n "$pid" ] && kill "$pid" 2>/dev/null; rm -rf "$work"' EXIT
cache() { # cache small|huge
  python3 - "$dir" "$1" <<'PY'
import glob, os, sys
for f in glob.glob(sys.argv[1] + "/shard-*/*"):
    fd = os.open(f, os.O_RDONLY)
    os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
    if sys.argv[2] == "small" and os.path.basename(f) in ("records", "index", "overflow"):
        os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_RANDOM)
        for off in range(0, os.fstat(fd).st_size, 4096):
            os.pread(fd, 1, off)
    os.close(fd)
PY
}
ports() { python3 -c 'import socket
s=[socket.socket() for _ in range(2)]
[x.bind(("127.0.0.1",0)) for x in s]
print(" ".join(str(x.getsockname()[1]) for x in s))'; }
echo "# perf/huge-pages.sh $(date -u +%FT%TZ) commit $(git rev-parse --short HEAD) bindings $bindings load $(cut -d' ' -f1-3 /proc/loadavg)" | tee -a "$out"
for r in $(seq "$rounds"); do
  for kind in small huge; do
    cache "$kind"
    read -r tcp admin < <(ports)
    taskset -c 0 "$bin" serve --data "$dir" --listen "127.0.0.1:$tcp" --admin "127.0.0.1:$admin" >"$work/node.log" 2>&1 &
    pid=$!
    for _ in $(seq 6000); do curl -sf "http://127.0.0.1:$admin/readyz" >/dev/null 2>&1 && break; sleep 0.01; done
    taskset -c 1 "$bin" bench --server "127.0.0.1:$tcp" --bindings "$bindings" --connections 4 --pipeline 64 \
      --duration-s 8 --warmup-s 2 --quiet --json "$work/bench.json" >/dev/null 2>&1 || true
    pmd=$(awk '/FilePmdMapped/ {s+=$2} END {print s}' "/proc/$pid/smaps")
    echo "round $r $kind: rate $(jq .achieved_rate_per_s "$work/bench.json") p99_us $(jq .latency_us.p99 "$work/bench.json") client_cpu_s $(jq .client_cpu_s "$work/bench.json") FilePmdMapped_kB $pmd load $(cut -d' ' -f1 /proc/loadavg)" | tee -a "$out"
    kill "$pid"; wait "$pid" 2>/dev/null || true; pid=""
  done
done
