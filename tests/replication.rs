//! Proves that replication works between real nodes over TCP: three
//! `Replica`s in one process, each on its own data directory with a
//! `LocalApplier`, connected by the peer transport on 127.0.0.1. Writes
//! submitted at the leader are applied on every member (each member's own
//! tables answer the lookups); a member started with a wrong cluster secret
//! is refused by its peers and never receives an entry; and after the
//! leader stops, the two others elect a new one that takes writes.

use std::sync::mpsc;
use std::sync::Arc;
use std::time::{Duration, Instant};
use x700::binding::{Direction, LookupQuery, LookupResult, Mode, OrderRef};
use x700::number::{parse_real, parse_virtual, Number, XPolicy};
use x700::protocol::codec::{encode_bind, BindBody};
use x700::protocol::status;
use x700::replication::{
    ClusterSecret, Member, PeerConfig, Refusal, Replica, ReplicaOptions, WriteBatch,
};
use x700::server::apply::LocalApplier;
use x700::store::clock::FakeClock;
use x700::store::Store;

/// Seconds since the epoch on every node's clock.
const NOW_S: u32 = 1_800_000_000;
/// Cluster id every node of these tests names.
const CLUSTER_ID: u64 = 0x0700_0000_0000_0001;
/// Longest any wait in these tests lasts.
const WAIT: Duration = Duration::from_secs(20);

struct Node {
    id: u64,
    applier: Arc<LocalApplier>,
    replica: Replica,
    _dir: tempfile::TempDir,
}

fn secret(text: &str) -> ClusterSecret {
    ClusterSecret::new(text.as_bytes()).expect("secret of 16 bytes or more")
}

fn start(id: u64, secret: ClusterSecret) -> Node {
    let dir = tempfile::tempdir().expect("temporary directory");
    let clock = Arc::new(FakeClock::new(NOW_S));
    let mut store = Store::create(dir.path(), 2, clock.clone()).expect("store");
    let (log, recovered) = x700::server::apply::recover(&mut store).expect("recover");
    let set = store.split(1).pop().expect("one shard set");
    let applier = Arc::new(LocalApplier::new(set));
    let options = ReplicaOptions {
        node_id: id,
        peers: Some(PeerConfig {
            cluster_id: CLUSTER_ID,
            secret,
            listen: "127.0.0.1:0".parse().expect("address"),
        }),
        ..ReplicaOptions::default()
    };
    let replica = Replica::start(
        dir.path(),
        log,
        Arc::clone(&applier) as Arc<dyn x700::replication::Applier>,
        &recovered,
        options,
        clock,
    )
    .expect("replica starts");
    Node {
        id,
        applier,
        replica,
        _dir: dir,
    }
}

fn member(node: &Node) -> Member {
    Member {
        id: node.id,
        raft_addr: node.replica.raft_addr().expect("raft address").to_string(),
        client_addr: format!("127.0.0.1:{}", 7000 + node.id),
    }
}

/// Polls `done` every 20 ms until it holds or `WAIT` passes.
fn wait_for(what: &str, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + WAIT;
    while !done() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Waits until every node in `nodes` names the same leader, one of them.
fn leader_of<'a>(nodes: &[&'a Node]) -> &'a Node {
    let mut leader = None;
    wait_for("a leader every member knows", || {
        let first = nodes[0].replica.leader_id();
        leader = first.and_then(|id| nodes.iter().find(|n| n.id == id).copied());
        leader.is_some() && nodes.iter().all(|n| n.replica.leader_id() == first)
    });
    leader.expect("a leader")
}

fn x(i: u32) -> Number {
    parse_virtual(&format!("7001234{:08}", i), XPolicy::default()).expect("virtual number")
}
fn a() -> Number {
    parse_real("13800138000").expect("real number")
}
fn b() -> Number {
    parse_real("13900139000").expect("real number")
}

/// Submits one AXB bind of X number `i` at `node`; the status of its answer,
/// or why it was refused.
fn bind(node: &Node, i: u32) -> Result<u8, Refusal> {
    let body = BindBody {
        mode: Mode::Axb,
        x: x(i),
        a: a(),
        b: b(),
        tenant: 7,
        ttl_s: 3600,
        direction: Direction::Both,
        recording: false,
        order: OrderRef::new(b"replication").expect("order"),
    };
    let mut frame = Vec::new();
    encode_bind(&mut frame, i, &body);
    let mut batch = WriteBatch::new(NOW_S);
    assert!(batch.push(None, &frame));
    let (sender, receiver) = mpsc::channel();
    let done = Box::new(
        move |outcome: Result<x700::replication::Answers, Refusal>| {
            let _ =
                sender.send(outcome.map(|answers| answers.0.get(5).copied().unwrap_or(u8::MAX)));
        },
    );
    if let Err((refusal, _)) = node.replica.submit(batch, done) {
        return Err(refusal);
    }
    receiver.recv_timeout(WAIT).expect("the write is answered")
}

