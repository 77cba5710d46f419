//! Proves, with four real `x700 serve --raft` processes on loopback taking
//! a checkpoint every second and keeping few log entries past it, that a
//! node added (`x700 cluster add-node`) to a running cluster whose leader
//! has purged the beginning of its log catches up by the leader's snapshot:
//! it installs one (STATS `log.snapshots_installed`, and its log says so),
//! routes every bind acknowledged before it joined, takes the binds made
//! after, and `x700 cluster verify` finds all four members at one index
//! with one checksum, its traceability history (carried in the image)
//! answers for a binding made before it joined, and its registry (tenants,
//! credentials, pools, carried in the image too) is the leader's. The short version of issue 10's "a node added to a
//! running 10M-binding cluster catches up by snapshot"; the 10M figure is
//! `perf/snapshot-install.sh`'s.

mod common;

use common::cluster::{cluster_command, leader_seen_by, routes_all, start_member};
use common::{axb, x, Node};
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};
use x700::binding::BindingId;
use x700::client::Client;
use x700::number::Number;
use x700::protocol::{opcode, status, Role};

/// Log entries each member keeps past its checkpoint: far fewer than the
/// binds below, so the leader purges the beginning of its log and a new
/// node cannot catch up from it.
const MARGIN_ENTRIES: u64 = 30;

/// Binds acknowledged before the new node joins (each one log entry).
const BINDS_BEFORE: u64 = 2_000;

/// Binds in one round; the rounds go on until `CHECKPOINTS_BEFORE`
/// checkpoints were taken since the first.
const ROUND_BINDS: u64 = 250;

/// Checkpoints taken while the binds go in (one a second).
const CHECKPOINTS_BEFORE: u64 = 3;

/// A config file for a member: a checkpoint every second and
/// `MARGIN_ENTRIES` kept before it.
fn write_config(dir: &Path) -> PathBuf {
    let path = dir.join("x700.toml");
    let text = format!("[log]\ncheckpoint_interval_s = 1\nmargin_entries = {MARGIN_ENTRIES}\n");
    std::fs::write(&path, text).expect("write the config file");
    path
}

/// Starts member `id` on `dir` with its config file; it picks its own raft
/// port.
fn start(dir: &Path, id: u64) -> Node {
    let config = write_config(dir).to_string_lossy().to_string();
    start_member(dir, id, "127.0.0.1:0", &["--config", &config])
}

/// The `log` object of the node's STATS.
fn log_stats(address: SocketAddr) -> serde_json::Value {
    let mut client = Client::connect(address, Role::Admin, "").expect("connect");
    let (code, text) = client.stats().expect("STATS answered");
    assert_eq!(status::name(code), "ok", "{text}");
    let stats: serde_json::Value = serde_json::from_str(&text).expect("STATS is JSON");
    stats["log"].clone()
}

/// Counter `name` of a STATS `log` object.
fn counter(log: &serde_json::Value, name: &str) -> u64 {
    log[name]
        .as_u64()
        .unwrap_or_else(|| panic!("no log.{name} in {log}"))
}

/// Binds `count` fresh pairs from X number `first` at the leader `seen_by`
/// names, each until it is acknowledged: an election (several members on
/// two loaded cores may hold one at any time) answers a bind NOT_LEADER or
/// OUTCOME_UNKNOWN, and the bind is sent again to the new leader (binding
/// the same pair again is safe: the same id comes back). Returns the
/// acknowledged binds (X, id).
fn bind_acked(seen_by: &[SocketAddr], first: u64, count: u64) -> Vec<(Number, BindingId)> {
    let deadline = Instant::now() + Duration::from_secs(120);
    let mut client: Option<Client> = None;
    let mut acked = Vec::new();
    for n in first..first + count {
        loop {
            assert!(
                Instant::now() < deadline,
                "bind {n} unacknowledged in 120 s"
            );
            let session = match client.as_mut() {
                Some(session) => session,
                None => {
                    let leader = seen_by
                        .iter()
                        .find_map(|&node| leader_seen_by(node, Duration::from_secs(2)));
                    let Some((_, leader)) = leader else { continue };
                    let Ok(session) = Client::connect(leader, Role::Admin, "") else {
                        continue;
                    };
                    client.insert(session)
                }
            };
            let reply = session.bind(&axb(x(n), "13800000001", "13900000002", "cluster"));
            match reply.map(|r| (status::name(r.status), r.binding_id)) {
                Ok(("ok", Some(id))) => {
                    acked.push((x(n), id));
                    break;
                }
                Ok(("not_leader" | "outcome_unknown" | "unavailable" | "busy", _)) | Err(_) => {
                    client = None;
                    std::thread::sleep(Duration::from_millis(100));
                }
                Ok(other) => panic!("bind {n}: {other:?}"),
            }
        }
    }
    acked
}

