// The peer decoder check shared by the fuzz target (fuzz/fuzz_targets/
// peer.rs) and the property test in tests/peer_wire.rs, both of which
// `include!` this file. Plain `//` comments only: an included file cannot
// carry inner doc comments.
//
// What it checks, for any bytes at all:
// - `next_frame` splits the bytes as a node's read loop would; every frame
//   it returns is whole and within HEADER_BYTES..=FRAME_BYTES_MAX;
// - `decode` never panics on a frame's body;
// - every message it accepts re-encodes, with the codec's own encoder, to
//   exactly the frame it came from (the decoders are strict, so there is
//   one encoding of each message).

/// Splits `bytes` into peer frames and decodes each; returns how many
/// messages were accepted. Panics (with the frame in hex) if anything is
/// wrong.
fn check_peer_frames(bytes: &[u8]) -> usize {
    use x700::replication::peer::codec::{decode, encode};
    use x700::replication::peer::frame::{next_frame, FRAME_BYTES_MAX, HEADER_BYTES};

    let hex = |b: &[u8]| b.iter().map(|x| format!("{x:02x}")).collect::<String>();
    let mut accepted = 0;
    let mut rest = bytes;
    while let Ok(Some((header, body))) = next_frame(rest) {
        let length = header.length as usize;
        assert!((HEADER_BYTES..=FRAME_BYTES_MAX).contains(&length));
        assert_eq!(body.len() + HEADER_BYTES, length, "frame is not whole");
        let frame = &rest[..length];
        if let Ok(message) = decode(&header, body) {
            let again = encode(&message, header.request_id)
                .unwrap_or_else(|e| panic!("accepted frame {} does not re-encode: {e}", hex(frame)));
            assert_eq!(hex(&again), hex(frame), "accepted frame re-encodes differently");
            accepted += 1;
        }
        rest = &rest[length..];
    }
    accepted
}
