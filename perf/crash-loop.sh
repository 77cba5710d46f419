#!/usr/bin/env bash
# Crash loop: tests/crash.rs with many kills. A real `x700 serve` takes
# pipelined binds from four connections and is killed with SIGKILL at a
# random moment (50-450 ms into each run), KILLS times; after every restart
# every acknowledged bind must be there, retries must not bind twice, and
# `x700 check` must pass at the end.
# Usage: perf/crash-loop.sh [KILLS]   (default 100)
# Writes perf/results/<date>-crash-loop.txt.
set -euo pipefail
cd "$(dirname "$0")/.."
kills=${1:-100}
out="perf/results/$(date -u +%F)-crash-loop.txt"
{
  echo "command: perf/crash-loop.sh $kills"
  echo "date: $(date -u +%FT%TZ)  commit: $(git rev-parse --short HEAD)"
  echo "machine: $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs), kernel $(uname -r)"
  X700_CRASH_KILLS=$kills cargo nextest run --release --test crash --no-capture 2>&1 \
    | grep -E '^(seed|kill|[0-9]+ kills)|PASS|FAIL|panicked'
} | tee "$out"
grep -q PASS "$out"
