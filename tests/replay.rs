//! Proves that `x700 replay` sends a real capture's requests again and
//! compares the answers: a node's session (TCP and a UDP datagram of
//! lookups) captured by tcpdump on `lo`,
//! replayed (binds first, then lookups at `--speed max`) to a fresh node
//! holding the same bindings gives no changed answer and the contract JSON
//! keys; replayed to a node missing one binding it reports exactly that
//! lookup as changed (ok -> not_bound) with its example; a truncated
//! capture gives an error naming the packet and the report of what was
//! replayed before it; HELLOs carry the credential from `--tokens` or
//! `--token`, and a refused one is reported. Binds, updates, queries and
//! unbinds by id replay to a fresh node, which gives other binding ids,
//! with no answer changed (the ids are rewritten, across connections too).
//! A timed replay (`--speed 1`, `--speed 4`) of a capture spanning over a
//! second takes at least the captured span divided by the speed.

mod common;

use common::tcpdump::{tools_ready, Tcpdump};
use serde_json::Value;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::Duration;
use x700::binding::{BindingId, Update};
use x700::capture::{read_capture, Options};
use x700::client::Client;
use x700::protocol::codec::encode_lookup;
use x700::protocol::{status, Role, UnbindBody};
use x700::replay::plan::{plan, Filter};

/// The admin credential of the node that wants one.
const ADMIN_TOKEN: &str = "adm-0123456789abcdef";
/// Bindings made in the captured session.
const BINDINGS: u64 = 3;
/// Lookups in it: one per binding and one of an unbound X over TCP, the
/// first binding's and the unbound X's in one UDP datagram.
const LOOKUPS: u64 = BINDINGS + 1 + 2;

fn bindings() -> Vec<x700::protocol::BindBody> {
    (0..BINDINGS)
        .map(|i| {
            common::axb(
                common::x(5100 + i),
                &format!("1380000010{i}"),
                &format!("1390000020{i}"),
                &format!("replay-{i}"),
            )
        })
        .collect()
}

/// Records with tcpdump on `lo` what `session` does against `node` (its
/// TCP and UDP ports) into `file`. `None` when tcpdump is missing or may
/// not capture here.
fn record(node: &common::Node, file: &Path, session: impl FnOnce()) -> Option<()> {
    if !tools_ready(&["tcpdump"]) {
        return None;
    }
    let ports = [node.tcp.port(), node.udp.port()];
    let tcpdump = match Tcpdump::start(file, &ports, node.tcp) {
        Ok(tcpdump) => tcpdump,
        Err(error) => {
            eprintln!("SKIPPED: {error}");
            return None;
        }
    };
    session();
    tcpdump.stop();
    Some(())
}

/// Captures a session against `node`: one admin connection binding
/// `bindings()`, then another looking each X up from A plus one unbound X,
/// then a UDP datagram of two lookups.
fn capture_session(node: &common::Node, file: &Path) -> Option<()> {
    record(node, file, || session(node))
}

fn session(node: &common::Node) {
    let address: SocketAddr = node.tcp;
    let mut binder = Client::connect(address, Role::Admin, "").expect("admin HELLO");
    for bind in bindings() {
        binder.bind(&bind).expect("bind");
    }
    drop(binder);
    let mut switch = Client::connect(address, Role::Admin, "").expect("admin HELLO");
    for i in 0..BINDINGS {
        let result = switch
            .lookup(&common::ask(&format!("1380000010{i}"), common::x(5100 + i)))
            .expect("lookup");
        assert_eq!(common::callee(&result), format!("1390000020{i}"));
    }
    switch
        .lookup(&common::ask("13800000100", common::x(5199)))
        .expect("lookup of an unbound X");
    drop(switch);
    // Over UDP, one datagram of two lookups: the first binding's, and the
    // unbound X's.
    let udp = std::net::UdpSocket::bind("127.0.0.1:0").expect("udp socket");
    udp.set_read_timeout(Some(Duration::from_secs(2)))
        .expect("udp timeout");
    let mut datagram = Vec::new();
    encode_lookup(
        &mut datagram,
        900,
        &common::ask("13800000100", common::x(5100)),
        true,
    );
    encode_lookup(
        &mut datagram,
        901,
        &common::ask("13800000100", common::x(5199)),
        true,
    );
    udp.send_to(&datagram, node.udp).expect("send datagram");
    let mut answer = [0u8; 1024];
    let (length, _) = udp.recv_from(&mut answer).expect("answer datagram");
    assert_eq!(length, 44 + 12, "a route and a reject");
}

