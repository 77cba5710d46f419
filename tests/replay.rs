//! Proves that `x700 replay` sends a real capture's requests again and
//! compares the answers: a node's session (TCP and a UDP datagram of
//! lookups) captured by tcpdump on `lo`,
//! replayed (binds first, then lookups at `--speed max`) to a fresh node
//! holding the same bindings gives no changed answer and the contract JSON
//! keys; replayed to a node missing one binding it reports exactly that
//! lookup as changed (ok -> not_bound) with its example; a truncated
//! capture gives an error naming the packet and the report of what was
//! replayed before it; HELLOs carry the credential from `--tokens` or
//! `--token`, and a refused one is reported.

mod common;

use serde_json::Value;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};
use x700::capture::{read_capture, Options};
use x700::client::Client;
use x700::protocol::codec::encode_lookup;
use x700::protocol::Role;

/// A pcap file's header: what tcpdump writes before any packet.
const PCAP_HEADER_BYTES: u64 = 24;
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

/// Captures (tcpdump on `lo`, the recipe of tests/capture_read.rs) a
/// session against `node`: one admin connection binding `bindings()`, then
/// another looking each X up from A plus one unbound X, then a UDP
/// datagram of two lookups. `None` when
/// tcpdump is missing or may not capture here.
fn capture_session(node: &common::Node, file: &Path) -> Option<()> {
    let found = Command::new("tcpdump").arg("--version").output().ok()?;
    if !found.status.success() {
        return None;
    }
    let port = node.tcp.port();
    let mut tcpdump = Command::new("tcpdump")
        // Immediate mode: each packet reaches the file at once (SIGINT
        // would lose the kernel's last block).
        .args([
            "-i",
            "lo",
            "--immediate-mode",
            "-U",
            "-n",
            "-Z",
            "root",
            "-w",
        ])
        .arg(file)
        .args([
            "port",
            &port.to_string(),
            "or",
            "port",
            &node.udp.port().to_string(),
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .ok()?;
    // tcpdump may capture a little after it writes the file header: knock
    // (connect, close) until a knock is in the file.
    let deadline = Instant::now() + Duration::from_secs(15);
    while std::fs::metadata(file).map_or(true, |m| m.len() <= PCAP_HEADER_BYTES) {
        if Instant::now() > deadline || tcpdump.try_wait().ok().flatten().is_some() {
            let _ = tcpdump.kill();
            let output = tcpdump.wait_with_output().ok()?;
            eprintln!(
                "SKIPPED: tcpdump cannot capture on lo here: {}",
                String::from_utf8_lossy(&output.stderr)
            );
            return None;
        }
        drop(std::net::TcpStream::connect(node.tcp));
        std::thread::sleep(Duration::from_millis(100));
    }
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
    // Let the last packets reach the file, then stop tcpdump (SIGINT, by
    // the child's own pid).
    std::thread::sleep(Duration::from_millis(1_000));
    let _ = Command::new("kill")
        .args(["-INT", &tcpdump.id().to_string()])
        .status();
    let _ = tcpdump.wait();
    Some(())
}

/// Runs `x700 replay` with `args` on `capture`; its output and JSON report.
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
        .args(["--speed", "max", "--json"])
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
