//! Proves, with three real `x700 serve --raft` processes on loopback taking
//! a checkpoint every second, that a member stopped across several
//! checkpoints catches up when it comes back: from the log while its gap is
//! within the log margin (`[log] margin_entries`) the others keep past
//! their checkpoints. And, on real stores, that a snapshot image
//! (`table::snapshot`) carries a checkpoint whole into another directory,
//! stays as it was while the source checkpoints again, refuses every
//! damaged, truncated or foreign stream (or one with another shard count)
//! without touching the data directory, takes the receiver's store nonce,
//! and that a swap a crash interrupted is finished when the store next
//! opens; and that a log purged past its end (as after a snapshot) takes
//! the next appends and reopens.

mod common;

use common::cluster::{bind_many, leader_seen_by, routes_all, start_member};
use common::{x, Node};
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};
use x700::binding::BindingId;
use x700::client::Client;
use x700::protocol::{opcode, status, Role};

/// A config file for a member: a checkpoint every second, and `margin`
/// entries kept before it.
fn write_config(dir: &Path, margin_entries: u64) -> PathBuf {
    let path = dir.join("x700.toml");
    let text = format!("[log]\ncheckpoint_interval_s = 1\nmargin_entries = {margin_entries}\n");
    std::fs::write(&path, text).expect("write the config file");
    path
}

struct Member {
    data: tempfile::TempDir,
    config: PathBuf,
    raft: String,
}

impl Member {
    fn start(&self, id: u64) -> Node {
        let config = self.config.to_string_lossy().to_string();
        start_member(self.data.path(), id, &self.raft, &["--config", &config])
    }
}

/// `log.<key>` of the node's STATS: `checkpoints` (taken since start),
/// `first_index` (the first log entry it still holds), `applied_index`,
/// `snapshots_installed` (from the leader).
fn log_stat(address: SocketAddr, key: &str) -> u64 {
    let mut client = Client::connect(address, Role::Admin, "").expect("connect");
    let (code, text) = client.stats().expect("STATS answered");
    assert_eq!(status::name(code), "ok", "{text}");
    let stats: serde_json::Value = serde_json::from_str(&text).expect("STATS is JSON");
    stats["log"][key]
        .as_u64()
        .unwrap_or_else(|| panic!("log.{key} in {text}"))
}

/// Starts three members with `margin_entries`, initialises the cluster and
/// returns them with their nodes.
fn start_cluster(margin_entries: u64) -> (Vec<Member>, BTreeMap<u64, Node>) {
    let mut members: Vec<Member> = (0..3)
        .map(|_| {
            let data = tempfile::tempdir().expect("dir");
            let config = write_config(data.path(), margin_entries);
            Member {
                data,
                config,
                // Picked by the node at its first start (read back below);
                // a restart comes back at the same address.
                raft: "127.0.0.1:0".to_string(),
            }
        })
        .collect();
    let nodes: BTreeMap<u64, Node> = (1..=3u64)
        .map(|id| (id, members[index(id)].start(id)))
        .collect();
    for (id, node) in &nodes {
        members[index(*id)].raft = node.raft.expect("a raft address").to_string();
    }
    let list: Vec<String> = nodes
        .iter()
        .map(|(id, node)| format!("{id}={}={}", members[index(*id)].raft, node.tcp))
        .collect();
    let mut admin = Client::connect(nodes[&1].tcp, Role::Admin, "").expect("admin");
    let (code, reason) = admin
        .request(opcode::CLUSTER_INIT, list.join(" ").as_bytes())
        .expect("CLUSTER_INIT answered");
    assert_eq!(code, status::OK, "{}", String::from_utf8_lossy(&reason));
    (members, nodes)
}

fn index(id: u64) -> usize {
    usize::try_from(id - 1).expect("small")
}

