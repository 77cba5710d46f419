#!/usr/bin/env bash
# Runs x700's whole test suite, exactly as CI does (.ci/run calls this).
# Installs whatever the tests need first; today that is only cargo-nextest,
# which the machine image already has.
set -euo pipefail
cd "$(dirname "$0")/.."
if ! cargo nextest --version >/dev/null 2>&1; then
  cargo install --locked cargo-nextest
fi
cargo nextest run --release --no-fail-fast "$@"
