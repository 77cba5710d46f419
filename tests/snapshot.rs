//! Proves, with three real `x700 serve --raft` processes on loopback taking
//! a checkpoint every second, that a member stopped across several
//! checkpoints catches up when it comes back: from the log while its gap is
//! within the log margin (`[log] margin_entries`) the others keep past
//! their checkpoints.

mod common;

use common::{ask, axb, x, Node};
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};
use x700::binding::{BindingId, LookupResult};
use x700::client::Client;
use x700::number::Number;
use x700::protocol::{opcode, status, Role};

const SECRET: &str = "cluster-secret-for-tests-0123";

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
        let id = id.to_string();
        let args = [
            "--config",
            &config,
            "--raft",
            &self.raft,
            "--node-id",
            &id,
            "--cluster-secret",
            SECRET,
            "--shards",
            "1",
        ];
        Node::start_on(self.data.path(), &args)
    }
}

fn free_port() -> String {
    let socket = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    socket.local_addr().expect("address").to_string()
}

fn status_json(address: SocketAddr) -> Option<serde_json::Value> {
    let mut client = Client::connect(address, Role::Admin, "").ok()?;
    let (code, body) = client.request(opcode::CLUSTER_STATUS, &[]).ok()?;
    (code == status::OK).then(|| serde_json::from_slice(&body).ok())?
}

/// The leader's id and client address as `address` sees it, within 10 s.
fn leader_seen_by(address: SocketAddr) -> (u64, SocketAddr) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while Instant::now() < deadline {
        if let Some(status) = status_json(address) {
            let id = status["leader_id"].as_u64();
            let leader = status["leader_addr"].as_str().and_then(|a| a.parse().ok());
            if let (Some(id), Some(leader)) = (id, leader) {
                return (id, leader);
            }
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    panic!("no leader seen by {address} within 10 s");
}

/// The node's count of checkpoints taken, from STATS.
fn checkpoints(address: SocketAddr) -> u64 {
    let mut client = Client::connect(address, Role::Admin, "").expect("connect");
    let (code, text) = client.stats().expect("STATS answered");
    assert_eq!(status::name(code), "ok", "{text}");
    let stats: serde_json::Value = serde_json::from_str(&text).expect("STATS is JSON");
    stats["log"]["checkpoints"]
        .as_u64()
        .expect("log.checkpoints")
}

/// Binds `count` fresh pairs at `leader` from X number `first`; returns the
/// acknowledged ones.
fn bind_many(leader: SocketAddr, first: u64, count: u64) -> Vec<(Number, BindingId)> {
    let mut client = Client::connect(leader, Role::Admin, "").expect("connect to the leader");
    (first..first + count)
        .map(|n| {
            let xn = x(n);
            let reply = client
                .bind(&axb(xn, "13800000001", "13900000002", "snapshot"))
                .expect("bind answered");
            assert_eq!(status::name(reply.status), "ok", "bind {n} at the leader");
            (xn, reply.binding_id.expect("id"))
        })
        .collect()
}

/// True once every acknowledged bind routes at `address`, within `wait`.
fn routes_all(address: SocketAddr, acked: &[(Number, BindingId)], wait: Duration) -> bool {
    let deadline = Instant::now() + wait;
    loop {
        let all = Client::connect(address, Role::Switch, "").is_ok_and(|mut client| {
            acked.iter().all(|&(xn, id)| {
                matches!(client.lookup(&ask("13800000001", xn)),
                    Ok(LookupResult::Route(route)) if route.binding_id == id)
            })
        });
        if all || Instant::now() > deadline {
            return all;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Starts three members with `margin_entries`, initialises the cluster and
/// returns them with their nodes.
fn start_cluster(margin_entries: u64) -> (Vec<Member>, BTreeMap<u64, Node>) {
    let members: Vec<Member> = (0..3)
        .map(|_| {
            let data = tempfile::tempdir().expect("dir");
            let config = write_config(data.path(), margin_entries);
            Member {
                data,
                config,
                raft: free_port(),
            }
        })
        .collect();
    let nodes: BTreeMap<u64, Node> = (1..=3u64)
        .map(|id| (id, members[index(id)].start(id)))
        .collect();
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
/// least three checkpoints more, restarts the follower, and checks that
/// every member routes every acknowledged bind.
fn stopped_member_catches_up(margin_entries: u64) {
    let (members, mut nodes) = start_cluster(margin_entries);
    let (leader_id, leader) = leader_seen_by(nodes[&1].tcp);
    let mut acked = bind_many(leader, 400_000, 50);
    let stopped_id = *nodes
        .keys()
        .find(|id| **id != leader_id)
        .expect("a follower");
    let stopped = nodes.remove(&stopped_id).expect("the follower");
    assert!(stopped.stop().success(), "the follower stops cleanly");

    let checkpoints_before = checkpoints(leader);
    let mut first = 410_000;
    let deadline = Instant::now() + Duration::from_secs(30);
    while checkpoints(leader) < checkpoints_before + 3 {
        assert!(
            Instant::now() < deadline,
            "the leader took fewer than 3 checkpoints in 30 s"
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
    for node in nodes.into_values() {
        assert!(node.stop().success());
    }
}

#[test]
fn a_member_stopped_across_checkpoints_catches_up_from_the_log_margin() {
    stopped_member_catches_up(100_000);
}
