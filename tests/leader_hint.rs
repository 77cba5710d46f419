//! Proves, with three real `x700 serve --raft` processes on loopback, that a
//! follower's `NOT_LEADER` answer names the leader (id and client address,
//! read byte by byte), that HELLO's `leader_hint` carries the leader's id,
//! that `ClusterClient` and `x700 bind --server FOLLOWER` follow the hint to
//! the leader by themselves, and that after `kill -9` of the leader the
//! client's lookups fail over to a live node and its writes find the new
//! leader.

mod common;

use common::cluster::{free_port, init_cluster, leader_seen_by, start_members};
use common::{ask, axb, x, Node, Raw};
use std::net::SocketAddr;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};
use x700::binding::{BindingId, LookupResult};
use x700::client::{Client, ClusterClient};
use x700::protocol::codec::encode_bind;
use x700::protocol::{opcode, status, Role};

/// Longest run of one `x700` command.
const COMMAND_TIMEOUT: Duration = Duration::from_secs(30);

/// `x700 ARGS`, bounded by `COMMAND_TIMEOUT`: exit code and stdout.
fn x700(args: &[&str]) -> (i32, String) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_x700"))
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn x700");
    let deadline = Instant::now() + COMMAND_TIMEOUT;
    loop {
        if child.try_wait().expect("wait for x700").is_some() {
            break;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("x700 {args:?} did not finish within {COMMAND_TIMEOUT:?}");
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    let output = child.wait_with_output().expect("x700's output");
    (
        output.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&output.stdout).into_owned(),
    )
}

