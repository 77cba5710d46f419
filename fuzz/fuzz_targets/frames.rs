//! Fuzz target for the frame decoder: arbitrary bytes go through
//! `next_frame` and `decode_request` frame after frame, as a server's read
//! loop would take them. Nothing may panic, and every request the codec
//! accepts must re-encode to a frame that decodes to the same value.
//!
//! The check itself is in `fuzz/check.rs`, shared with
//! `tests/frame_corpus.rs`, which replays the corpora as a normal test.

#![no_main]

use libfuzzer_sys::fuzz_target;

include!("../check.rs");

fuzz_target!(|bytes: &[u8]| {
    check_frames(bytes);
});
