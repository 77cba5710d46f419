// The capture reader check shared by the fuzz target (fuzz/fuzz_targets/
// capture.rs) and the mutation test in tests/capture_read.rs, both of
// which `include!` this file. Plain `//` comments only: an included file
// cannot carry inner doc comments.
//
// What it checks, for any bytes at all:
// - `read_capture` never panics, whether the bytes are a whole file or a
//   pcap header (of the link type the first byte picks) followed by them;
// - every frame it returns is whole: its bytes are as long as its header
//   says, within HEADER_BYTES..=FRAME_BYTES_MAX;
// - pairs point both ways: a request's answer names that request back,
//   with the same request id;
// - an error names a packet after the ones it read.

/// Reads `bytes` as a capture file, and as packets behind a pcap header of
/// the link type `bytes[0]` picks; returns the frames read. Panics if any
/// property above fails.
fn check_capture(bytes: &[u8]) -> usize {
    use x700::capture::frames::FRAME_BYTES_MAX;
    use x700::capture::{read_capture, Capture, Options};
    use x700::protocol::HEADER_BYTES;

    fn check(capture: &Capture) -> usize {
        let mut frames = 0;
        for connection in &capture.connections {
            for (index, request) in connection.requests.iter().enumerate() {
                if let Some(answer) = request.pair {
                    let answer = &connection.answers[answer];
                    assert_eq!(answer.pair, Some(index), "pairs do not point both ways");
                    assert_eq!(answer.header.request_id, request.header.request_id);
                }
            }
            for frame in connection.requests.iter().chain(&connection.answers) {
                let length = frame.header.length as usize;
                assert!((HEADER_BYTES..=FRAME_BYTES_MAX as usize).contains(&length));
                assert_eq!(frame.bytes.len(), length, "frame is not whole");
                frames += 1;
            }
        }
        if let Some(error) = &capture.error {
            assert!(error.packet > capture.summary.packets, "{error}");
        }
        frames
    }

    let options = Options::default();
    let mut frames = check(&read_capture(bytes, &options));
    let link_types = [0u32, 1, 12, 101, 108, 113, 228, 229, 276, 147];
    let link_type = link_types[usize::from(bytes.first().copied().unwrap_or(0)) % link_types.len()];
    let mut file = Vec::with_capacity(24 + bytes.len());
    file.extend_from_slice(&0xa1b2_c3d4u32.to_le_bytes());
    file.extend_from_slice(&2u16.to_le_bytes());
    file.extend_from_slice(&4u16.to_le_bytes());
    file.extend_from_slice(&[0; 8]);
    file.extend_from_slice(&262_144u32.to_le_bytes());
    file.extend_from_slice(&link_type.to_le_bytes());
    file.extend_from_slice(bytes.get(1..).unwrap_or_default());
    frames += check(&read_capture(&file[..], &options));
    frames
}