/// Stops a follower, takes writes at the leader until it has taken at
/// least three checkpoints more (and, if `until_purged`, until its log no
/// longer holds the entries after the follower's last), restarts the
/// follower, and checks that every member routes every acknowledged bind;
/// returns how many snapshots the follower installed.
fn stopped_member_catches_up(margin_entries: u64, until_purged: bool) -> u64 {
    let (members, mut nodes) = start_cluster(margin_entries);
    let (leader_id, leader) =
        leader_seen_by(nodes[&1].tcp, Duration::from_secs(10)).expect("a leader within 10 s");
    let mut acked = bind_many(leader, 400_000, 50);
    let stopped_id = *nodes
        .keys()
        .find(|id| **id != leader_id)
        .expect("a follower");
    let stopped = nodes.remove(&stopped_id).expect("the follower");
    assert!(stopped.stop().success(), "the follower stops cleanly");

    // Three checkpoints, counted only once the log has moved on by twice
    // the margin (at most 100 entries) since the stop: on a busy machine
    // three checkpoints can come before that many binds, and the purge
    // would then not yet have passed the stopped member's place.
    let stopped_at = log_stat(leader, "applied_index");
    let moved_on = 2 * margin_entries.min(50);
    let mut checkpoints_before = None;
    let mut first = 410_000;
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        if checkpoints_before.is_none() && log_stat(leader, "applied_index") > stopped_at + moved_on
        {
            checkpoints_before = Some(log_stat(leader, "checkpoints"));
        }
        // openraft purges after a checkpoint only once no replication in
        // flight needs the entries, which a loaded machine can delay past
        // the checkpoints: wait for the purge itself.
        // (Twenty entries of room: the stopped member may have held a
        // few entries the leader had not applied yet.)
        let purged = !until_purged || log_stat(leader, "first_index") > stopped_at + 20;
        if purged
            && checkpoints_before
                .is_some_and(|before| log_stat(leader, "checkpoints") >= before + 3)
        {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "in 60 s after {moved_on} entries, the leader took fewer than 3 checkpoints \
             or kept the log from entry {} (purged past it: {purged})",
            stopped_at + 20
        );
        acked.extend(bind_many(leader, first, 20));
        first += 20;
        std::thread::sleep(Duration::from_millis(300));
    }

    nodes.insert(stopped_id, members[index(stopped_id)].start(stopped_id));
    for (id, node) in &nodes {
        assert!(
            routes_all(node.tcp, &acked, Duration::from_secs(20)),
            "member {id} misses acknowledged binds"
        );
    }
    let installed = log_stat(nodes[&stopped_id].tcp, "snapshots_installed");
    // The member goes on taking the log after the snapshot.
    let later = bind_many(leader, first, 50);
    assert!(
        routes_all(nodes[&stopped_id].tcp, &later, Duration::from_secs(20)),
        "member {stopped_id} misses binds after its catch-up"
    );
    for node in nodes.into_values() {
        assert!(node.stop().success());
    }
    // And it restarts from the swapped-in tables.
    let again = members[index(stopped_id)].start(stopped_id);
    assert!(
        routes_all(again.tcp, &acked, Duration::from_secs(20)),
        "member {stopped_id} lost binds across its restart"
    );
    assert!(again.stop().success());
    installed
}

#[test]
fn a_member_stopped_across_checkpoints_catches_up_from_the_log_margin() {
    assert_eq!(
        stopped_member_catches_up(100_000, false),
        0,
        "within the margin, the log suffices"
    );
}

/// Guards `install_snapshot`, which failed (stopping the member's Raft core
/// for good) whenever a member fell behind the purged log.
#[test]
fn a_member_behind_the_purged_log_catches_up_by_snapshot() {
    assert!(
        stopped_member_catches_up(30, true) >= 1,
        "behind the purged log, the member needs the leader's snapshot"
    );
}

// ---- Snapshot images on real stores ----

use std::sync::Arc;
use x700::binding::{BindRequest, Direction, OrderRef, Parties};
use x700::number::parse_real;
use x700::store::clock::FakeClock;
use x700::store::Store;
use x700::table::snapshot::{
    adopt, begin_swap, copy_checkpoint, finish_swap, read_image, swap_in, write_image, ImageError,
    STAGING_NAME, SWAP_JOURNAL_NAME,
};

const FILE_BYTES_MAX: u64 = 1 << 30;

fn clock() -> Arc<FakeClock> {
    Arc::new(FakeClock::new(1_800_000_000))
}

