//! Proves that `x700 cluster verify` catches divergence between members: a
//! follower of a three-node cluster of real `x700 serve --raft` processes is
//! stopped, one of its bindings is changed in its tables from this test
//! through the library's store (the way a buggy apply would change it, page
//! checksums kept valid so the member still opens), and once it is back and
//! caught up, verify answers `agree: false`, exits 1, and names that member.

mod common;

use common::cluster::{
    bind_many, cluster_command, init_cluster, routes_all, start_member, start_members,
};
use common::real;
use std::sync::Arc;
use std::time::Duration;
use x700::binding::Update;
use x700::store::clock::SystemClock;
use x700::store::Store;

#[test]
fn verify_names_a_member_whose_tables_differ() {
    let (dirs, mut nodes, rafts) = start_members(3);
    let (leader_id, leader) = init_cluster(&nodes, &rafts);
    let acked = bind_many(leader, 700_000, 50);
    for node in nodes.values() {
        assert!(routes_all(node.tcp, &acked, Duration::from_secs(15)));
    }
    let leader_text = leader.to_string();
    let (code, agreed) = cluster_command(&["verify", "--server", &leader_text]);
    assert_eq!(code, 0, "verify before the change: {agreed}");
    assert_eq!(agreed["agree"], true, "{agreed}");

    // Stop a follower and change one binding's B in its tables, outside
    // the log: only this member holds the change.
    let follower = (1..=3u64).find(|&id| id != leader_id).expect("a follower");
    let stopped = nodes.remove(&follower).expect("the follower's node");
    // The membership names its client address: it comes back on it.
    let listen = stopped.tcp.to_string();
    assert!(stopped.stop().success());
    let i = usize::try_from(follower - 1).expect("small");
    let mut store = Store::open(dirs[i].path(), Arc::new(SystemClock)).expect("open its store");
    let changed = Update {
        b: Some(real("13900000009")),
        ..Update::default()
    };
    store
        .update(acked[0].1, &changed)
        .expect("change one binding");
    store.checkpoint().expect("checkpoint the change");
    store.close().expect("close the store");

    // Back on its directory and addresses; it catches up with the others
    // (every binding still routes, by id), yet its tables differ.
    let back = start_member(dirs[i].path(), follower, &rafts[i], &["--listen", &listen]);
    assert!(routes_all(back.tcp, &acked, Duration::from_secs(15)));
    nodes.insert(follower, back);
    let (code, diverged) = cluster_command(&["verify", "--server", &leader_text]);
    assert_eq!(code, 1, "verify after the change: {diverged}");
    assert_eq!(diverged["agree"], false, "{diverged}");
    assert_eq!(
        diverged["diverged"],
        serde_json::json!([follower]),
        "verify names the member that differs: {diverged}"
    );
    for node in nodes.into_values() {
        assert!(node.stop().success());
    }
}
