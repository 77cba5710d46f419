//! Proves that one append larger than what is left of the active log
//! segment, or larger than a whole segment, is written across as many
//! segments as it needs (a follower appends hundreds of entries at once, as
//! the leader sends them), is read back whole, and survives a reopen
//! (a record is at most 16 MiB, a quarter of a segment). Guards step 6 item 9:
//! "a follower's append batch can exceed a 64 MiB segment (fatal today)".

mod common;

use common::small_disk::SmallDisk;
use x700::log::{Log, LogError, LogRecord, RecordKind};

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

/// Guards the follower whose disk filled at a segment roll (fatal to its
/// Raft core): the append fails with `DiskFull` after writing what fitted,
/// and once space returns, appending the rest goes on from there; the
/// segments the first records went to are among `files_from`, so the
/// retry syncs them too (`replication::log_store` waits and retries so).
#[test]
fn an_append_stopped_by_a_full_disk_at_a_roll_resumes_once_space_returns() {
    let disk = SmallDisk::mount("100m");
    let dir = disk.path().join("log");
    let (mut log, _) = Log::open(&dir, NONCE).expect("open");
    let records: Vec<LogRecord> = (0..80).map(|i| record(i, 1 << 20)).collect();
    let error = log
        .append(&records)
        .expect_err("80 MiB do not fit in 100 MiB beside a 64 MiB segment");
    assert!(
        matches!(error, LogError::DiskFull { .. }),
        "a full disk at the roll: {error}"
    );
    let written = log.last().map_or(0, |l| l.index + 1);
    assert!(
        (1..80).contains(&written),
        "the records before the roll are written: {written}"
    );

    disk.resize("400m");
    let files = log
        .append(&records[usize::try_from(written).expect("small")..])
        .expect("the rest goes in once space is back");
    let mut all = files;
    all.extend(log.files_from(0));
    assert!(all.len() >= 2, "two segments at least");
    for file in &all {
        file.sync_data().expect("sync");
    }
    drop(log);
    let (log, _) = Log::open(&dir, NONCE).expect("reopen");
    let read = log.read(0, 80).expect("read back");
    assert_eq!(read.len(), 80, "every record, once");
    assert!(read.iter().zip(&records).all(|(a, b)| a == b));
}
