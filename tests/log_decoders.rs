//! Proves that the log's decoders never panic and never misread: the corpus in tests/corpus/log (fuzzer finds included), random bytes, random valid segments with random damage, and random write batches go through the check shared with the `log` fuzz target (`fuzz/check_log.rs`): segment scans list only records that decode with consecutive indexes, tails start where the valid records end, and every batch that decodes round-trips.

use proptest::prelude::*;
use x700::log::record::{LogRecord, RecordKind};
use x700::log::segment;
use x700::replication::WriteBatch;

include!("../fuzz/check_log.rs");

fn valid_segment(first: u64, payloads: &[Vec<u8>]) -> Vec<u8> {
    let mut bytes = segment::header(0, first).to_vec();
    for (i, payload) in payloads.iter().enumerate() {
        LogRecord {
            index: first + i as u64,
            term: 1,
            leader: 1,
            kind: RecordKind::Writes,
            payload: payload.clone(),
        }
        .encode(&mut bytes);
    }
    bytes.resize(bytes.len() + 64, 0);
    bytes
}

/// Every input in tests/corpus/log/ (seeds, and inputs the fuzzer once
/// failed on) passes the check.
#[test]
fn corpus() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/corpus/log");
    let mut replayed = 0;
    for entry in std::fs::read_dir(dir).unwrap() {
        check_log(&std::fs::read(entry.unwrap().path()).unwrap());
        replayed += 1;
    }
    assert!(replayed > 0);
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    #[test]
    fn random_bytes(bytes in proptest::collection::vec(any::<u8>(), 0..2048)) {
        check_log(&bytes);
    }

    #[test]
    fn damaged_segments(
        first in 0u64..1000,
        payloads in proptest::collection::vec(proptest::collection::vec(any::<u8>(), 0..64), 0..20),
        flips in proptest::collection::vec((any::<usize>(), any::<u8>()), 0..4),
        cut in any::<usize>(),
    ) {
        let mut bytes = valid_segment(first, &payloads);
        let whole = segment::scan(&bytes, first);
        prop_assert_eq!(whole.offsets.len(), payloads.len());
        for (at, mask) in flips {
            let at = at % bytes.len();
            bytes[at] ^= mask;
        }
        let keep = cut % (bytes.len() + 1);
        check_log(&bytes[..keep]);
        check_log(&bytes);
    }

    #[test]
    fn write_batches(
        now_s in any::<u32>(),
        writes in proptest::collection::vec((proptest::option::of(proptest::collection::vec(any::<u32>(), 0..4)), 12usize..80), 0..10),
    ) {
        let mut batch = WriteBatch::new(now_s);
        for (tenants, length) in &writes {
            let mut frame = vec![7u8; *length];
            frame[..4].copy_from_slice(&(*length as u32).to_le_bytes());
            prop_assert!(batch.push(tenants.as_deref(), &frame));
        }
        let encoded = batch.encode();
        check_log(&encoded);
        prop_assert_eq!(WriteBatch::decode(&encoded), Some(batch));
    }
}
