//! Proves that one append larger than what is left of the active log
//! segment, or larger than a whole segment, is written across as many
//! segments as it needs (a follower appends hundreds of entries at once, as
//! the leader sends them), is read back whole, and survives a reopen
//! (a record is at most 16 MiB, a quarter of a segment). Guards step 6 item 9:
//! "a follower's append batch can exceed a 64 MiB segment (fatal today)".

use x700::log::{Log, LogRecord, RecordKind};

const NONCE: u64 = 0x7700_0000_0000_0001;

fn record(index: u64, bytes: usize) -> LogRecord {
    LogRecord {
        index,
        term: 1,
        leader: 1,
        kind: RecordKind::Blank,
        payload: vec![u8::try_from(index % 251).expect("small"); bytes],
    }
}

#[test]
fn an_append_larger_than_a_segment_spans_segments() {
    let dir = tempfile::tempdir().expect("dir");
    let (mut log, _) = Log::open(dir.path(), NONCE).expect("open");
    // 150 records of 1 MiB: more than two 64 MiB segments in one append.
    let records: Vec<LogRecord> = (0..150).map(|i| record(i, 1 << 20)).collect();
    let files = log.append(&records).expect("one append across segments");
    for file in &files {
        file.sync_data().expect("sync");
    }
    assert!(files.len() >= 3, "{} segment files", files.len());
    // And another append after it lands at the end.
    log.append(&[record(150, 10)])
        .expect("append after")
        .iter()
        .for_each(|f| f.sync_data().expect("sync"));
    let check = |log: &Log| {
        let read = log.read(0, 151).expect("read back");
        assert_eq!(read.len(), 151);
        for (i, r) in read.iter().enumerate() {
            assert_eq!(r.index, i as u64);
            assert_eq!(r.payload, record(i as u64, r.payload.len()).payload);
        }
        assert_eq!(read[149].payload.len(), 1 << 20);
    };
    check(&log);
    drop(log);
    let (log, _) = Log::open(dir.path(), NONCE).expect("reopen");
    check(&log);
}
