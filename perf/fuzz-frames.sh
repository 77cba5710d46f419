#!/usr/bin/env bash
# Fuzzes the frame decoder: `perf/fuzz.sh frames` (see there).
exec "$(dirname "$0")/fuzz.sh" frames "$@"
