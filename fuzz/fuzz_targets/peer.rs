//! Fuzz target for the peer decoder (messages between nodes): arbitrary
//! bytes go through `next_frame` and `decode` frame after frame, as a
//! node's peer connection would take them. Nothing may panic, and every
//! message the codec accepts must re-encode to the frame it came from.
//!
//! The check itself is in `fuzz/check_peer.rs`, shared with
//! `tests/peer_wire.rs`, which runs it on generated inputs as a normal test.

#![no_main]

use libfuzzer_sys::fuzz_target;

include!("../check_peer.rs");

fuzz_target!(|bytes: &[u8]| {
    check_peer_frames(bytes);
});
