//! Proves, with three real `x700 serve --raft` processes on loopback, that a
//! cluster initialised by `CLUSTER_INIT` replicates every acknowledged bind
//! to every member, answers writes at the leader only (`not_leader`
//! elsewhere), survives `kill -9` of its leader (the others elect a new one
//! and go on taking writes and answering lookups), and that the killed node,
//! restarted on its data directory, catches up with everything it missed.

mod common;

use common::cluster::{
    bind_many, init_cluster, leader_seen_by, routes_all, start_member, start_members,
};
use common::{axb, x};
use std::time::{Duration, Instant};
use x700::client::Client;
use x700::protocol::{status, Role};

#[test]
fn a_three_node_cluster_replicates_fails_over_and_catches_up() {
    let (dirs, mut nodes, rafts) = start_members(3);
    let (leader_id, leader) = init_cluster(&nodes, &rafts);

    // Writes at the leader reach every member; a follower refuses writes.
    let mut acked = bind_many(leader, 200_000, 100);
    let follower = nodes
        .iter()
        .find(|(id, _)| **id != leader_id)
        .map(|(_, node)| node.tcp)
        .expect("a follower");
    let mut at_follower = Client::connect(follower, Role::Admin, "").expect("follower");
    let refused = at_follower
        .bind(&axb(x(299_999), "13800000001", "13900000002", "f"))
        .expect("answered");
    assert_eq!(status::name(refused.status), "not_leader");
    for node in nodes.values() {
        assert!(
            routes_all(node.tcp, &acked, Duration::from_secs(10)),
            "a member misses acknowledged binds"
        );
    }

    // kill -9 the leader: the two others elect a new one and go on.
    let killed = nodes.remove(&leader_id).expect("the leader's node");
    let _ = killed.kill();
    let survivor = nodes.values().next().expect("a survivor").tcp;
    let failover_started = Instant::now();
    let (new_leader_id, new_leader) = loop {
        if let Some((id, address)) = leader_seen_by(survivor, Duration::from_millis(200)) {
            if id != leader_id {
                break (id, address);
            }
        }
        assert!(
            failover_started.elapsed() < Duration::from_secs(15),
            "no new leader 15 s after the leader was killed"
        );
    };
    eprintln!(
        "new leader {new_leader_id} seen {:?} after the kill",
        failover_started.elapsed()
    );
    // Lookups on the survivors never stopped being answered.
    for node in nodes.values() {
        assert!(routes_all(node.tcp, &acked, Duration::from_secs(1)));
    }
    acked.extend(bind_many(new_leader, 300_000, 100));

    // The old leader comes back on its directory and raft address and
    // catches up with what it missed.
    let i = usize::try_from(leader_id - 1).expect("small");
    let back = start_member(dirs[i].path(), leader_id, &rafts[i], &[]);
    nodes.insert(leader_id, back);
    for (id, node) in &nodes {
        assert!(
            routes_all(node.tcp, &acked, Duration::from_secs(15)),
            "member {id} misses acknowledged binds after the failover"
        );
    }
    for node in nodes.into_values() {
        assert!(node.stop().success());
    }
}