fn request(i: u64) -> BindRequest {
    BindRequest {
        x: x(i),
        parties: Parties::Axb {
            a: parse_real(&format!("138{i:08}")).expect("real number"),
            b: parse_real(&format!("139{i:08}")).expect("real number"),
        },
        tenant: 3,
        order: OrderRef::new(format!("order-{i}").as_bytes()).expect("order"),
        ttl_s: 86_400,
        direction: Direction::Both,
        recording: false,
    }
}

/// A closed two-shard store with `count` bindings from `first`, and their
/// ids.
fn store_with(dir: &Path, first: u64, count: u64) -> Vec<(u64, BindingId)> {
    let mut store = Store::open_or_create(dir, 2, clock()).expect("store");
    let ids = (first..first + count)
        .map(|i| (i, store.bind(&request(i)).expect("bind").binding_id))
        .collect();
    store.close().expect("close");
    ids
}

fn assert_holds(dir: &Path, ids: &[(u64, BindingId)]) {
    let store = Store::open(dir, clock()).expect("the swapped-in store opens");
    for &(i, id) in ids {
        let binding = store
            .query(id)
            .unwrap_or_else(|| panic!("binding {i} lost"));
        assert_eq!(binding.x, x(i));
    }
}

/// The image of `source`'s last checkpoint, copied and streamed.
fn image_of(source: &Path, copies: &Path) -> (PathBuf, Vec<u8>) {
    let image_dir = copies.join("image");
    copy_checkpoint(source, &image_dir).expect("copy the checkpoint");
    let mut stream = Vec::new();
    write_image(&image_dir, &mut stream).expect("stream the image");
    (image_dir, stream)
}

#[test]
fn an_image_carries_a_checkpoint_whole_and_later_checkpoints_leave_it_alone() {
    let source = tempfile::tempdir().expect("dir");
    let copies = tempfile::tempdir().expect("dir");
    let ids = store_with(source.path(), 0, 300);
    let (image_dir, stream) = image_of(source.path(), copies.path());
    // STORAGE.md section 19's example: two shards and the registry (20
    // files), a 64-byte `store` first.
    let example = "58 37 30 30 53 49 4d 47 01 00 00 00 14 00 00 00 05 00 73 74 6f 72 65 \
                   40 00 00 00 00 00 00 00";
    let example: Vec<u8> = example
        .split_whitespace()
        .map(|byte| u8::from_str_radix(byte, 16).expect("hex"))
        .collect();
    assert_eq!(stream[..example.len()], example[..]);

    // The source takes more writes and checkpoints again: the image is
    // the same byte for byte.
    let later = store_with(source.path(), 1000, 200);
    let mut again = Vec::new();
    write_image(&image_dir, &mut again).expect("stream again");
    assert!(again == stream, "a later checkpoint changed the image");

    // Another node's directory, with its own (different) store, receives it.
    let target = tempfile::tempdir().expect("dir");
    let own = store_with(target.path(), 5000, 10);
    let staging = target.path().join(STAGING_NAME);
    read_image(&mut stream.as_slice(), &staging, FILE_BYTES_MAX).expect("a whole image stages");
    adopt(&staging, target.path()).expect("the image takes this directory's nonce");
    let nonce_before = std::fs::read(target.path().join("store")).expect("store");
    swap_in(target.path(), &staging).expect("swap in");
    assert_eq!(
        std::fs::read(target.path().join("store")).expect("store"),
        nonce_before,
        "the receiver keeps its own store file (its log carries its nonce)"
    );
    assert!(!staging.exists() && !target.path().join(SWAP_JOURNAL_NAME).exists());
    assert_holds(target.path(), &ids);
    let store = Store::open(target.path(), clock()).expect("opens");
    for (i, id) in own.iter().chain(&later) {
        assert!(
            store.query(*id).is_none_or(|b| b.x != x(*i)),
            "binding {i} is not in the image but was found"
        );
    }
}

