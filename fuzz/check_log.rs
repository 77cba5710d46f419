// The log decoder check shared by the fuzz target (fuzz/fuzz_targets/
// log.rs) and the property test (tests/log_decoders.rs), both of which
// `include!` this file. Plain `//` comments only.
//
// For any bytes at all, read as a log segment, a log record and a write
// batch payload:
// - nothing panics;
// - `segment::scan` reports offsets that increase, lie inside the bytes and
//   decode to records of consecutive indexes, and an end no further than
//   the bytes; a torn or corrupt tail starts at that end;
// - every write batch that decodes re-encodes to the same bytes and decodes
//   again to the same value, and its writes iterate without error.

fn check_log(bytes: &[u8]) {
    use x700::log::record::{decode, Decoded};
    use x700::log::segment;
    use x700::replication::WriteBatch;

    let _ = segment::check_header(bytes, 0);
    let first = bytes
        .get(24..32)
        .map_or(0, |b| u64::from_le_bytes(b.try_into().unwrap_or([0; 8])));
    let scan = segment::scan(bytes, first);
    assert!(scan.end as usize <= bytes.len().max(segment::HEADER_BYTES));
    let mut previous = None;
    for (i, &offset) in scan.offsets.iter().enumerate() {
        let offset = offset as usize;
        assert!(offset < bytes.len());
        if let Some(p) = previous {
            assert!(offset > p);
        }
        previous = Some(offset);
        match decode(&bytes[offset..]) {
            Decoded::Record(record, _) => {
                assert_eq!(record.index, first.wrapping_add(i as u64));
            }
            other => panic!("scan listed a record that does not decode: {other:?}"),
        }
    }
    match scan.tail {
        segment::Tail::Clean => {}
        segment::Tail::Torn { offset, .. } | segment::Tail::Corrupt { offset, .. } => {
            assert_eq!(offset, scan.end);
        }
    }
    let _ = decode(bytes);
    if let Some(batch) = WriteBatch::decode(bytes) {
        let encoded = batch.encode();
        assert_eq!(&encoded[..], bytes);
        assert_eq!(WriteBatch::decode(&encoded), Some(batch.clone()));
        assert_eq!(batch.iter().filter(Result::is_ok).count() as u32, batch.count);
    }
}
