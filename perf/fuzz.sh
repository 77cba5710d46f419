#!/usr/bin/env bash
# Runs one fuzz target for a bounded time with cargo-fuzz and libFuzzer:
# `frames` (the frame decoder: fuzz/fuzz_targets/frames.rs, check in
# fuzz/check.rs) or `log` (log segments, records and write batches:
# fuzz/fuzz_targets/log.rs, check in fuzz/check_log.rs), or another target
# of fuzz/Cargo.toml (`enum_query`: ENUM DNS queries and their answers,
# check in fuzz/check_enum.rs).
#
#   perf/fuzz.sh frames                      # 60 s
#   FUZZ_SECONDS=600 perf/fuzz.sh log        # 10 min
#   FUZZ_TOOLCHAIN=stable perf/fuzz.sh frames   # force the stable fallback
#
# Starts from the checked-in seeds (tests/corpus/TARGET/, only read, if
# any) and the corpus of earlier runs; inputs that reach new code are kept in
# fuzz/corpus/TARGET/ (ignored by git). A failing input is written to
# fuzz/artifacts/TARGET/ and the script exits non-zero; reproduce it with
#   cargo +nightly fuzz run TARGET fuzz/artifacts/TARGET/<file>
set -euo pipefail
cd "$(dirname "$0")/.."

target="${1:?usage: perf/fuzz.sh frames|log}"
seconds="${FUZZ_SECONDS:-60}"
corpus=fuzz/corpus/$target
seeds=tests/corpus/$target
seed_dirs=()
[[ -d "$seeds" ]] && seed_dirs=("$seeds")

if ! cargo fuzz --version >/dev/null 2>&1; then
    echo "== installing cargo-fuzz"
    cargo install cargo-fuzz --locked
fi

# cargo-fuzz passes unstable rustc flags (-Zsanitizer=address and the
# sanitizer-coverage passes), so it wants a nightly compiler. Without one,
# and without a way to install one, a stable compiler accepts the same
# flags under RUSTC_BOOTSTRAP=1, and its rust-std ships the ASan runtime.
toolchain="${FUZZ_TOOLCHAIN:-}"
if [[ -z "$toolchain" ]]; then
    if rustup toolchain list | grep -q '^nightly'; then
        toolchain=nightly
    elif timeout 300 rustup toolchain install nightly --profile minimal; then
        toolchain=nightly
    else
        echo "== no nightly toolchain can be installed: stable with RUSTC_BOOTSTRAP=1"
        toolchain=stable
    fi
fi
if [[ "$toolchain" != nightly* ]]; then
    export RUSTC_BOOTSTRAP=1
fi

mkdir -p "$corpus"
before=$(find "$corpus" -type f | wc -l)
echo "== cargo +$toolchain fuzz run $target for ${seconds}s (corpus: $before inputs)"
status=0
# -max_len: room for several frames back to back at the 1024-byte limit.
cargo "+$toolchain" fuzz run "$target" "$corpus" "${seed_dirs[@]}" -- \
    -max_total_time="$seconds" -max_len=4096 -print_final_stats=1 || status=$?
after=$(find "$corpus" -type f | wc -l)
echo "== corpus: $before -> $after inputs in $corpus"
if [[ $status -ne 0 ]]; then
    echo "== the fuzz target failed (exit $status); see fuzz/artifacts/$target/" >&2
fi
exit "$status"
