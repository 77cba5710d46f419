//! Proves the frame decoder holds on every input of the checked-in seed
//! corpus (tests/corpus/frames/) and of the fuzzer's own corpus
//! (fuzz/corpus/frames/, when a fuzz run has left one): no panic, every
//! accepted request round-trips through the encoders, and the seeds between
//! them reach every opcode, every refusal status and every way a stream ends.
//!
//! The check is fuzz/check.rs, the same code the cargo-fuzz target runs.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use x700::protocol::{opcode, status};

include!("../fuzz/check.rs");

/// Checked-in seeds: valid frames of every opcode, truncations, absurd
/// lengths, refused bodies and pseudo-random bytes.
const SEED_DIR: &str = "tests/corpus/frames";
/// Where `perf/fuzz-frames.sh` keeps what the fuzzer found (not checked in).
const FUZZ_CORPUS_DIR: &str = "fuzz/corpus/frames";

/// The files of a corpus directory, sorted; empty if it does not exist.
fn corpus_files(dir: &str) -> Vec<PathBuf> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join(dir);
    let Ok(entries) = std::fs::read_dir(&dir) else {
        return Vec::new();
    };
    let mut files: Vec<PathBuf> = entries
        .map(|entry| entry.expect("readable corpus directory").path())
        .filter(|path| path.is_file())
        .collect();
    files.sort();
    files
}

/// Runs the check on one file, naming the file if it fails.
fn check_file(path: &Path) -> FramesSeen {
    let bytes = std::fs::read(path).expect("readable corpus file");
    match std::panic::catch_unwind(|| check_frames(&bytes)) {
        Ok(seen) => seen,
        Err(_) => panic!(
            "{} fails the frame check (message above)\n bytes: {}",
            path.display(),
            hex_bytes(&bytes)
        ),
    }
}

#[test]
fn seed_corpus_passes_and_reaches_every_path() {
    let files = corpus_files(SEED_DIR);
    assert!(files.len() >= 12, "seed corpus has {} files", files.len());
    let mut accepted = BTreeSet::new();
    let mut refused = BTreeSet::new();
    let mut ends = Vec::new();
    for path in &files {
        let seen = check_file(path);
        accepted.extend(seen.accepted);
        refused.extend(seen.refused.iter().map(|&(_, status)| status));
        ends.push(seen.end);
    }
    let every_opcode = [
        opcode::HELLO,
        opcode::PING,
        opcode::STATS,
        opcode::LOOKUP,
        opcode::BIND_AXB,
        opcode::BIND_AXN,
        opcode::BIND_AXE,
        opcode::UPDATE,
        opcode::UNBIND,
        opcode::QUERY,
    ];
    for op in every_opcode {
        assert!(accepted.contains(&op), "no seed decodes opcode {op:#04x}");
    }
    for expected in [
        status::BAD_FRAME,
        status::BAD_REQUEST,
        status::BAD_NUMBER,
        status::UNKNOWN_OPCODE,
    ] {
        assert!(
            refused.contains(&expected),
            "no seed is refused with {}",
            status::name(expected)
        );
    }
    for end in [FramesEnd::Clean, FramesEnd::Partial, FramesEnd::Closed] {
        assert!(ends.contains(&end), "no seed ends {end:?}");
    }
}

#[test]
fn fuzz_corpus_passes() {
    // Empty unless a fuzz run has been made on this machine; then every
    // input the fuzzer kept must pass here too.
    for path in corpus_files(FUZZ_CORPUS_DIR) {
        check_file(&path);
    }
}

#[test]
fn a_refused_body_does_not_stop_the_stream() {
    // After an unknown opcode and a body of the wrong length, the frames that
    // follow are still read: only a bad length field loses the framing.
    let bytes = std::fs::read(
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .join(SEED_DIR)
            .join("refused-bodies-then-ping.bin"),
    )
    .expect("seed file");
    let seen = check_frames(&bytes);
    assert_eq!(seen.end, FramesEnd::Clean);
    assert_eq!(seen.accepted.last(), Some(&opcode::PING));
    assert_eq!(seen.refused.first(), Some(&(0x77, status::UNKNOWN_OPCODE)));
    assert_eq!(
        seen.refused.get(1),
        Some(&(opcode::LOOKUP, status::BAD_FRAME))
    );
}

/// Guards the codec bug found by the fuzz target on its first run: an
/// UNBIND by party (selector 1) whose party field began with the nibble `E`
/// decoded to `UnbindBody::Party` with an extension-key party, and
/// `encode_unbind` then wrote it as selector 2 (by extension), which decoded
/// to something else or was refused. Fixed: selector 1 with such a party is
/// refused as `bad_number`.
#[test]
fn unbind_by_party_with_extension_nibble_round_trips() {
    let mut frame = vec![0x2c, 0, 0, 0, opcode::UNBIND, 0, 0, 0, 6, 0, 0, 0];
    let mut body = [0u8; 32];
    body[0] = 1; // selector: by X and party
    body[16..24].copy_from_slice(&[0x70, 0x01, 0x23, 0x45, 0x67, 0x89, 0x01, 0x2F]);
    body[24..32].copy_from_slice(&[0xE1, 0x23, 0x45, 0x6F, 0xFF, 0xFF, 0xFF, 0xFF]);
    frame.extend_from_slice(&body);
    check_frames(&frame);
}
