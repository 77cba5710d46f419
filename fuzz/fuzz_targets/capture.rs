//! Fuzz target for the capture reader (`x700 decode`, `x700 replay`):
//! arbitrary bytes are read as a pcap or pcapng file, and as packets of
//! every link type behind a pcap header. Nothing may panic, every frame
//! returned must be whole, and answers and requests must pair both ways.
//!
//! The check itself is in `fuzz/check_capture.rs`, shared with
//! `tests/capture_read.rs`, which runs it on mutated captures as a normal
//! test.

#![no_main]

use libfuzzer_sys::fuzz_target;

include!("../check_capture.rs");

fuzz_target!(|bytes: &[u8]| {
    check_capture(bytes);
});