/// True once X `n`'s binding `id` routes at `address` (within `wait`).
fn routes(address: SocketAddr, n: u64, id: BindingId, wait: Duration) -> bool {
    let deadline = Instant::now() + wait;
    loop {
        let found = Client::connect(address, Role::Switch, "").is_ok_and(|mut client| {
            matches!(client.lookup(&ask("13800000001", x(n))),
                Ok(LookupResult::Route(route)) if route.binding_id == id)
        });
        if found || Instant::now() > deadline {
            return found;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn followers_name_the_leader_and_clients_follow_it() {
    // The directories live as long as the test.
    let (_dirs, mut nodes, rafts) = start_members(3);
    let (leader_id, leader) = init_cluster(&nodes, &rafts);
    let follower = nodes
        .iter()
        .find(|(id, _)| **id != leader_id)
        .map(|(_, node)| node.tcp)
        .expect("a follower");
    assert_eq!(
        leader_seen_by(follower, Duration::from_secs(10)).map(|(id, _)| id),
        Some(leader_id),
        "the follower knows the leader"
    );

    // HELLO's leader_hint names the leader, at the leader and at a follower.
    for address in [leader, follower] {
        let client = Client::connect(address, Role::Admin, "").expect("HELLO");
        assert_eq!(
            u64::from(client.node.leader_hint),
            leader_id,
            "at {address}"
        );
    }

    // The raw NOT_LEADER answer at a follower: u64 id, u8 length, address.
    let mut raw = Raw::session(follower, Role::Admin, "");
    let mut request = Vec::new();
    encode_bind(
        &mut request,
        7,
        &axb(x(1), "13800000001", "13900000002", "raw"),
    );
    raw.send(&request);
    let (header, body) = raw.expect_frame();
    assert_eq!((header.opcode, header.request_id), (opcode::BIND_AXB, 7));
    assert_eq!(status::name(header.status), "not_leader");
    let address = leader.to_string();
    let mut expected = leader_id.to_le_bytes().to_vec();
    expected.push(u8::try_from(address.len()).expect("short address"));
    expected.extend_from_slice(address.as_bytes());
    assert_eq!(body, expected, "NOT_LEADER body: leader id and address");

    // The library, given only the follower, follows the hint and binds.
    let mut library = ClusterClient::connect(&[&follower.to_string()], Role::Admin, "")
        .expect("connect to the follower");
    let reply = library
        .bind(&axb(x(2), "13800000001", "13900000002", "library"))
        .expect("bind answered");
    assert_eq!(status::name(reply.status), "ok");
    assert_eq!(
        library.leader_addr(),
        address,
        "writes now go to the leader"
    );
    let bound = reply.binding_id.expect("binding id");
    assert!(routes(leader, 2, bound, Duration::from_secs(5)));

    // `x700 bind --server FOLLOWER` follows it too.
    let follower_text = follower.to_string();
    let x3 = x(3).digits();
    let (code, stdout) = x700(&[
        "bind",
        "axb",
        "--server",
        &follower_text,
        "--x",
        &x3,
        "--a",
        "13800000001",
        "--b",
        "13900000002",
        "--tenant",
        "1",
        "--order",
        "cli",
        "--ttl-s",
        "600",
        "--json",
    ]);
    assert_eq!(code, 0, "x700 bind --server FOLLOWER: {stdout}");
    let printed: serde_json::Value = serde_json::from_str(&stdout).expect("JSON");
    let cli_bound = BindingId(printed["binding_id"].as_u64().expect("binding_id"));
    assert!(routes(leader, 3, cli_bound, Duration::from_secs(5)));

    // A client that knows every node, reading at the leader: kill -9 the
    // leader; its lookups move to a live node, its writes to the new leader.
    let everyone: Vec<String> = std::iter::once(address.clone())
        .chain(
            nodes
                .values()
                .map(|n| n.tcp.to_string())
                .filter(|a| *a != address),
        )
        .collect();
    let everyone: Vec<&str> = everyone.iter().map(String::as_str).collect();
    let mut library = ClusterClient::connect(&everyone, Role::Admin, "").expect("connect");
    assert_eq!(library.reader_addr(), address);
    for node in nodes.values() {
        assert!(routes(node.tcp, 2, bound, Duration::from_secs(10)));
    }
    let killed = nodes.remove(&leader_id).expect("the leader's node");
    let _ = killed.kill();
    let found = library
        .lookup(&ask("13800000001", x(2)))
        .expect("lookup answered");
    assert!(
        matches!(found, LookupResult::Route(route) if route.binding_id == bound),
        "the lookup failed over: {found:?}"
    );
    assert_ne!(
        library.reader_addr(),
        address,
        "reads moved off the dead node"
    );

    let survivor = nodes.values().next().expect("a survivor").tcp;
    let deadline = Instant::now() + Duration::from_secs(15);
    let new_leader = loop {
        if let Some((id, at)) = leader_seen_by(survivor, Duration::from_millis(200)) {
            if id != leader_id {
                break at;
            }
        }
        assert!(Instant::now() < deadline, "no new leader within 15 s");
    };
    let reply = library
        .bind(&axb(x(4), "13800000001", "13900000002", "after"))
        .expect("bind answered after the failover");
    assert_eq!(status::name(reply.status), "ok");
    assert_eq!(library.leader_addr(), new_leader.to_string());
    let after = reply.binding_id.expect("binding id");
    for node in nodes.values() {
        assert!(routes(node.tcp, 4, after, Duration::from_secs(10)));
    }
    for node in nodes.into_values() {
        assert!(node.stop().success());
    }
}

/// A `ClusterClient` whose first address is dead opens its session on the
/// next one, and reads and writes there (a one-member node leads itself and
/// never answers `NOT_LEADER`).
#[test]
fn a_cluster_client_skips_a_dead_address() {
    let node = Node::start(&["--shards", "1"]);
    let dead = free_port();
    let live = node.tcp.to_string();
    let mut library =
        ClusterClient::connect(&[&dead, &live], Role::Admin, "").expect("one node is alive");
    assert_eq!(library.reader_addr(), live);
    let reply = library
        .bind(&axb(x(9), "13800000001", "13900000002", "alone"))
        .expect("bind answered");
    assert_eq!(status::name(reply.status), "ok");
    assert_eq!(library.leader_addr(), live);
    let found = library.lookup(&ask("13800000001", x(9))).expect("lookup");
    assert!(
        matches!(found, LookupResult::Route(route) if Some(route.binding_id) == reply.binding_id)
    );
    assert!(ClusterClient::connect(&[&dead], Role::Admin, "").is_err());
    assert!(node.stop().success());
}
