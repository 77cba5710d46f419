//! Proves that the fresh pages a checkpoint writes in place before its
//! journal (past everything the previous checkpoint refers to), left there
//! without their checksums when it fails (a full disk at the journal), stop
//! neither the next open nor a page check, never reach the tables, and are
//! gone after the next checkpoint. Guards the restart of a member whose
//! disk filled: it was refused as "page N does not match its checksum".

mod common;

use std::os::unix::fs::FileExt;
use std::path::Path;
use std::sync::Arc;
use x700::store::clock::FakeClock;
use x700::store::Store;
use x700::synth::Synthetic;

/// Writes non-zero bytes over the last page of every table file of shard
/// 0: past what the checkpoint refers to (the files are grown ahead of
/// use), as a failed checkpoint's fresh pages would be.
fn scribble_past_the_checkpoint(dir: &Path) -> usize {
    let mut written = 0;
    for name in ["records", "cold", "index", "overflow"] {
        let path = dir.join("shard-000").join(name);
        let file = std::fs::OpenOptions::new()
            .write(true)
            .open(&path)
            .expect("open a table file");
        let length = file.metadata().expect("metadata").len();
        if length >= 3 * 4096 {
            file.write_all_at(&[0x5a; 4096], length - 4096)
                .expect("write");
            written += 1;
        }
    }
    written
}

#[test]
fn fresh_pages_of_a_failed_checkpoint_are_cleared_at_the_next_open() {
    let dir = tempfile::tempdir().expect("dir");
    let clock = Arc::new(FakeClock::new(1_800_000_000));
    let mut store = Store::open_or_create(dir.path(), 1, clock.clone()).expect("store");
    let synthetic = Synthetic { seed: 5 };
    let requests: Vec<_> = (0..50).map(|i| synthetic.request(i, 86_400)).collect();
    let ids: Vec<_> = requests
        .iter()
        .map(|request| store.bind(request).expect("bind").binding_id)
        .collect();
    store.close().expect("close");
    assert!(
        scribble_past_the_checkpoint(dir.path()) >= 1,
        "no table file has room past its checkpoint"
    );

    let store = Store::open(dir.path(), clock.clone()).expect("opens");
    store
        .verify_pages()
        .expect("the pages past the checkpoint do not count");
    store.verify().expect("the tables are whole");
    for (request, id) in requests.iter().zip(&ids) {
        let binding = store.query(*id).expect("binding kept");
        assert_eq!(binding.x, request.x);
    }
    store.close().expect("close");

    // The next checkpoint wrote the cleared pages: the files check as they
    // are on disk, from a fresh open.
    let store = Store::open(dir.path(), clock).expect("opens again");
    store.verify_pages().expect("pages and checksums agree");
    store.close().expect("close");
}
