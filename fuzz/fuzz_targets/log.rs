//! Fuzz target for the log's decoders: arbitrary bytes read as a segment
//! (header check and record scan), as one record, and as a write batch
//! payload. The check is in `fuzz/check_log.rs`, shared with
//! `tests/log_decoders.rs`.

#![no_main]

use libfuzzer_sys::fuzz_target;

include!("../check_log.rs");

fuzz_target!(|bytes: &[u8]| {
    check_log(bytes);
});
