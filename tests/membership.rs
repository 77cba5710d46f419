//! Proves, with real `x700 serve --raft` processes on loopback and the
//! `x700 cluster` commands, that a cluster of three takes a fourth member
//! (sent to a follower, the command finds the leader), which catches up and
//! answers lookups; that a follower answers membership changes NOT_LEADER
//! naming the leader; that a member's id, or a removed one on its node, is
//! never taken again; that a member with another table shard count is
//! refused at add-node; that a member can be removed; that `cluster verify`
//! finds every member at one index with one checksum; and that a data
//! directory refuses to start under another node id, or alone.

mod common;

use common::cluster::{bind_many, cluster_command, routes_all, start_member, SECRET};
use common::{binary, Node};
use std::net::SocketAddr;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};
use x700::client::Client;
use x700::protocol::codec::{decode_not_leader, LeaderHint};
use x700::protocol::{opcode, status, Role};

/// The leader's client address and id, as `address` sees them, within
/// `wait`.
fn leader_of(address: SocketAddr, wait: Duration) -> Option<(u64, SocketAddr)> {
    let deadline = Instant::now() + wait;
    while Instant::now() < deadline {
        let (code, json) = cluster_command(&["status", "--server", &address.to_string()]);
        if code == 0 {
            let id = json["leader_id"].as_u64();
            let leader = json["leader_addr"].as_str().and_then(|a| a.parse().ok());
            if let (Some(id), Some(leader)) = (id, leader) {
                return Some((id, leader));
            }
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    None
}

fn member_ids(status: &serde_json::Value) -> Vec<u64> {
    let mut ids: Vec<u64> = status["members"]
        .as_array()
        .expect("members")
        .iter()
        .filter_map(|m| m["id"].as_u64())
        .collect();
    ids.sort_unstable();
    ids
}

#[test]
fn a_fourth_member_joins_and_one_leaves_and_verify_agrees() {
    let dirs: Vec<tempfile::TempDir> = (0..5).map(|_| tempfile::tempdir().expect("dir")).collect();
    let mut nodes: Vec<Node> = (0..3)
        .map(|i| {
            start_member(
                dirs[i].path(),
                i as u64 + 1,
                "127.0.0.1:0",
                &["--table-shards", "4"],
            )
        })
        .collect();
    let spec = |i: usize, node: &Node| {
        let raft = node.raft.expect("a raft address");
        format!("{}={raft}={}", i + 1, node.tcp)
    };
    let first = nodes[0].tcp.to_string();
    let mut init = vec!["init", "--server", first.as_str()];
    let specs: Vec<String> = nodes.iter().enumerate().map(|(i, n)| spec(i, n)).collect();
    for member in &specs {
        init.extend(["--member", member.as_str()]);
    }
    let (code, json) = cluster_command(&init);
    assert_eq!(code, 0, "cluster init: {json}");
    let (leader_id, leader) =
        leader_of(nodes[0].tcp, Duration::from_secs(10)).expect("a leader within 10 s");
    let mut acked = bind_many(leader, 400_000, 50);
    let follower = nodes
        .iter()
        .enumerate()
        .find(|(i, _)| *i as u64 + 1 != leader_id)
        .map(|(_, n)| n.tcp)
        .expect("a follower");

    // Guards: a membership change sent to a follower was answered
    // NOT_LEADER with an empty body; it names the leader, as for writes.
    let mut at_follower = Client::connect(follower, Role::Admin, "").expect("follower");
    let changes: [(u8, Vec<u8>); 2] = [
        (opcode::CLUSTER_REMOVE_NODE, 9u64.to_le_bytes().to_vec()),
        (
            opcode::CLUSTER_ADD_NODE,
            b"9=127.0.0.1:9=127.0.0.1:9".to_vec(),
        ),
    ];
    for (op, body) in changes {
        let (code, answer) = at_follower.request(op, &body).expect("answered");
        assert_eq!(status::name(code), "not_leader", "opcode {op:#x}");
        assert_eq!(
            decode_not_leader(&answer),
            Some(LeaderHint {
                leader_id,
                client_addr: leader.to_string(),
            }),
            "opcode {op:#x}: the NOT_LEADER body names the leader"
        );
    }

    // A member's id is never taken again, even with another node's
    // addresses: the error says so before asking that node anything.
    let (code, json) = cluster_command(&[
        "add-node",
        "--server",
        &leader.to_string(),
        "--member",
        "2=127.0.0.1:9=127.0.0.1:9",
    ]);
    assert_eq!(code, 1, "add-node of a voter's id: {json}");
    let error = json["error"].as_str().unwrap_or_default();
    assert!(error.contains("node 2 is already a member"), "{json}");
    assert!(error.contains("new id"), "{json}");

    // A member whose directory has another table shard count is refused.
    let odd = start_member(dirs[4].path(), 5, "127.0.0.1:0", &["--table-shards", "2"]);
    let (code, json) = cluster_command(&[
        "add-node",
        "--server",
        &leader.to_string(),
        "--member",
        &spec(4, &odd),
    ]);
    assert_eq!(code, 1, "a member with 2 table shards joined: {json}");
    let error = json["error"].as_str().unwrap_or_default();
    assert!(error.contains("table shards"), "{json}");
    assert!(odd.stop().success());

    // The fourth member is added through a follower: the command finds
    // the leader; the new member catches up and answers lookups.
    nodes.push(start_member(
        dirs[3].path(),
        4,
        "127.0.0.1:0",
        &["--table-shards", "4"],
    ));
    let (code, json) = cluster_command(&[
        "add-node",
        "--server",
        &follower.to_string(),
        "--member",
        &spec(3, &nodes[3]),
    ]);
    assert_eq!(code, 0, "add-node: {json}");
    assert_eq!(member_ids(&json), vec![1, 2, 3, 4]);
    let joined = json["members"]
        .as_array()
        .and_then(|m| m.iter().find(|m| m["id"] == 4))
        .expect("member 4")
        .clone();
    assert_ne!(joined["role"], "learner", "member 4 was not promoted");
    acked.extend(bind_many(leader, 500_000, 50));
    assert!(
        routes_all(nodes[3].tcp, &acked, Duration::from_secs(15)),
        "the new member misses acknowledged binds"
    );

    let (code, before) = cluster_command(&["verify", "--server", &leader.to_string()]);
    assert_eq!(code, 0, "verify: {before}");
    assert_eq!(before["agree"], true);
    assert_eq!(before["members"].as_array().map(Vec::len), Some(4));

    // Remove a follower that is not the new member.
    let removed = (1..=3u64)
        .find(|&id| id != leader_id)
        .expect("a follower id");
    let (code, json) = cluster_command(&[
        "remove-node",
        "--server",
        &leader.to_string(),
        "--node-id",
        &removed.to_string(),
    ]);
    assert_eq!(code, 0, "remove-node: {json}");
    assert!(!member_ids(&json).contains(&removed), "{json}");
    assert_eq!(member_ids(&json).len(), 3);

    // Guards the pitfall "never reuse a node id": the removed node, still
    // running on its directory, was taken back under its retired id.
    let i = usize::try_from(removed - 1).expect("small");
    let (code, json) = cluster_command(&[
        "add-node",
        "--server",
        &leader.to_string(),
        "--member",
        &spec(i, &nodes[i]),
    ]);
    assert_eq!(code, 1, "the removed node came back under its id: {json}");
    let error = json["error"].as_str().unwrap_or_default();
    assert!(error.contains("already belongs to a cluster"), "{json}");

    acked.extend(bind_many(leader, 600_000, 20));
    let (code, after) = cluster_command(&["verify", "--server", &leader.to_string()]);
    assert_eq!(code, 0, "verify after remove-node: {after}");
    assert_eq!(after["agree"], true);
    assert_eq!(after["members"].as_array().map(Vec::len), Some(3));
    // The checksum follows the tables: twenty more binds change it.
    assert_ne!(
        before["members"][0]["checksum"],
        after["members"][0]["checksum"]
    );
    for node in nodes {
        assert!(node.stop().success());
    }
}

/// Starts `x700 serve` expecting it to refuse; returns its exit code and
/// standard error (killing it if it ran 10 s instead).
fn refused_start(dir: &Path, args: &[&str]) -> (i32, String) {
    let mut child = Command::new(binary())
        .arg("serve")
        .arg("--data")
        .arg(dir)
        .args(["--listen", "127.0.0.1:0", "--no-pin", "--shards", "1"])
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn x700 serve");
    let deadline = Instant::now() + Duration::from_secs(10);
    while child.try_wait().expect("wait").is_none() {
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("x700 serve {args:?} started on a directory it must refuse");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let output = child.wait_with_output().expect("output");
    (
        output.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

/// Guards issue 10 item 6: the node id was not stored in the data
/// directory, so a member's directory could start under another id.
#[test]
fn a_member_directory_refuses_another_node_id_and_a_start_alone() {
    let dir = tempfile::tempdir().expect("dir");
    let node = start_member(dir.path(), 1, "127.0.0.1:0", &["--table-shards", "2"]);
    let raft = node.raft.expect("a raft address").to_string();
    assert!(node.stop().success());
    let secret = ["--cluster-secret", SECRET, "--raft", &raft];
    let (code, errors) = refused_start(dir.path(), &[&secret[..], &["--node-id", "2"]].concat());
    assert_eq!(code, 2, "{errors}");
    assert!(errors.contains("belongs to node 1"), "{errors}");
    let (code, errors) = refused_start(dir.path(), &[]);
    assert_eq!(code, 2, "{errors}");
    assert!(errors.contains("--raft"), "{errors}");
    // Its own id still starts.
    let node = start_member(dir.path(), 1, &raft, &["--table-shards", "2"]);
    assert!(node.stop().success());
}
