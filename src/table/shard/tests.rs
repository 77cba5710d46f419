//! Proves that the room `reserve_for_entry` grows ahead is enough for
//! everything the entry then does to the shard, and that a committed
//! capture holds its pages as they were when taken, whatever the shard
//! writes before and during the commit.

use super::*;
use crate::synth::Synthetic;

fn file_sizes(shard: &Shard) -> [u64; 4] {
    let stats = shard.stats();
    [
        stats.records_bytes,
        stats.cold_bytes,
        stats.index_bytes,
        stats.overflow_bytes,
    ]
}

/// Guards deterministic apply: a reservation that counted short would
/// leave a write of the entry to grow a file at apply time, where a
/// full disk would make its answer differ from the other members'.
/// Rounds of binds (each after an 8-slot sweep, half of them expiring
/// soon) and of full sweeps grow no file past what was reserved.
#[test]
fn an_entry_never_grows_a_file_past_its_reservation() {
    let dir = tempfile::tempdir().unwrap();
    let identity = ShardIdentity {
        shard_id: 0,
        shard_count: 1,
        store_nonce: 1,
    };
    let mut shard = Shard::create(&dir.path().join("shard"), identity, 0).unwrap();
    let synthetic = Synthetic { seed: 3 };
    let mut now_s = 1_800_000_000;
    let mut next = 0u64;
    let mut created = 0;
    for round in 0..24u32 {
        let writes = 40 + round * 53;
        shard.reserve_for_entry(now_s, writes, 8, 0).unwrap();
        let reserved = file_sizes(&shard);
        for _ in 0..writes {
            shard.reclaim_expired(now_s, 8);
            let ttl_s = if next.is_multiple_of(2) { 1 } else { 3600 };
            if shard.bind(&synthetic.request(next, ttl_s), now_s).is_ok() {
                created += 1;
            }
            next += 1;
        }
        assert_eq!(file_sizes(&shard), reserved, "binds of round {round}");
        now_s += 2;
        shard.reserve_for_entry(now_s, 0, 8, 4096).unwrap();
        let reserved = file_sizes(&shard);
        shard.reclaim_expired(now_s, 4096);
        assert_eq!(file_sizes(&shard), reserved, "sweep of round {round}");
    }
    assert!(created > 10_000, "only {created} binds made");
    assert!(shard.live_bindings() < created, "nothing was swept");
    shard.verify().unwrap();
}

/// Guards the capture that copies nothing in the loop: pages taken by a
/// capture and written afterwards, before and while another thread
/// commits the image, must reach the files as they were at the
/// capture, byte for byte.
#[test]
fn a_committed_capture_holds_the_pages_as_they_were_when_taken() {
    let dir = tempfile::tempdir().unwrap();
    let shard_dir = dir.path().join("shard");
    let identity = ShardIdentity {
        shard_id: 0,
        shard_count: 1,
        store_nonce: 1,
    };
    let mut shard = Shard::create(&shard_dir, identity, 0).unwrap();
    let synthetic = Synthetic { seed: 5 };
    let now_s = 1_800_000_000;
    let mut ids = Vec::new();
    for i in 0..20_000 {
        shard.reserve_for_entry(now_s, 1, 0, 0).unwrap();
        ids.push(
            shard
                .bind(&synthetic.request(i, 3600), now_s)
                .unwrap()
                .binding_id,
        );
    }
    shard.checkpoint().unwrap();
    for i in 20_000..30_000 {
        shard.reserve_for_entry(now_s, 1, 0, 0).unwrap();
        shard.bind(&synthetic.request(i, 3600), now_s).unwrap();
    }
    let at_capture: Vec<(FileKind, Vec<u8>)> = [
        (FileKind::Records, shard.records.mapped_bytes().to_vec()),
        (FileKind::Cold, shard.cold.mapped_bytes().to_vec()),
        (
            FileKind::Index,
            shard.index.primary_file().mapped_bytes().to_vec(),
        ),
        (
            FileKind::Overflow,
            shard.index.overflow_file().mapped_bytes().to_vec(),
        ),
    ]
    .into();
    let image = shard.capture().unwrap();
    // Writes on the captured pages before the commit starts...
    for id in ids.iter().step_by(3) {
        shard.reserve_for_entry(now_s, 1, 1, 0).unwrap();
        shard.unbind(*id, now_s).unwrap();
    }
    // ... and while it runs.
    let commit = std::thread::spawn(move || image.persist());
    for i in 30_000..60_000 {
        shard.reserve_for_entry(now_s, 1, 0, 0).unwrap();
        shard.bind(&synthetic.request(i, 3600), now_s).unwrap();
    }
    commit.join().unwrap().unwrap();
    for (kind, bytes) in &at_capture {
        let on_disk = std::fs::read(shard_dir.join(kind.file_name())).unwrap();
        assert!(on_disk.len() >= bytes.len(), "{kind:?} shrank");
        let differing = (0..bytes.len() / 4096)
            .filter(|&p| on_disk[p * 4096..(p + 1) * 4096] != bytes[p * 4096..(p + 1) * 4096])
            .count();
        assert_eq!(differing, 0, "{kind:?}: pages unlike the capture");
    }
    shard.verify().unwrap();
}