/// `id=RAFT=CLIENT` for `x700 cluster init` and `add-node`.
fn spec(id: u64, node: &Node) -> String {
    format!("{id}={}={}", node.raft.expect("a raft address"), node.tcp)
}

#[test]
fn a_node_added_after_the_log_was_purged_catches_up_by_snapshot_and_answers_like_the_others() {
    let dirs: Vec<tempfile::TempDir> = (0..4).map(|_| tempfile::tempdir().expect("dir")).collect();
    let mut nodes: BTreeMap<u64, Node> = (1..=3u64)
        .map(|id| {
            (
                id,
                start(dirs[usize::try_from(id - 1).expect("small")].path(), id),
            )
        })
        .collect();
    let members: Vec<String> = nodes.iter().map(|(id, node)| spec(*id, node)).collect();
    let mut admin = Client::connect(nodes[&1].tcp, Role::Admin, "").expect("admin");
    let (code, reason) = admin
        .request(opcode::CLUSTER_INIT, members.join(" ").as_bytes())
        .expect("CLUSTER_INIT answered");
    assert_eq!(code, status::OK, "{}", String::from_utf8_lossy(&reason));
    let (_, leader) =
        leader_seen_by(nodes[&1].tcp, Duration::from_secs(20)).expect("a leader within 20 s");
    let first_three: Vec<SocketAddr> = nodes.values().map(|node| node.tcp).collect();
    // The registry travels in the image too: tenant 1 (the binds' tenant)
    // with a pool holding every X bound below.
    let mut at_leader = Client::connect(leader, Role::Admin, "").expect("admin at the leader");
    let put = x700::protocol::codec::control::ControlRequest::TenantPut {
        tenant: 1,
        mode: x700::protocol::codec::control::PutMode::Add,
        max_live: 0,
        binds_per_s: 0,
        lookups_per_s: 0,
        x_lookups_per_s: 0,
        token: b"tenant-one-token-012345",
        hashed: false,
    };
    assert_eq!(at_leader.control(&put).expect("TENANT_PUT").0, status::OK);
    let pool = x700::protocol::codec::control::ControlRequest::PoolAdd {
        tenant: 1,
        first: 700_000_000_100_000,
        last: 700_000_000_199_999,
        area: *b"010\0",
        province: 0,
    };
    assert_eq!(at_leader.control(&pool).expect("POOL_ADD").0, status::OK);
    drop(at_leader);

    // Binds across several checkpoints: each one purges the leader's log
    // up to MARGIN_ENTRIES entries before it. Every member takes its own
    // checkpoint every second, so member 1's count stands for the leader's.
    let first_checkpoints = counter(&log_stats(nodes[&1].tcp), "checkpoints");
    let mut acked = Vec::new();
    let mut next = 100_000;
    let deadline = Instant::now() + Duration::from_secs(60);
    while acked.len() < usize::try_from(BINDS_BEFORE).expect("small")
        || counter(&log_stats(nodes[&1].tcp), "checkpoints")
            < first_checkpoints + CHECKPOINTS_BEFORE
    {
        assert!(
            Instant::now() < deadline,
            "fewer than {CHECKPOINTS_BEFORE} checkpoints or {BINDS_BEFORE} binds in 60 s"
        );
        acked.extend(bind_acked(&first_three, next, ROUND_BINDS));
        next += ROUND_BINDS;
    }

    // The fourth node, empty, joins through add-node, which returns once it
    // has caught up and been made a voter (sent to any member, it finds
    // the leader).
    let joiner = start(dirs[3].path(), 4);
    let (code, json) = cluster_command(&[
        "add-node",
        "--server",
        &nodes[&1].tcp.to_string(),
        "--member",
        &spec(4, &joiner),
    ]);
    assert_eq!(code, 0, "add-node: {json}");
    let role = json["members"]
        .as_array()
        .and_then(|m| m.iter().find(|m| m["id"] == 4))
        .map(|m| m["role"].clone());
    assert!(
        role.as_ref().is_some_and(|r| *r != "learner"),
        "member 4 was not made a voter: {json}"
    );
    nodes.insert(4, joiner);
    // Guards add-node promoting a node that had not caught up: openraft's
    // `add_learner(.., true)` returns once the learner is within
    // `replication_lag_threshold` entries (default 5,000) of the leader's
    // log, counting a learner with nothing as at index 0, so on a log of
    // fewer entries the empty node became a voter at once, before the
    // snapshot had even been sent.
    let installed = counter(&log_stats(nodes[&4].tcp), "snapshots_installed");
    assert!(
        installed >= 1,
        "add-node answered before the new member had installed the leader's snapshot \
         (the log it needed from the start was purged)"
    );
    assert!(
        routes_all(nodes[&4].tcp, &acked, Duration::from_secs(30)),
        "the new member misses binds acknowledged before it joined"
    );
    // The image carried the leader's traceability history: the new member
    // answers who held the first X, bound long before it joined.
    let (first_x, first_id) = acked[0];
    let now_s = u32::try_from(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .expect("clock")
            .as_secs(),
    )
    .expect("u32 time");
    let mut admin4 = Client::connect(nodes[&4].tcp, Role::Admin, "").expect("admin at 4");
    let (code, traced) = admin4
        .trace(&x700::protocol::codec::control::TraceRequest::AtX {
            x: first_x,
            at_s: now_s,
            caller: Number::NONE,
        })
        .expect("TRACE_X answered");
    assert_eq!(code, status::OK, "{traced}");
    let traced: serde_json::Value = serde_json::from_str(&traced).expect("JSON");
    assert_eq!(
        traced["bindings"][0]["binding_id"].as_u64(),
        Some(first_id.0),
        "the new member's history lacks a life made before it joined: {traced}"
    );
    // And the registry: the tenant, its credential and its pool.
    let (code, shown) = admin4.tenant_show(Some(1)).expect("TENANT_SHOW");
    assert_eq!(code, status::OK, "the new member does not know tenant 1");
    assert!(shown.contains("\"credentials\":1"), "{shown}");
    let (code, pool) = admin4.pool_show(1).expect("POOL_SHOW");
    assert_eq!(code, status::OK);
    assert!(pool.contains("700000000100000"), "{pool}");
    drop(admin4);
    assert!(
        Client::connect(nodes[&4].tcp, Role::Platform, "tenant-one-token-012345").is_ok(),
        "tenant 1's credential opens a session at the new member"
    );

    // It takes the binds made after it joined, like the others.
    let later = bind_acked(&first_three, next, 100);
    for (id, node) in &nodes {
        assert!(
            routes_all(node.tcp, &later, Duration::from_secs(30)),
            "member {id} misses binds made after the new member joined"
        );
    }
    let (code, verify) = cluster_command(&["verify", "--server", &nodes[&1].tcp.to_string()]);
    assert_eq!(code, 0, "verify: {verify}");
    assert_eq!(verify["agree"], true, "{verify}");
    assert_eq!(
        verify["members"].as_array().map(Vec::len),
        Some(4),
        "{verify}"
    );

    let joiner = nodes.remove(&4).expect("member 4");
    joiner.terminate();
    let stopped = joiner.wait_exit();
    assert!(stopped.status.success(), "{}", stopped.stderr);
    for line in [
        "x700: received the leader's snapshot at log index",
        "x700: installed the leader's snapshot at log index",
    ] {
        assert!(
            stopped.stderr.contains(line),
            "the new member's log lacks {line:?}: {}",
            stopped.stderr
        );
    }
    for node in nodes.into_values() {
        assert!(node.stop().success());
    }
}
