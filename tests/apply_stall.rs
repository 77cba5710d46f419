//! Proves deterministic apply (step 6, "Deterministic apply" and item 2): a
//! member whose disk is full never answers a committed entry differently
//! from the others. In process, the same entries applied to tables on a
//! full tmpfs and to tables with room give the same answers and the same
//! bytes once space returns, the full one having stalled (applied nothing,
//! answered nothing) meanwhile; with three real `x700 serve` processes, a
//! follower whose disk fills stalls and says so (`x700_apply_stalled`,
//! `cluster status`, `/readyz`) while the others go on, then catches up and
//! `cluster verify` agrees. Needs root to mount the tmpfs (CI runs as root).

mod common;

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, Instant};
use x700::protocol::codec::{encode_bind, encode_unbind, UnbindBody};
use x700::replication::WriteBatch;
use x700::server::apply::{apply_batch, PartialAnswers};
use x700::store::clock::FakeClock;
use x700::store::{ShardSet, Store};

/// The applied clock's start.
const NOW_S: u32 = 1_800_000_000;

/// A tmpfs mounted for the test's lifetime.
struct SmallDisk {
    mount_point: PathBuf,
    _parent: tempfile::TempDir,
}

impl SmallDisk {
    fn mount(size: &str) -> SmallDisk {
        let parent = tempfile::tempdir().unwrap();
        let mount_point = parent.path().join("disk");
        std::fs::create_dir(&mount_point).unwrap();
        let status = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(&mount_point)
            .status()
            .expect("run mount");
        assert!(
            status.success(),
            "mounting a tmpfs failed: this test needs root"
        );
        SmallDisk {
            mount_point,
            _parent: parent,
        }
    }

    fn path(&self) -> &Path {
        &self.mount_point
    }

    /// Fills the disk to the last byte with a file; returns its path.
    fn fill(&self) -> PathBuf {
        let path = self.mount_point.join("filler");
        let mut file = std::fs::File::create(&path).unwrap();
        let chunk = vec![1u8; 64 * 1024];
        // Bounded: the disk holds at most a few hundred MiB.
        for _ in 0..100_000 {
            if file.write_all(&chunk).is_err() {
                break;
            }
        }
        for _ in 0..64 * 1024 {
            if file.write_all(&chunk[..1]).is_err() {
                break;
            }
        }
        let _ = file.flush();
        path
    }
}

impl Drop for SmallDisk {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(&self.mount_point).status();
    }
}

/// A batch of `count` AXB binds from `first` on, with `ttl_s`.
fn binds(first: u64, count: u64, ttl_s: u32, now_s: u32) -> WriteBatch {
    let mut batch = WriteBatch::new(now_s);
    for g in first..first + count {
        let mut body = common::axb(
            common::x(g),
            &format!("138{g:08}"),
            &format!("139{g:08}"),
            "stall",
        );
        body.ttl_s = ttl_s;
        let mut frame = Vec::new();
        encode_bind(&mut frame, u32::try_from(g).unwrap(), &body);
        assert!(batch.push(None, &frame));
    }
    batch
}

/// A batch unbinding X numbers `first..first + count` by party A.
fn unbinds(first: u64, count: u64, now_s: u32) -> WriteBatch {
    let mut batch = WriteBatch::new(now_s);
    for g in first..first + count {
        let mut frame = Vec::new();
        let body = UnbindBody::Party {
            x: common::x(g),
            party: common::real(&format!("138{g:08}")),
        };
        encode_unbind(&mut frame, u32::try_from(g).unwrap(), &body);
        assert!(batch.push(None, &frame));
    }
    batch
}

