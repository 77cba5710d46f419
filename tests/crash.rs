//! Proves that an acknowledged bind survives `kill -9`: a real `x700 serve` takes pipelined binds from four client connections, is killed with SIGKILL at random moments and restarted on the same data directory, `X700_CRASH_KILLS` times (10 by default); after every restart each bind the clients heard "ok" for is there (found by its id, with its X, routing its A to its B), retrying acknowledged binds gives the same id with `created: false` (no bind is applied twice), the live count lies between the binds acknowledged and the binds sent, and after the last, clean stop `x700 check` verifies every record and index entry.

mod common;

use common::{axb, Node, Raw};
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use x700::binding::{BindingId, LookupResult};
use x700::client::Client;
use x700::protocol::codec::{self, BindBody};
use x700::protocol::{opcode, status, Role};

/// Client connections binding at once.
const CLIENTS: u64 = 4;
/// Binds in flight per connection.
const WINDOW: u32 = 32;
/// Each client's bindings are numbered from `(cycle * CLIENTS + client) * SPAN`.
const SPAN: u64 = 1_000_000;

fn kills() -> usize {
    std::env::var("X700_CRASH_KILLS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(10)
}

fn body(g: u64) -> BindBody {
    axb(
        common::x(g),
        &format!("138{:08}", g % 100_000_000),
        &format!("139{:08}", g % 100_000_000),
        &format!("crash-{g}"),
    )
}

/// Binds `first..` over one connection, `WINDOW` in flight, until the
/// connection breaks (the node was killed) or `stop` is set; records every
/// acknowledged bind.
fn bind_until_killed(
    address: std::net::SocketAddr,
    first: u64,
    stop: &AtomicBool,
    acknowledged: &Mutex<HashMap<u64, BindingId>>,
    sent: &AtomicU64,
) {
    let mut raw = Raw::session(address, Role::Platform, "");
    let mut next = 0u32;
    let mut in_flight = 0u32;
    let mut out = Vec::new();
    loop {
        out.clear();
        while in_flight < WINDOW && !stop.load(Ordering::Relaxed) {
            next += 1;
            codec::encode_bind(&mut out, next, &body(first + u64::from(next)));
            in_flight += 1;
        }
        if !out.is_empty() {
            sent.fetch_add(u64::from(WINDOW), Ordering::Relaxed);
            if raw.try_send(&out).is_err() {
                return;
            }
        }
        if in_flight == 0 {
            return;
        }
        match raw.read_frame() {
            Ok(Some((header, answer))) => {
                in_flight -= 1;
                assert_eq!(header.opcode, opcode::BIND_AXB);
                let g = first + u64::from(header.request_id);
                if header.status == status::OK {
                    let (id, _, created) =
                        codec::decode_bind_answer(&answer).expect("bind answer decodes");
                    assert!(created, "binding {g} was new");
                    acknowledged.lock().unwrap().insert(g, id);
                } else {
                    assert!(
                        header.status == status::BUSY,
                        "bind {g}: {}",
                        status::name(header.status)
                    );
                }
            }
            // Killed: the connection closes or resets.
            Ok(None) | Err(_) => return,
        }
    }
}

fn stats_live(client: &mut Client) -> u64 {
    let (code, json) = client.stats().expect("stats");
    assert_eq!(code, status::OK);
    let value: serde_json::Value = serde_json::from_str(&json).expect("stats json");
    value["bindings_live"].as_u64().expect("bindings_live")
}

fn verify(node: &Node, acknowledged: &HashMap<u64, BindingId>, sent: u64, cycle: usize) {
    // Every acknowledged bind, by id: QUERY pipelined 256 at a time.
    let mut raw = Raw::session(node.tcp, Role::Admin, "");
    let all: Vec<(u64, BindingId)> = acknowledged.iter().map(|(&g, &id)| (g, id)).collect();
    let mut out = Vec::new();
    for chunk in all.chunks(256) {
        out.clear();
        for (i, &(_, id)) in (0u32..).zip(chunk) {
            codec::encode_query(&mut out, i, id);
        }
        raw.send(&out);
        for _ in chunk {
            let (header, answer) = raw.expect_frame();
            let (g, id) = chunk[header.request_id as usize];
            assert_eq!(
                header.status,
                status::OK,
                "after kill {cycle}: acknowledged bind {g} ({id:?}) lost: {}",
                status::name(header.status)
            );
            let binding = codec::decode_binding(&answer).expect("binding decodes");
            assert_eq!(binding.x, common::x(g), "binding {g} has another X");
        }
    }
    let mut client = Client::connect(node.tcp, Role::Admin, "").expect("connect");
    // A sample also routes, and a retry is recognised, not applied twice.
    for (&g, &id) in acknowledged.iter().take(50) {
        let query = common::ask(&format!("138{:08}", g % 100_000_000), common::x(g));
        match client.lookup(&query).expect("lookup") {
            LookupResult::Route(route) => assert_eq!(route.binding_id, id),
            other => panic!("after kill {cycle}: binding {g} does not route: {other:?}"),
        }
        let retry = client.bind(&body(g)).expect("retry");
        assert_eq!(retry.status, status::OK, "retry of {g}");
        assert_eq!(retry.binding_id, Some(id), "retry of {g} gave another id");
        assert_eq!(
            retry.created,
            Some(false),
            "retry of {g} made a second binding"
        );
    }
    let live = stats_live(&mut client);
    assert!(
        live >= acknowledged.len() as u64 && live <= sent,
        "after kill {cycle}: {live} live bindings, {} acknowledged, {sent} sent",
        acknowledged.len()
    );
}

#[test]
fn acknowledged_binds_survive_kill_9() {
    let dir = tempfile::tempdir().unwrap();
    let seed = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(1, |d| d.as_nanos() as u64);
    println!("seed {seed}");
    let mut state = seed;
    let acknowledged = Arc::new(Mutex::new(HashMap::new()));
    let sent = Arc::new(AtomicU64::new(0));
    let started = Instant::now();
    for cycle in 0..kills() {
        let node = Node::start_on(dir.path(), &["--shards", "2"]);
        verify(
            &node,
            &acknowledged.lock().unwrap(),
            sent.load(Ordering::Relaxed),
            cycle,
        );
        let stop = Arc::new(AtomicBool::new(false));
        let clients: Vec<_> = (0..CLIENTS)
            .map(|client| {
                let first = (cycle as u64 * CLIENTS + client) * SPAN;
                let (stop, acknowledged, sent) = (
                    Arc::clone(&stop),
                    Arc::clone(&acknowledged),
                    Arc::clone(&sent),
                );
                let address = node.tcp;
                std::thread::spawn(move || {
                    bind_until_killed(address, first, &stop, &acknowledged, &sent);
                })
            })
            .collect();
        let wait_ms = 50 + x700::synth::splitmix64(&mut state) % 400;
        std::thread::sleep(Duration::from_millis(wait_ms));
        let stopped = node.kill();
        stop.store(true, Ordering::Relaxed);
        for client in clients {
            client.join().expect("client thread");
        }
        println!(
            "kill {cycle} after {wait_ms} ms: {} acknowledged so far ({:?})",
            acknowledged.lock().unwrap().len(),
            stopped.status
        );
    }
    let node = Node::start_on(dir.path(), &["--shards", "2"]);
    let acknowledged = acknowledged.lock().unwrap().clone();
    verify(&node, &acknowledged, sent.load(Ordering::Relaxed), kills());
    assert!(
        acknowledged.len() > 100 * kills(),
        "only {} binds were acknowledged: the load did not run",
        acknowledged.len()
    );
    assert!(node.stop().success());
    let check = std::process::Command::new(env!("CARGO_BIN_EXE_x700"))
        .args(["check", "--data"])
        .arg(dir.path())
        .arg("--json")
        .output()
        .unwrap();
    assert!(
        check.status.success(),
        "x700 check failed: {}",
        String::from_utf8_lossy(&check.stdout)
    );
    println!(
        "{} kills, {} binds acknowledged, all there, in {:?}",
        kills(),
        acknowledged.len(),
        started.elapsed()
    );
}
