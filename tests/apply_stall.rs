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

use common::small_disk::SmallDisk;

use common::cluster::{
    bind_many, cluster_command, init_cluster, leader_seen_by, routes_all, start_member,
};
use common::{http_get, Node};
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};
use x700::protocol::codec::{encode_bind, encode_unbind, UnbindBody};
use x700::replication::WriteBatch;
use x700::server::apply::{apply_batch, PartialAnswers};
use x700::store::clock::FakeClock;
use x700::store::{ShardSet, Store};

/// The applied clock's start.
const NOW_S: u32 = 1_800_000_000;

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

/// The value of an unlabelled gauge on the node's /metrics page.
fn gauge(admin: std::net::SocketAddr, name: &str) -> f64 {
    let (code, page) = http_get(admin, "/metrics");
    assert_eq!(code, 200);
    page.lines()
        .find_map(|line| line.strip_prefix(name)?.strip_prefix(' ')?.parse().ok())
        .unwrap_or_else(|| panic!("no {name} on /metrics"))
}

/// Waits (bounded) until `check` holds; false if it never did.
fn eventually(wait: Duration, mut check: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + wait;
    loop {
        if check() {
            return true;
        }
        if Instant::now() > deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Guards "Deterministic apply" across real members: a follower whose
/// table files cannot grow used to answer the writes it applied
/// `disk_full` and keep tables without them, for good (and `cluster
/// verify` disagreed). Now it stalls and says so, the others go on, and
/// once space returns it holds every acknowledged bind under the same ids
/// and `cluster verify` agrees.
#[test]
fn a_follower_with_a_full_disk_stalls_says_so_and_catches_up_once_space_returns() {
    let wait = Duration::from_secs(30);
    let disk = SmallDisk::mount("200m");
    let roomy: Vec<tempfile::TempDir> = (0..2).map(|_| tempfile::tempdir().unwrap()).collect();
    let dirs = [
        roomy[0].path().to_path_buf(),
        roomy[1].path().to_path_buf(),
        disk.path().join("data"),
    ];
    let extra = ["--table-shards", "1"];
    let mut nodes: BTreeMap<u64, Node> = (1..=3u64)
        .map(|id| {
            let dir = &dirs[usize::try_from(id - 1).unwrap()];
            (id, start_member(dir, id, "127.0.0.1:0", &extra))
        })
        .collect();
    let rafts: Vec<String> = nodes
        .values()
        .map(|n| n.raft.unwrap().to_string())
        .collect();
    let (leader_id, mut leader) = init_cluster(&nodes, &rafts);
    if leader_id == 3 {
        // The member with the small disk must be a follower: restart it
        // (at its own raft address) and let the two others elect.
        let node = nodes.remove(&3).unwrap();
        assert!(node.stop().success());
        (_, leader) = eventually(wait, || {
            leader_seen_by(nodes[&1].tcp, Duration::from_secs(1)).is_some_and(|(id, _)| id != 3)
        })
        .then(|| leader_seen_by(nodes[&1].tcp, wait))
        .flatten()
        .expect("a leader among the two others");
        nodes.insert(3, start_member(&dirs[2], 3, &rafts[2], &extra));
    }
    let small = &nodes[&3];
    let mut acked = bind_many(leader, 0, 200);
    assert!(
        routes_all(small.tcp, &acked, wait),
        "member 3 never caught up"
    );

    // Member 3's disk fills: its tables cannot grow any more (its log
    // segment is preallocated, so it goes on taking entries).
    let filler = disk.fill();
    acked.extend(bind_many(leader, 200, 3000));
    assert!(
        eventually(wait, || gauge(small.admin, "x700_apply_stalled") == 1.0),
        "member 3 never reported its stall"
    );
    let status = common::cluster::status_json(small.tcp).expect("member 3 answers");
    assert_eq!(status["apply_stalled"], true, "{status}");
    assert!(
        status["apply_stall_reason"]
            .as_str()
            .is_some_and(|r| r.contains("disk full")),
        "{status}"
    );
    let own = status["members"]
        .as_array()
        .and_then(|m| m.iter().find(|m| m["id"] == 3))
        .expect("member 3 listed");
    assert_eq!(own["apply_stalled"], true, "{status}");
    let (code, body) = http_get(small.admin, "/readyz");
    assert_eq!(code, 503, "{body}");
    assert!(body.contains("apply stalled"), "{body}");
    // The others go on: writes are acknowledged, members 1 and 2 are not
    // stalled, and member 3 still answers lookups from its tables.
    acked.extend(bind_many(leader, 3200, 100));
    for id in [1, 2] {
        assert_eq!(gauge(nodes[&id].admin, "x700_apply_stalled"), 0.0);
    }
    assert!(routes_all(small.tcp, &acked[..200], Duration::ZERO));

    // A stalled member still stops on SIGTERM (its last checkpoint would
    // wait behind the stalled entry: it is skipped, the log replays at the
    // next start). `stop` fails the test if it does not exit in time.
    let small = nodes.remove(&3).unwrap();
    let client_addr = small.tcp.to_string();
    let _ = small.stop();

    // Space returns: member 3 restarts (at its addresses: the membership
    // names them) and applies what it missed, the same way.
    std::fs::remove_file(&filler).unwrap();
    let mut again = extra.to_vec();
    again.extend(["--listen", client_addr.as_str()]);
    nodes.insert(3, start_member(&dirs[2], 3, &rafts[2], &again));
    let small = &nodes[&3];
    assert!(
        routes_all(small.tcp, &acked, wait),
        "member 3 misses acknowledged binds once space is back"
    );
    assert!(eventually(wait, || gauge(
        small.admin,
        "x700_apply_stalled"
    ) == 0.0));
    let mut ready = (0, String::new());
    assert!(
        eventually(wait, || {
            ready = http_get(small.admin, "/readyz");
            ready.0 == 200
        }),
        "member 3 never ready again: {ready:?}"
    );
    let mut verdict = serde_json::Value::Null;
    let agreed = eventually(wait, || {
        let (code, json) = cluster_command(&["verify", "--server", &leader.to_string()]);
        verdict = json;
        code == 0 && verdict["agree"] == true
    });
    assert!(agreed, "cluster verify: {verdict}");
    assert_eq!(verdict["members"].as_array().map(Vec::len), Some(3));
    for node in nodes.into_values() {
        assert!(node.stop().success());
    }
}