/// True if `node`'s own tables route a call from A to X number `i`.
fn routes(node: &Node, i: u32) -> bool {
    let query = LookupQuery {
        caller: a(),
        x: x(i),
        extension: Number::NONE,
    };
    node.applier
        .with_set(
            |set| matches!(set.lookup(&query, NOW_S), LookupResult::Route(r) if r.callee == b()),
        )
        .unwrap_or(false)
}

fn initialise(nodes: &[&Node]) {
    let members: Vec<Member> = nodes.iter().map(|n| member(n)).collect();
    nodes[0]
        .replica
        .initialize(&members)
        .expect("cluster initialised");
}

#[test]
fn writes_at_the_leader_are_applied_on_every_member() {
    let shared = "a cluster secret for the tests";
    let nodes = [1, 2, 3].map(|id| start(id, secret(shared)));
    let all: Vec<&Node> = nodes.iter().collect();
    initialise(&all);
    let leader = leader_of(&all);
    for i in 0..20 {
        assert_eq!(bind(leader, i), Ok(status::OK), "bind {i} at the leader");
    }
    for node in &nodes {
        wait_for("every bind applied on every member", || {
            (0..20).all(|i| routes(node, i))
        });
        assert_eq!(
            node.replica
                .peer_stats()
                .refused_in
                .load(std::sync::atomic::Ordering::Relaxed),
            0
        );
    }
    let follower = nodes
        .iter()
        .find(|n| n.id != leader.id)
        .expect("a follower");
    assert_eq!(bind(follower, 99), Err(Refusal::NotLeader(Some(leader.id))));
    assert!(!routes(follower, 99));
    let members = follower.replica.members();
    assert_eq!(members, all.iter().map(|n| member(n)).collect::<Vec<_>>());
    for node in &nodes {
        node.replica.shutdown(false).expect("shutdown");
    }
}

#[test]
fn a_member_with_a_wrong_secret_never_joins() {
    let shared = "a cluster secret for the tests";
    let nodes = [
        start(1, secret(shared)),
        start(2, secret(shared)),
        start(3, secret("not the cluster secret at all")),
    ];
    let all: Vec<&Node> = nodes.iter().collect();
    initialise(&all);
    let leader = leader_of(&all[..2]);
    for i in 0..5 {
        assert_eq!(bind(leader, i), Ok(status::OK), "bind {i} at the leader");
    }
    let outsider = &nodes[2];
    let refused = |node: &Node| {
        let stats = node.replica.peer_stats();
        stats.refused_in.load(std::sync::atomic::Ordering::Relaxed)
            + stats.refused_out.load(std::sync::atomic::Ordering::Relaxed)
    };
    wait_for("refusals on both sides", || {
        refused(outsider) > 0 && refused(leader) > 0
    });
    for node in &nodes[..2] {
        wait_for("the binds applied on the two members", || {
            (0..5).all(|i| routes(node, i))
        });
    }
    assert_eq!(
        outsider.replica.applied_index(),
        0,
        "the outsider received an entry"
    );
    assert!(outsider.replica.members().is_empty());
    assert!((0..5).all(|i| !routes(outsider, i)));
    assert_eq!(
        outsider
            .replica
            .peer_stats()
            .connected_in
            .load(std::sync::atomic::Ordering::Relaxed),
        0
    );
    for node in &nodes {
        node.replica.shutdown(false).expect("shutdown");
    }
}

#[test]
fn after_the_leader_stops_the_others_elect_one_and_take_writes() {
    let shared = "a cluster secret for the tests";
    let nodes = [1, 2, 3].map(|id| start(id, secret(shared)));
    let all: Vec<&Node> = nodes.iter().collect();
    initialise(&all);
    let old = leader_of(&all);
    assert_eq!(bind(old, 1), Ok(status::OK));
    old.replica.shutdown(false).expect("shutdown");
    let rest: Vec<&Node> = nodes.iter().filter(|n| n.id != old.id).collect();
    let mut new = None;
    wait_for("a new leader among the two others", || {
        new = rest
            .iter()
            .find(|n| n.replica.leader_id() == Some(n.id))
            .copied();
        new.is_some()
    });
    let new = new.expect("a new leader");
    // Openraft commits a blank entry of the new term before writes: retry a
    // refused write for a while (bounded by `WAIT`).
    let mut outcome = bind(new, 2);
    wait_for("the new leader takes a write", || {
        if outcome != Ok(status::OK) {
            outcome = bind(new, 2);
        }
        outcome == Ok(status::OK)
    });
    for node in &rest {
        wait_for("both binds on both survivors", || {
            routes(node, 1) && routes(node, 2)
        });
    }
    for node in &rest {
        node.replica.shutdown(false).expect("shutdown");
    }
}
