//! Fuzz target for the traceability history's decoders (segment header,
//! records, the torn-tail scan, index rebuilding): arbitrary bytes are
//! opened as a segment and queried; nothing may panic.
//!
//! The check itself is in `fuzz/check_history.rs`, shared with
//! `tests/history_store.rs`, which runs it on mutated segments as a
//! normal test.

#![no_main]

use libfuzzer_sys::fuzz_target;

include!("../check_history.rs");

fuzz_target!(|bytes: &[u8]| {
    check_history(bytes);
});