#[test]
fn a_damaged_truncated_or_foreign_stream_is_refused_and_touches_nothing() {
    let source = tempfile::tempdir().expect("dir");
    let copies = tempfile::tempdir().expect("dir");
    store_with(source.path(), 0, 100);
    let (_, stream) = image_of(source.path(), copies.path());
    let target = tempfile::tempdir().expect("dir");
    let own = store_with(target.path(), 5000, 10);
    let staging = target.path().join(STAGING_NAME);
    let refuse = |bytes: &[u8], what: &str| {
        let mut input = bytes;
        match read_image(&mut input, &staging, FILE_BYTES_MAX) {
            Ok(_) => panic!("{what}: accepted"),
            Err(error) => error,
        }
    };
    // A flipped byte anywhere past the header: a length, a path, a page,
    // a checksum (forty places spread over the stream keep the test short;
    // the first ones fall in the first file's header).
    for at in (16..stream.len())
        .step_by(stream.len() / 40 + 1)
        .chain(16..40)
    {
        let mut damaged = stream.clone();
        damaged[at] ^= 0x40;
        refuse(&damaged, &format!("byte {at} flipped"));
    }
    for cut in [0, 8, 15, 16, 40, stream.len() / 2, stream.len() - 1] {
        refuse(&stream[..cut], &format!("cut at {cut}"));
    }
    let mut longer = stream.clone();
    longer.push(0);
    refuse(&longer, "a byte past the end");
    let mut foreign = stream.clone();
    foreign[..8].copy_from_slice(b"NOTANIMG");
    assert!(matches!(
        refuse(&foreign, "magic"),
        ImageError::Malformed(_)
    ));
    // A path out of the layout (the first file's name is `store`; make it
    // `../re`, same length).
    let mut escape = stream.clone();
    assert_eq!(&escape[18..23], b"store");
    escape[18..23].copy_from_slice(b"../re");
    assert!(matches!(refuse(&escape, "path"), ImageError::Malformed(_)));
    // The receiver's own tables were never touched.
    assert_holds(target.path(), &own);
}

#[test]
fn a_page_that_does_not_match_its_checksum_is_refused_even_in_a_well_formed_stream() {
    let source = tempfile::tempdir().expect("dir");
    let copies = tempfile::tempdir().expect("dir");
    store_with(source.path(), 0, 100);
    let image_dir = copies.path().join("image");
    copy_checkpoint(source.path(), &image_dir).expect("copy");
    // Damage a record page in the image (as a bad disk at the leader
    // would): the stream's file checksum is computed over the damage.
    let records = image_dir.join("shard-000").join("records");
    let mut bytes = std::fs::read(&records).expect("read");
    bytes[4096 + 5] ^= 1;
    std::fs::write(&records, bytes).expect("write");
    let mut stream = Vec::new();
    write_image(&image_dir, &mut stream).expect("stream");
    let target = tempfile::tempdir().expect("dir");
    let error = read_image(
        &mut stream.as_slice(),
        &target.path().join(STAGING_NAME),
        FILE_BYTES_MAX,
    )
    .expect_err("a damaged page is refused");
    assert!(
        matches!(error, ImageError::PageMismatch { page: 1, .. }),
        "{error}"
    );
    // And a leader never names a copy with a damaged page.
    let copies = tempfile::tempdir().expect("dir");
    let source_records = source.path().join("shard-000").join("records");
    let mut bytes = std::fs::read(&source_records).expect("read");
    bytes[4096 + 5] ^= 1;
    std::fs::write(&source_records, bytes).expect("write");
    let image_dir = copies.path().join("image");
    assert!(copy_checkpoint(source.path(), &image_dir).is_err());
    assert!(!image_dir.exists());
}

#[test]
fn a_swap_interrupted_by_a_crash_is_finished_when_the_store_next_opens() {
    let source = tempfile::tempdir().expect("dir");
    let copies = tempfile::tempdir().expect("dir");
    let ids = store_with(source.path(), 0, 200);
    let (_, stream) = image_of(source.path(), copies.path());
    let target = tempfile::tempdir().expect("dir");
    store_with(target.path(), 5000, 10);
    let staging = target.path().join(STAGING_NAME);
    read_image(&mut stream.as_slice(), &staging, FILE_BYTES_MAX).expect("stages");
    adopt(&staging, target.path()).expect("adopt");
    begin_swap(target.path(), &staging).expect("journal");
    // The crash: two files were moved, the rest are still staged.
    for name in ["shard-000/records", "shard-001/meta"] {
        std::fs::rename(staging.join(name), target.path().join(name)).expect("move");
    }
    // `Store::open` finishes the swap before it reads anything.
    assert_holds(target.path(), &ids);
    assert!(!target.path().join(SWAP_JOURNAL_NAME).exists() && !staging.exists());
    assert!(!finish_swap(target.path()).expect("nothing left"));
}