/// Runs `x700 replay` with `args` (`--speed max` unless they say) on
/// `capture`; its output and JSON report.
fn replay(capture: &Path, node: &common::Node, port: u16, args: &[&str]) -> (Output, Value) {
    let dir = capture.parent().expect("capture directory");
    let json: PathBuf = dir.join(format!("report-{}.json", node.tcp.port()));
    let _ = std::fs::remove_file(&json);
    let output = Command::new(common::binary())
        .arg("replay")
        .arg(capture)
        .args([
            "--server",
            &node.tcp.to_string(),
            "--port",
            &port.to_string(),
            "--udp",
            &node.udp.to_string(),
        ])
        .args(if args.contains(&"--speed") {
            &[][..]
        } else {
            &["--speed", "max"][..]
        })
        .arg("--json")
        .arg(&json)
        .args(args)
        .output()
        .expect("run x700 replay");
    let text = std::fs::read_to_string(&json).unwrap_or_else(|_| {
        panic!(
            "no JSON report; stdout {} stderr {}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        )
    });
    (output, serde_json::from_str(&text).expect("JSON report"))
}

fn ok(output: &Output) {
    assert!(
        output.status.success(),
        "stdout {} stderr {}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
}

#[test]
fn a_captured_session_replays_unchanged_and_a_missing_binding_shows() {
    let original = common::Node::start(&[]);
    let dir = tempfile::tempdir().expect("temporary directory");
    let file = dir.path().join("session.pcap");
    let Some(()) = capture_session(&original, &file) else {
        eprintln!("SKIPPED: no tcpdump capture on lo");
        return;
    };
    let port = original.tcp.port();
    original.stop();

    // The same bindings, by replaying the binds; then the lookups.
    let fresh = common::Node::start(&[]);
    let (output, binds) = replay(&file, &fresh, port, &["--filter", "opcode=bind_axb"]);
    ok(&output);
    assert_eq!(binds["requests_sent"], BINDINGS);
    assert_eq!(binds["answers_changed"], 0, "{binds}");
    let (output, lookups) = replay(&file, &fresh, port, &["--filter", "opcode=lookup"]);
    ok(&output);
    assert_eq!(lookups["connections"], 2, "{lookups}");
    assert_eq!(lookups["requests_sent"], LOOKUPS, "{lookups}");
    assert_eq!(lookups["answers_compared"], LOOKUPS, "{lookups}");
    assert_eq!(lookups["answers_changed"], 0, "{lookups}");
    for key in ["p50", "p99", "max"] {
        assert!(lookups["latency_us"][key].is_u64(), "{lookups}");
    }
    assert!(lookups["achieved_rate_per_s"].as_f64().expect("rate") > 0.0);
    // Without the filter, the binds are sent again: the same binding is
    // answered ok but no longer created (the body's last flag), so every
    // bind answer changes with the same status; every lookup still
    // matches.
    let (output, again) = replay(&file, &fresh, port, &[]);
    ok(&output);
    assert_eq!(again["requests_sent"], BINDINGS + LOOKUPS, "{again}");
    assert_eq!(again["answers_changed"], BINDINGS, "{again}");
    assert_eq!(again["changes"][0]["old_status"], "ok", "{again}");
    assert_eq!(again["changes"][0]["new_status"], "ok", "{again}");
    assert_eq!(again["examples"][0]["opcode"], "bind_axb", "{again}");
    fresh.stop();

    // A node missing the last binding: exactly that lookup changed.
    let missing = common::Node::start(&[]);
    let mut client = Client::connect(missing.tcp, Role::Admin, "").expect("admin HELLO");
    for bind in bindings().iter().take(BINDINGS as usize - 1) {
        client.bind(bind).expect("bind");
    }
    drop(client);
    let (output, changed) = replay(&file, &missing, port, &["--filter", "opcode=lookup"]);
    ok(&output);
    assert_eq!(changed["answers_compared"], LOOKUPS, "{changed}");
    assert_eq!(changed["answers_changed"], 1, "{changed}");
    let changes = changed["changes"].as_array().expect("changes");
    assert_eq!(changes.len(), 1, "{changed}");
    assert_eq!(changes[0]["old_status"], "ok");
    assert_eq!(changes[0]["new_status"], "not_bound");
    assert_eq!(changes[0]["count"], 1);
    let example = &changed["examples"][0];
    assert_eq!(example["opcode"], "lookup", "{changed}");
    assert!(example["request_id"].is_u64());
    assert!(example["connection"].is_u64());
    // A not_bound answer is a bare 12-byte header: 24 hex digits.
    assert_eq!(example["new"].as_str().map(str::len), Some(24), "{changed}");
    assert_eq!(
        example["old"].as_str().map(str::len),
        Some(2 * 44),
        "{changed}"
    );

    // A truncated capture: the error names the last packet, and what was
    // before it was replayed.
    let bytes = std::fs::read(&file).expect("read capture");
    let packets = read_capture(bytes.as_slice(), &Options { server_port: port })
        .summary
        .packets;
    let cut = dir.path().join("cut.pcap");
    std::fs::write(&cut, &bytes[..bytes.len() - 4]).expect("write cut capture");
    let (output, cut_report) = replay(&cut, &missing, port, &["--filter", "opcode=lookup"]);
    assert_eq!(output.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains(&format!("packet {packets}")), "{stderr}");
    assert_eq!(
        cut_report["capture_error"]["packet"], packets,
        "{cut_report}"
    );
    assert_eq!(cut_report["requests_sent"], LOOKUPS, "{cut_report}");
    missing.stop();

    // Credentials: the captured HELLOs carried none; a node that wants one
    // gets it from a tokens file, and refuses a wrong one.
    let guarded = common::Node::start(&["--credential", &format!("admin:{ADMIN_TOKEN}")]);
    let tokens = dir.path().join("tokens.toml");
    std::fs::write(&tokens, format!("admin = \"{ADMIN_TOKEN}\"\n")).expect("tokens file");
    let tokens = tokens.to_string_lossy().into_owned();
    let bind_filter = ["--filter", "opcode=bind_axb", "--tokens", &tokens];
    let (output, admitted) = replay(&file, &guarded, port, &bind_filter);
    ok(&output);
    assert_eq!(admitted["answers_changed"], 0, "{admitted}");
    let wrong = ["--filter", "opcode=bind_axb", "--token", "not-the-token"];
    let (output, refused) = replay(&file, &guarded, port, &wrong);
    assert_eq!(output.status.code(), Some(1));
    assert_eq!(refused["requests_sent"], 0, "{refused}");
    let error = refused["connection_errors"][0]["error"].as_str();
    assert!(
        error.is_some_and(|e| e.contains("unauthorised")),
        "{refused}"
    );
    guarded.stop();
}

/// Binds `bind` and returns its id.
fn bound(client: &mut Client, bind: &x700::protocol::BindBody) -> BindingId {
    let reply = client.bind(bind).expect("bind");
    assert_eq!(reply.status, status::OK, "{reply:?}");
    reply.binding_id.expect("a bound binding's id")
}

/// Guards the replay bug where UPDATE, UNBIND and QUERY went with the
/// captured binding ids: a fresh node had given its binds other ids, so
/// every one of them was answered `not_found` (or hit another binding).
#[test]
fn updates_queries_and_unbinds_by_id_follow_the_replayed_binds_ids() {
    let original = common::Node::start(&[]);
    let binds: Vec<_> = (0..3)
        .map(|i| {
            let x = common::x(6100 + i);
            common::axb(
                x,
                &format!("1380000030{i}"),
                &format!("1390000040{i}"),
                "ids",
            )
        })
        .collect();
    // Ids are never reused: binding and unbinding these X's first makes
    // the captured binds' ids other than a fresh node's first ids.
    let mut client = Client::connect(original.tcp, Role::Admin, "").expect("admin HELLO");
    for bind in &binds {
        let id = bound(&mut client, bind);
        client
            .unbind(&UnbindBody::Id(id))
            .expect("unbind")
            .expect("unbound");
    }
    drop(client);
    let dir = tempfile::tempdir().expect("temporary directory");
    let file = dir.path().join("ids.pcap");
    let mut captured_ids = Vec::new();
    let recorded = record(&original, &file, || {
        let mut platform = Client::connect(original.tcp, Role::Admin, "").expect("admin HELLO");
        let mut reader = Client::connect(original.tcp, Role::Admin, "").expect("admin HELLO");
        captured_ids = binds
            .iter()
            .map(|bind| bound(&mut platform, bind))
            .collect();
        let [first, second, third] = captured_ids[..] else {
            unreachable!("three binds")
        };
        let longer = Update {
            ttl_s: Some(7_200),
            recording: Some(true),
            ..Update::default()
        };
        let updated = platform.update(first, &longer).expect("update");
        assert!(updated.is_ok(), "{updated:?}");
        assert!(platform.query(first).expect("query").is_ok());
        // Another connection names a binding this one made: its QUERY must
        // wait for that BIND's replayed answer.
        assert!(reader.query(third).expect("query").is_ok());
        let unbound = platform.unbind(&UnbindBody::Id(second)).expect("unbind");
        assert!(unbound.is_ok(), "{unbound:?}");
        let gone = platform.query(second).expect("query of an unbound id");
        assert_eq!(
            gone.map(drop).map_err(|refusal| refusal.status),
            Err(status::NOT_FOUND)
        );
        assert!(platform
            .unbind(&UnbindBody::Id(first))
            .expect("unbind")
            .is_ok());
    });
    let Some(()) = recorded else {
        eprintln!("SKIPPED: no tcpdump capture on lo");
        return;
    };
    let port = original.tcp.port();
    original.stop();

    let fresh = common::Node::start(&[]);
    let (output, report) = replay(&file, &fresh, port, &[]);
    ok(&output);
    // Three binds, an update, two queries of the first and the third, an
    // unbind, a query of the unbound, an unbind.
    assert_eq!(report["requests_sent"], 9, "{report}");
    assert_eq!(report["answers_compared"], 9, "{report}");
    assert_eq!(report["answers_changed"], 0, "{report}");
    assert_eq!(report["ids_remapped"], 6, "{report}");
    assert_eq!(report["ids_unmapped"], 0, "{report}");
    // The fresh node did give other ids: the third binding, still bound
    // there, is not found under its captured id.
    let mut client = Client::connect(fresh.tcp, Role::Admin, "").expect("admin HELLO");
    let by_captured_id = client.query(captured_ids[2]).expect("query");
    assert!(
        by_captured_id.is_err() || by_captured_id.is_ok_and(|b| b.x != binds[2].x),
        "the fresh node gave the captured ids: this test proves nothing"
    );
    fresh.stop();
}

/// A timed replay waits for each request's captured offset divided by the
/// speed: it never runs faster than the capture allows (lower bounds only,
/// the machine may always be slower).
#[test]
fn timed_replays_take_at_least_the_captured_span_over_the_speed() {
    let node = common::Node::start(&[]);
    let dir = tempfile::tempdir().expect("temporary directory");
    let file = dir.path().join("paced.pcap");
    let recorded = record(&node, &file, || {
        let mut switch = Client::connect(node.tcp, Role::Admin, "").expect("admin HELLO");
        for i in 0..3 {
            if i > 0 {
                std::thread::sleep(Duration::from_millis(600));
            }
            switch
                .lookup(&common::ask("13800000100", common::x(7100 + i)))
                .expect("lookup");
        }
    });
    let Some(()) = recorded else {
        eprintln!("SKIPPED: no tcpdump capture on lo");
        return;
    };
    let port = node.tcp.port();
    let bytes = std::fs::read(&file).expect("read capture");
    let capture = read_capture(bytes.as_slice(), &Options { server_port: port });
    let planned = plan(&capture, &Filter::default());
    let span_s = planned
        .connections
        .iter()
        .flat_map(|connection| &connection.requests)
        .map(|request| request.offset_ns)
        .max()
        .expect("planned requests") as f64
        / 1e9;
    assert!(span_s >= 1.1, "the capture spans {span_s}s");
    // Timers may fire a little early and the report rounds: 20 ms.
    let tolerance_s = 0.02;
    for speed in [1.0, 4.0] {
        let (output, report) = replay(&file, &node, port, &["--speed", &speed.to_string()]);
        ok(&output);
        assert_eq!(report["requests_sent"], 3, "{report}");
        assert_eq!(report["answers_changed"], 0, "{report}");
        let elapsed_s = report["elapsed_s"].as_f64().expect("elapsed_s");
        assert!(
            elapsed_s >= span_s / speed - tolerance_s,
            "--speed {speed}: {elapsed_s}s for a {span_s}s capture"
        );
    }
    node.stop();
}