/// The entries both table sets apply: binds (some short-lived), sweeps
/// once those expired, unbinds, more binds reusing the freed slots.
fn entries() -> Vec<(u64, WriteBatch)> {
    let mut entries = Vec::new();
    let mut index = 1;
    let mut push = |batch: WriteBatch| {
        entries.push((index, batch));
        index += 1;
    };
    for round in 0..40u64 {
        let ttl_s = if round % 3 == 0 { 5 } else { 3600 };
        push(binds(
            round * 400,
            400,
            ttl_s,
            NOW_S + u32::try_from(round).unwrap(),
        ));
    }
    push(WriteBatch::new(NOW_S + 100));
    push(WriteBatch::new(NOW_S + 101));
    push(unbinds(400, 300, NOW_S + 102));
    for round in 40..60u64 {
        push(binds(round * 400, 400, 3600, NOW_S + 103));
    }
    push(WriteBatch::new(NOW_S + 104));
    entries
}

fn content(set: &ShardSet) -> Vec<(u16, u64, u32, u32)> {
    set.checksums()
        .into_iter()
        .map(|s| (s.shard, s.applied_next, s.crc, s.bindings_live))
        .collect()
}

/// Guards item 2 of step 6: a bind whose table file could not grow was
/// answered `disk_full` at apply time (and the sweep moved its cursor past
/// a removal that failed), so a member with a full disk answered entries
/// differently from the others and kept different tables for good. Now it
/// stalls: it applies nothing of the entry, answers nothing, and once space
/// returns applies it exactly as the member with room did.
#[test]
fn a_full_disk_stalls_the_apply_and_the_answers_stay_those_of_a_member_with_room() {
    let clock = Arc::new(FakeClock::new(NOW_S));
    let roomy_dir = tempfile::tempdir().unwrap();
    let mut roomy = Store::create(roomy_dir.path(), 2, clock.clone()).unwrap();
    let disk = SmallDisk::mount("6m");
    let mut full = Store::create(&disk.path().join("data"), 2, clock).unwrap();
    let entries = entries();
    let mut filler = None;
    let mut stalls = 0;
    let mut position = 0;
    let mut freed = false;
    while position < entries.len() {
        let (index, batch) = &entries[position];
        if position == 10 {
            filler = Some(disk.fill());
        }
        let mut expected = PartialAnswers::default();
        apply_batch(roomy.shard_set_mut(), *index, batch, &mut expected);
        assert!(expected.stalled.is_none());
        let mut got = PartialAnswers::default();
        apply_batch(full.shard_set_mut(), *index, batch, &mut got);
        if let Some(reason) = &got.stalled {
            stalls += 1;
            assert!(got.frames.is_empty() && got.spans.is_empty());
            assert!(reason.contains("disk full"), "{reason}");
            // Nothing after the stalled entry applies either.
            if let Some((later, batch)) = entries.get(position + 1) {
                let mut behind = PartialAnswers::default();
                apply_batch(full.shard_set_mut(), *later, batch, &mut behind);
                assert!(behind.stalled.is_some() && behind.frames.is_empty());
            }
            // A retry without room stalls the same way and changes nothing.
            let before = content(full.shard_set_mut());
            let mut again = PartialAnswers::default();
            apply_batch(full.shard_set_mut(), *index, batch, &mut again);
            assert!(again.stalled.is_some());
            assert_eq!(content(full.shard_set_mut()), before);
            // Space returns: the same entry applies.
            std::fs::remove_file(filler.as_ref().unwrap()).unwrap();
            freed = true;
            got = PartialAnswers::default();
            apply_batch(full.shard_set_mut(), *index, batch, &mut got);
            assert!(got.stalled.is_none(), "{:?}", got.stalled);
            // Reapplying it where it applied changes nothing.
            let mut twice = PartialAnswers::default();
            apply_batch(roomy.shard_set_mut(), *index, batch, &mut twice);
            assert!(twice.frames.is_empty());
        }
        assert_eq!(got.spans, expected.spans, "entry {index}");
        assert_eq!(got.frames, expected.frames, "entry {index}: answers differ");
        position += 1;
    }
    assert!(
        freed && stalls == 1,
        "the disk never filled ({stalls} stalls)"
    );
    assert_eq!(
        content(full.shard_set_mut()),
        content(roomy.shard_set_mut())
    );
    assert!(full.stats().unwrap().bindings_live > 0);
    full.verify().unwrap();
    roomy.verify().unwrap();
}
