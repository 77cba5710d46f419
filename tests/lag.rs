//! Proves, with three real `x700 serve --raft` processes on loopback, that
//! every member reports how far it lags the leader in STATS
//! (`cluster.lag_entries`, `cluster.lag_ms`) and /metrics
//! (`x700_follower_lag_entries`, `x700_follower_lag_seconds`): nothing at the
//! leader, no entries at a caught-up follower, which `/readyz` calls ready
//! (and not before any leader has reached it);
//! and that the milliseconds count the time since the leader last reached
//! the member, so that a member left alone (its two peers killed) shows a
//! lag that grows past the time it has been alone. The readiness rule and
//! the lag rule themselves are unit-tested beside their code.

mod common;

use common::cluster::{init_cluster, routes_all, start_members};
use common::{axb, http_get, x};
use std::net::SocketAddr;
use std::time::{Duration, Instant};
use x700::client::Client;
use x700::protocol::{status, Role};

fn stats_json(address: SocketAddr) -> serde_json::Value {
    let mut client = Client::connect(address, Role::Admin, "").expect("connect");
    let (code, body) = client.stats().expect("STATS answered");
    assert_eq!(code, status::OK);
    serde_json::from_str(&body).expect("STATS is JSON")
}

/// The value of an unlabelled gauge on the node's /metrics page.
fn gauge(admin: SocketAddr, name: &str) -> f64 {
    let (code, page) = http_get(admin, "/metrics");
    assert_eq!(code, 200);
    page.lines()
        .find_map(|line| line.strip_prefix(name)?.strip_prefix(' ')?.parse().ok())
        .unwrap_or_else(|| panic!("no {name} on /metrics"))
}

#[test]
fn members_report_their_lag_and_a_member_left_alone_lags_more_each_second() {
    // The directories live as long as the test.
    let (_dirs, mut nodes, rafts) = start_members(3);
    // Before any leader has reached them, members cannot tell how far
    // behind they are: not ready.
    for node in nodes.values() {
        let (code, body) = http_get(node.admin, "/readyz");
        assert_eq!(code, 503, "{body}");
        assert!(body.contains("no leader has reached"), "{body}");
    }
    let (leader_id, leader) = init_cluster(&nodes, &rafts);

    let mut client = Client::connect(leader, Role::Admin, "").expect("connect to the leader");
    let mut acked = Vec::new();
    for n in 400_000..400_050 {
        let reply = client
            .bind(&axb(x(n), "13800000001", "13900000002", "lag"))
            .expect("bind answered");
        assert_eq!(status::name(reply.status), "ok");
        acked.push((x(n), reply.binding_id.expect("id")));
    }

    // The leader lags by nothing.
    let at_leader = stats_json(leader);
    assert_eq!(at_leader["cluster"]["lag_entries"], 0, "{at_leader}");
    assert_eq!(at_leader["cluster"]["lag_ms"], 0, "{at_leader}");
    let leader_admin = nodes[&leader_id].admin;
    assert_eq!(gauge(leader_admin, "x700_follower_lag_entries"), 0.0);
    assert_eq!(gauge(leader_admin, "x700_follower_lag_seconds"), 0.0);

    // A follower that holds every acknowledged bind has applied what the
    // leader committed (heartbeats bring the last commit index within
    // 50 ms; wait a bounded while for it) and is ready.
    for (id, node) in nodes.iter().filter(|(id, _)| **id != leader_id) {
        assert!(routes_all(node.tcp, &acked, Duration::from_secs(10)));
        let deadline = Instant::now() + Duration::from_secs(5);
        let stats = loop {
            let stats = stats_json(node.tcp);
            if stats["cluster"]["lag_entries"] == 0 || Instant::now() > deadline {
                break stats;
            }
            std::thread::sleep(Duration::from_millis(50));
        };
        assert_eq!(stats["cluster"]["lag_entries"], 0, "member {id}: {stats}");
        assert!(
            stats["cluster"]["lag_ms"].is_u64(),
            "member {id} has heard from the leader: {stats}"
        );
        assert!(gauge(node.admin, "x700_follower_lag_seconds").is_finite());
        assert_eq!(gauge(node.admin, "x700_follower_lag_entries"), 0.0);
        assert_eq!(http_get(node.admin, "/readyz"), (200, "ready\n".into()));
    }

    // Kill the two others: the one left hears from no leader, and its lag
    // in milliseconds counts the time since the last append, not since the
    // last entry it applied nor since start.
    let alone_id = *nodes
        .keys()
        .find(|id| **id != leader_id)
        .expect("a follower");
    // The other follower first: were the leader killed first, the two
    // followers could elect one of them before the second kill.
    let mut others: Vec<u64> = nodes.keys().copied().filter(|id| *id != alone_id).collect();
    others.sort_by_key(|id| *id == leader_id);
    for id in others {
        let _ = nodes.remove(&id).expect("member").kill();
    }
    let alone = nodes.remove(&alone_id).expect("the member left");
    std::thread::sleep(Duration::from_millis(1500));
    let stats = stats_json(alone.tcp);
    let lag_ms = stats["cluster"]["lag_ms"].as_u64().expect("lag_ms");
    assert!(lag_ms >= 1500, "alone 1.5 s, lag_ms {lag_ms}");
    assert!(gauge(alone.admin, "x700_follower_lag_seconds") >= 1.5);
    // It still serves lookups and lags by no entry it knows of.
    assert_eq!(stats["cluster"]["lag_entries"], 0, "{stats}");
    assert!(routes_all(alone.tcp, &acked, Duration::from_secs(1)));
    // No quorum is left to take a last checkpoint through: kill it too.
    let _ = alone.kill();
}
