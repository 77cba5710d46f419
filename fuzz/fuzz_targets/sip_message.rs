//! Fuzz target for the SIP redirect front-end's decoder: arbitrary bytes as
//! a datagram and as a TCP stream go through the parser, the framing and
//! the response writer. Nothing may panic, and an answer is a whole,
//! deterministic response.
//!
//! The check itself is in `fuzz/check_sip.rs`, shared with
//! `tests/sip_message.rs`, which runs it on generated inputs as a normal
//! test.

#![no_main]

use libfuzzer_sys::fuzz_target;

include!("../check_sip.rs");

fuzz_target!(|bytes: &[u8]| {
    check_sip_message(bytes);
});