/// A newer image staged after one was journaled replaces it whole: the
/// journal is written aside and renamed, and the staging directory it
/// named before is removed.
#[test]
fn a_newer_staged_image_replaces_the_journaled_one() {
    let source = tempfile::tempdir().expect("dir");
    let copies = tempfile::tempdir().expect("dir");
    store_with(source.path(), 0, 50);
    let (_, older) = image_of(source.path(), copies.path());
    let ids = store_with(source.path(), 100, 50);
    let copies = tempfile::tempdir().expect("dir");
    let (_, newer) = image_of(source.path(), copies.path());
    let target = tempfile::tempdir().expect("dir");
    store_with(target.path(), 5000, 10);
    let first = target.path().join("staging-older");
    let second = target.path().join("staging-newer");
    for (image, staging) in [(&older, &first), (&newer, &second)] {
        read_image(&mut image.as_slice(), staging, FILE_BYTES_MAX).expect("stages");
        adopt(staging, target.path()).expect("adopt");
        begin_swap(target.path(), staging).expect("journal");
    }
    assert!(!first.exists(), "the replaced staging directory is removed");
    assert!(!target
        .path()
        .join(format!("{SWAP_JOURNAL_NAME}.new"))
        .exists());
    assert_holds(target.path(), &ids);
}

/// An image of a directory with another shard count would route X
/// numbers to the wrong shards: refused before anything is swapped.
#[test]
fn an_image_with_another_shard_count_is_refused() {
    let source = tempfile::tempdir().expect("dir");
    let copies = tempfile::tempdir().expect("dir");
    store_with(source.path(), 0, 20);
    let (_, stream) = image_of(source.path(), copies.path());
    let target = tempfile::tempdir().expect("dir");
    Store::create(target.path(), 3, clock())
        .expect("three shards")
        .close()
        .expect("close");
    let staging = target.path().join(STAGING_NAME);
    read_image(&mut stream.as_slice(), &staging, FILE_BYTES_MAX).expect("stages");
    let error = adopt(&staging, target.path()).expect_err("refused");
    assert!(error.to_string().contains("shards"), "{error}");
}

/// Guards `Log::purge` past the last record (what a member that installs
/// a snapshot ahead of its log does): the active segment kept its purged
/// records, the next append landed behind them where no read found it,
/// and the log refused to reopen.
#[test]
fn a_log_purged_past_its_end_takes_appends_at_the_next_index_and_reopens() {
    use x700::log::{Log, LogPosition, LogRecord, RecordKind};
    let dir = tempfile::tempdir().expect("dir");
    let record = |index: u64| LogRecord {
        index,
        term: 1,
        leader: 1,
        kind: RecordKind::Writes,
        payload: vec![u8::try_from(index % 251).expect("small"); 10],
    };
    {
        let (mut log, _) = Log::open(dir.path(), 7).expect("open");
        let early: Vec<LogRecord> = (1..=50).map(record).collect();
        log.append(&early).expect("append 1..=50");
        let upto = LogPosition {
            index: 194,
            term: 1,
            leader: 1,
        };
        log.purge(upto).expect("purge past the end");
        let late: Vec<LogRecord> = (195..=200).map(record).collect();
        for file in log.append(&late).expect("append 195..=200") {
            file.sync_all().expect("sync");
        }
        let read = log.read(195, 201).expect("read back");
        assert!(read.len() == 6 && read.iter().zip(195..).all(|(r, i)| r.index == i));
    }
    let (log, _) = Log::open(dir.path(), 7).expect("the log reopens");
    let read = log.read(195, 201).expect("read after reopen");
    let indexes: Vec<u64> = read.iter().map(|r| r.index).collect();
    assert_eq!(indexes, (195..=200).collect::<Vec<u64>>());
    assert!(read.iter().all(|r| r.payload == record(r.index).payload));
}
