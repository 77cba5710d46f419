//! Helpers for tests that run a cluster of real `x700 serve --raft`
//! processes: start a member, read CLUSTER_STATUS, wait for a leader, bind
//! at the leader and check that every acknowledged bind routes on a member.

use super::{ask, axb, x, Node};
use std::net::SocketAddr;
use std::path::Path;
use std::time::{Duration, Instant};
use x700::binding::{BindingId, LookupResult};
use x700::client::Client;
use x700::number::Number;
use x700::protocol::{opcode, status, Role};

/// The cluster secret every test member holds.
pub const SECRET: &str = "cluster-secret-for-tests-0123";

/// Starts member `id` on `dir` with raft address `raft` (one event loop),
/// plus `extra` serve flags.
pub fn start_member(dir: &Path, id: u64, raft: &str, extra: &[&str]) -> Node {
    let id = id.to_string();
    let mut args = vec![
        "--raft",
        raft,
        "--node-id",
        &id,
        "--cluster-secret",
        SECRET,
        "--event-loops",
        "1",
    ];
    args.extend_from_slice(extra);
    Node::start_on(dir, &args)
}

/// A loopback address no one listens on now (a member's raft address, fixed
/// so that a restarted member comes back at its own), below the kernel's
/// ephemeral range so no outgoing connection takes it while the member is
/// down.
pub fn free_port() -> String {
    format!("127.0.0.1:{}", super::unassigned_port())
}

/// CLUSTER_STATUS of the node at `address`, if it answers.
pub fn status_json(address: SocketAddr) -> Option<serde_json::Value> {
    let mut client = Client::connect(address, Role::Admin, "").ok()?;
    let (code, body) = client.request(opcode::CLUSTER_STATUS, &[]).ok()?;
    (code == status::OK).then(|| serde_json::from_slice(&body).ok())?
}

/// The leader's id and client address, once `address` knows one (within
/// `wait`).
pub fn leader_seen_by(address: SocketAddr, wait: Duration) -> Option<(u64, SocketAddr)> {
    let deadline = Instant::now() + wait;
    while Instant::now() < deadline {
        if let Some(status) = status_json(address) {
            let id = status["leader_id"].as_u64();
            let leader = status["leader_addr"].as_str().and_then(|a| a.parse().ok());
            if let (Some(id), Some(leader)) = (id, leader) {
                return Some((id, leader));
            }
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    None
}

/// Binds `count` fresh pairs at `leader`, from X number `first`; returns
/// the acknowledged ones (X, id).
pub fn bind_many(leader: SocketAddr, first: u64, count: u64) -> Vec<(Number, BindingId)> {
    let mut client = Client::connect(leader, Role::Admin, "").expect("connect to the leader");
    (first..first + count)
        .map(|n| {
            let reply = client
                .bind(&axb(x(n), "13800000001", "13900000002", "cluster"))
                .expect("bind answered");
            assert_eq!(status::name(reply.status), "ok", "bind {n} at the leader");
            (x(n), reply.binding_id.expect("id"))
        })
        .collect()
}

/// True once every acknowledged bind routes on the node at `address`
/// (waiting up to `wait` for it to catch up).
pub fn routes_all(address: SocketAddr, acked: &[(Number, BindingId)], wait: Duration) -> bool {
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

/// Starts `count` members (ids 1..=count), each on a new temporary
/// directory, each picking its own raft port. Returns the directories (a
/// restarted member reuses its own), the nodes by id, and their raft
/// addresses (index `id - 1`, from `free_port`).
pub fn start_members(
    count: u64,
) -> (
    Vec<tempfile::TempDir>,
    std::collections::BTreeMap<u64, Node>,
    Vec<String>,
) {
    let dirs: Vec<tempfile::TempDir> = (0..count)
        .map(|_| tempfile::tempdir().expect("dir"))
        .collect();
    let nodes: std::collections::BTreeMap<u64, Node> = (1..=count)
        .map(|id| {
            let i = usize::try_from(id - 1).expect("small");
            (id, start_member(dirs[i].path(), id, &free_port(), &[]))
        })
        .collect();
    let rafts = nodes
        .values()
        .map(|node| node.raft.expect("a raft address").to_string())
        .collect();
    (dirs, nodes, rafts)
}

/// Sends CLUSTER_INIT naming every node (raft address `rafts[id - 1]`) to
/// member 1 and waits (10 s at most) for a leader: its id and client
/// address.
pub fn init_cluster(
    nodes: &std::collections::BTreeMap<u64, Node>,
    rafts: &[String],
) -> (u64, SocketAddr) {
    let members: Vec<String> = nodes
        .iter()
        .map(|(id, node)| {
            let i = usize::try_from(id - 1).expect("small");
            format!("{id}={}={}", rafts[i], node.tcp)
        })
        .collect();
    let first = nodes[&1].tcp;
    let mut admin = Client::connect(first, Role::Admin, "").expect("admin");
    let (code, reason) = admin
        .request(opcode::CLUSTER_INIT, members.join(" ").as_bytes())
        .expect("CLUSTER_INIT answered");
    assert_eq!(code, status::OK, "{}", String::from_utf8_lossy(&reason));
    leader_seen_by(first, Duration::from_secs(10)).expect("a leader within 10 s")
}

/// Runs `x700 cluster ARGS --json`; returns its exit code and the JSON
/// line it printed (panics, naming its output, if that is not JSON).
pub fn cluster_command(args: &[&str]) -> (i32, serde_json::Value) {
    let output = std::process::Command::new(super::binary())
        .arg("cluster")
        .args(args)
        .arg("--json")
        .stdin(std::process::Stdio::null())
        .output()
        .expect("run x700 cluster");
    let text = String::from_utf8_lossy(&output.stdout);
    let json = serde_json::from_str(text.trim()).unwrap_or_else(|_| {
        panic!(
            "x700 cluster {args:?} printed {text:?}; stderr {}",
            String::from_utf8_lossy(&output.stderr)
        )
    });
    (output.status.code().unwrap_or(-1), json)
}

/// The leader id every node of `addresses` names, once they all name the
/// same one (within `wait`).
pub fn agreed_leader(addresses: &[SocketAddr], wait: Duration) -> Option<u64> {
    let deadline = Instant::now() + wait;
    while Instant::now() < deadline {
        let seen: Vec<Option<u64>> = addresses
            .iter()
            .map(|&address| status_json(address).and_then(|s| s["leader_id"].as_u64()))
            .collect();
        if let Some(Some(first)) = seen.first() {
            if seen.iter().all(|id| *id == Some(*first)) {
                return Some(*first);
            }
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    None
}
