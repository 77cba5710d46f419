#!/usr/bin/env bash
# Instructions per lookup of two x700 builds, counted by
# `valgrind --tool=callgrind` (repeatable where seconds are not): each
# server, one event loop, on its own copy of N synthetic bindings, answers
# the same closed-loop run of R lookups from this tree's `x700 bench`
# (4 connections x 256 in flight); the whole process is counted, start and
# stop included, so compare the two totals and divide the difference by R.
#
# Usage: perf/callgrind-lookups.sh OLD_X700 [N] [R]   (defaults 100000, 400000)
# Prints each total and the difference per lookup; keeps nothing.
set -euo pipefail
cd "$(dirname "$0")/.."
old=$(realpath "$1")
n=${2:-100000}
requests=${3:-400000}
command -v valgrind >/dev/null || { apt-get update -qq && apt-get install -y -qq valgrind >/dev/null; }
cargo build --release --quiet --bin x700
new=$PWD/target/release/x700
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
total() { # total BINARY NAME: the Ir total of one counted server run
  local binary=$1 name=$2
  "$binary" load --data "$work/$name" --bindings "$n" --seed 1 --quiet >/dev/null 2>&1
  valgrind --tool=callgrind --callgrind-out-file="$work/$name.out" \
    "$binary" serve --data "$work/$name" --listen 127.0.0.1:0 --shards 1 --no-pin \
    >"$work/$name.log" 2>"$work/$name.err" &
  local pid=$!
  for _ in $(seq 600); do grep -q 'tcp=' "$work/$name.log" 2>/dev/null && break; sleep 0.1; done
  local address
  address=$(grep -o 'tcp=[^ ]*' "$work/$name.log" | cut -d= -f2)
  "$new" bench --quiet --server "$address" --bindings "$n" --connections 4 --pipeline 256 \
    --requests "$requests" --warmup-s 0 >&2
  kill -TERM "$pid"
  wait "$pid" || true
  callgrind_annotate "$work/$name.out" 2>/dev/null | awk '/PROGRAM TOTALS/ {gsub(",", "", $1); print $1}'
}
old_total=$(total "$old" old)
new_total=$(total "$new" new)
echo "bindings=$n lookups=$requests commit=$(git rev-parse --short HEAD)"
echo "old: $old_total instructions; new: $new_total instructions"
awk -v o="$old_total" -v w="$new_total" -v r="$requests" \
  'BEGIN { printf "new - old: %.1f instructions per lookup (%+.1f%%)\n", (w - o) / r, (w / o - 1) * 100 }'
