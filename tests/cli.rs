//! Proves the `x700` command line keeps its word, by running the real
//! binary: text output shows an order reference's control characters and
//! invalid UTF-8 escaped, never raw (offline and over the wire); `x700 load
//! --server` binds the same synthetic bindings as the offline load, so the
//! node's STATS counts them and a lookup of one routes; and every command
//! whose `--help` offers `--server` works against a real node. Each
//! command runs with a deadline; nodes listen on loopback only.

mod common;

use common::{axb, x, Node};
use serde_json::Value;
use std::ffi::OsStr;
use std::io::Read;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};
use x700::binding::OrderRef;
use x700::client::Client;
use x700::protocol::{status, Role};
use x700::synth::Synthetic;

/// Longest a single `x700` command may take here.
const COMMAND_TIMEOUT: Duration = Duration::from_secs(60);
/// Longest wait for STATS to count what a load bound (the node publishes
/// its counts every 10 ms).
const STATS_TIMEOUT: Duration = Duration::from_secs(5);
/// What a command said when it ignored `--server` (the bug item 21 fixes).
const OFFLINE_ONLY: &str = "works on a data directory";

/// What one `x700` run printed.
struct Ran {
    code: i32,
    stdout: Vec<u8>,
    stderr: Vec<u8>,
}

impl Ran {
    fn text(&self) -> String {
        format!(
            "exit {}; stdout: {}; stderr: {}",
            self.code,
            String::from_utf8_lossy(&self.stdout),
            String::from_utf8_lossy(&self.stderr)
        )
    }

    fn json(&self) -> Value {
        serde_json::from_slice(&self.stdout)
            .unwrap_or_else(|e| panic!("not one JSON object ({e}): {}", self.text()))
    }
}

/// Runs `x700 ARGS`, killing it after `COMMAND_TIMEOUT`. Outputs here are
/// small (well under a pipe's buffer), so reading after the exit is safe.
fn x700<S: AsRef<OsStr>>(args: &[S]) -> Ran {
    let mut child = Command::new(env!("CARGO_BIN_EXE_x700"))
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn x700");
    let deadline = Instant::now() + COMMAND_TIMEOUT;
    let status = loop {
        if let Some(status) = child.try_wait().expect("wait for x700") {
            break status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("x700 did not finish within {COMMAND_TIMEOUT:?}");
        }
        std::thread::sleep(Duration::from_millis(10));
    };
    let mut stdout = Vec::new();
    let mut stderr = Vec::new();
    let _ = child.stdout.take().expect("piped").read_to_end(&mut stdout);
    let _ = child.stderr.take().expect("piped").read_to_end(&mut stderr);
    Ran {
        code: status.code().unwrap_or(-1),
        stdout,
        stderr,
    }
}

fn has_raw_control_bytes(bytes: &[u8]) -> bool {
    bytes
        .iter()
        .any(|&b| b == 0x1b || b == 0x7f || (b < 0x20 && b != b'\n') || b >= 0x80)
}

// ---- item 19: order references are shown escaped ----

/// Guards item 19 of step 5: the text output of `query` (and `update`,
/// `unbind`) printed an order reference's bytes raw, so an order holding
/// `ESC [31m` recoloured the operator's terminal (any control sequence a
/// platform chose would reach it). Offline, the reference goes in through
/// `bind --order`; the text must show `\x1b[31m` and hold no ESC byte.
#[test]
fn offline_text_output_escapes_an_order_reference() {
    let dir = tempfile::tempdir().expect("temporary directory");
    let data = dir.path().join("data");
    let data = data.to_str().expect("UTF-8 path");
    let bound = x700(&[
        "bind",
        "axb",
        "--data",
        data,
        "--x",
        "700000000000001",
        "--a",
        "13800138000",
        "--b",
        "13900139000",
        "--tenant",
        "1",
        "--order",
        "\x1b[31mred\tand\nmore",
        "--ttl-s",
        "600",
        "--json",
    ]);
    assert_eq!(bound.code, 0, "{}", bound.text());
    let id = bound.json()["binding_id"].as_u64().expect("binding_id");
    let id = id.to_string();

    let query = x700(&["query", "--data", data, "--id", &id]);
    assert_eq!(query.code, 0, "{}", query.text());
    assert!(!has_raw_control_bytes(
        &query.stdout[..query.stdout.len() - 1]
    ));
    let text = String::from_utf8(query.stdout.clone()).expect("UTF-8");
    assert!(
        text.contains(r"order: \x1b[31mred\tand\nmore"),
        "{}",
        query.text()
    );
    assert_eq!(text.lines().count(), 1, "{text:?}");

    // JSON keeps the exact characters (serde escapes them).
    let query = x700(&["query", "--data", data, "--id", &id, "--json"]);
    assert_eq!(query.json()["order"], "\x1b[31mred\tand\nmore");
    assert!(!query.stdout.contains(&0x1b));
}

/// Guards item 19 of step 5 over the wire: a platform may put any 32 bytes
/// in an order reference, not only UTF-8. `query`, `update` and `unbind
/// --server` must show control characters as `\x1b`, `\n`, invalid UTF-8
/// as `\xNN`, a backslash doubled, and print no raw control byte.
#[test]
fn text_output_over_the_wire_escapes_any_order_bytes() {
    let node = Node::start(&["--shards", "1"]);
    let server = node.tcp.to_string();
    let mut platform = Client::connect(node.tcp, Role::Platform, "").expect("platform");
    let order: &[u8] = b"\x1b[31m\xff\xfe\\\n\x07\xc2\x9b";
    let body = x700::protocol::codec::BindBody {
        order: OrderRef::new(order).expect("at most 32 bytes"),
        ..axb(x(1), "13800138000", "13900139000", "o")
    };
    let reply = platform.bind(&body).expect("bind answered");
    assert_eq!(status::name(reply.status), "ok");
    let id = reply.binding_id.expect("binding id").0.to_string();
    let shown = r"order: \x1b[31m\xff\xfe\\\n\x07\u{9b}";

    for args in [
        vec!["query", "--server", &server, "--id", &id],
        vec!["update", "--server", &server, "--id", &id, "--ttl-s", "900"],
        vec!["unbind", "--server", &server, "--id", &id],
    ] {
        let ran = x700(&args);
        assert_eq!(ran.code, 0, "{args:?}: {}", ran.text());
        let line = &ran.stdout[..ran.stdout.len() - 1];
        assert!(!has_raw_control_bytes(line), "{args:?}: {line:?}");
        let text = String::from_utf8(ran.stdout.clone()).expect("UTF-8");
        assert!(text.contains(shown), "{args:?}: {text}");
    }
    assert!(node.stop().success());
}

// ---- item 21: --server works wherever it is offered ----

/// STATS over the CLI until `bindings_live` is `expected`, within
/// `STATS_TIMEOUT`.
fn await_stats(server: &str, expected: u64) -> Value {
    let deadline = Instant::now() + STATS_TIMEOUT;
    loop {
        let stats = x700(&["stats", "--server", server, "--json"]);
        assert_eq!(stats.code, 0, "{}", stats.text());
        let stats = stats.json();
        if stats["bindings_live"].as_u64() == Some(expected) {
            return stats;
        }
        assert!(
            Instant::now() < deadline,
            "bindings_live never reached {expected}: {stats}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// `x700 load --server SERVER --bindings 2000 --seed 7 --json EXTRA...`,
/// which must succeed; its report.
fn load_2000(server: &str, extra: &[&str]) -> Value {
    let mut args = vec![
        "load",
        "--server",
        server,
        "--bindings",
        "2000",
        "--seed",
        "7",
        "--json",
    ];
    args.extend_from_slice(extra);
    let load = x700(&args);
    assert_eq!(load.code, 0, "{}", load.text());
    let report = load.json();
    assert_eq!(report["status"], "ok", "{report}");
    assert_eq!(report["conflicts"], 0, "{report}");
    assert_eq!(report["failed"], 0, "{report}");
    assert_eq!(report["by_status"]["ok"], 2000, "{report}");
    for key in [
        "elapsed_s",
        "binds_per_s",
        "bind_latency_us",
        "binds_over_1ms",
    ] {
        assert!(!report[key].is_null(), "{key} missing: {report}");
    }
    report
}

/// `x700 lookup --server` of synthetic binding `index` of seed 7, from A.
fn lookup_synthetic(server: &str, index: u64) -> (Value, String) {
    let binding = Synthetic { seed: 7 }.binding(index);
    let lookup = x700(&[
        "lookup",
        "--server",
        server,
        "--caller",
        &binding.a.digits(),
        "--called",
        &binding.x.digits(),
        "--json",
    ]);
    assert_eq!(lookup.code, 0, "{}", lookup.text());
    (lookup.json(), binding.b.digits())
}

/// Guards item 21 of step 5: `x700 load --help` offered `--server ADDR`,
/// but `x700 load --server` answered "this command works on a data
/// directory". Now it binds the offline load's synthetic bindings over the
/// wire: 2,000 of seed 7 are all created, STATS counts them, a lookup of
/// one (from `x700::synth`, as the offline load makes it) routes, and a
/// second load of the same seed finds every binding already there.
#[test]
fn load_over_the_wire_binds_the_synthetic_bindings() {
    let node = Node::start(&["--shards", "2"]);
    let server = node.tcp.to_string();
    let report = load_2000(&server, &[]);
    assert_eq!(report["created"], 2000, "{report}");
    assert_eq!(report["existing"], 0, "{report}");
    await_stats(&server, 2000);

    let (answer, b) = lookup_synthetic(&server, 1234);
    assert_eq!(answer["status"], "ok", "{answer}");
    assert_eq!(answer["callee"], b, "{answer}");
    // Bindings 0..2000 exactly: the next one of the seed is not bound.
    let (answer, _) = lookup_synthetic(&server, 2000);
    assert_eq!(answer["status"], "not_bound", "{answer}");

    // The same seed again: idempotent repeats, nothing new.
    let report = load_2000(&server, &["--connections", "1"]);
    assert_eq!(report["created"], 0, "{report}");
    assert_eq!(report["existing"], 2000, "{report}");
    await_stats(&server, 2000);
    assert!(node.stop().success());
}

/// A refused HELLO is reported with its status, as by every `--server`
/// command, and nothing is bound.
#[test]
fn load_over_the_wire_reports_a_refused_credential() {
    let node = Node::start(&[
        "--shards",
        "1",
        "--credential",
        "admin:adm-0123456789abcdef",
    ]);
    let server = node.tcp.to_string();
    let load = x700(&[
        "load",
        "--server",
        &server,
        "--bindings",
        "10",
        "--token",
        "wrong-0123456789abcdef",
        "--json",
    ]);
    assert_eq!(load.code, 1, "{}", load.text());
    assert_eq!(load.json()["status"], "unauthorised", "{}", load.text());
    assert!(node.stop().success());
}

/// A load into a directory says why its slow binds were slow: the three
/// causes account for every bind over 1 ms.
#[test]
fn a_directory_load_puts_every_slow_bind_down_to_a_cause() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let data_text = data.display().to_string();
    let load = x700(&[
        "load",
        "--data",
        &data_text,
        "--bindings",
        "20000",
        "--quiet",
        "--json",
    ]);
    assert_eq!(load.code, 0, "{}", load.text());
    let report = load.json();
    let causes = &report["binds_over_1ms_by_cause"];
    let sum: u64 = ["preempted", "blocked", "running"]
        .iter()
        .map(|cause| {
            causes[cause]
                .as_u64()
                .unwrap_or_else(|| panic!("{cause}: {report}"))
        })
        .sum();
    assert_eq!(Some(sum), report["binds_over_1ms"].as_u64(), "{report}");
}

/// The commands `x700 --help` lists (with subcommands, as `bind axb`),
/// minus `help` itself.
fn commands(prefix: &[&str]) -> Vec<Vec<String>> {
    let mut args: Vec<&str> = prefix.to_vec();
    args.push("--help");
    let help = x700(&args);
    assert_eq!(help.code, 0, "{}", help.text());
    let text = String::from_utf8(help.stdout).expect("UTF-8 help");
    let Some((_, listed)) = text.split_once("Commands:\n") else {
        return vec![prefix.iter().map(ToString::to_string).collect()];
    };
    let mut found = Vec::new();
    for line in listed.lines().take_while(|line| !line.trim().is_empty()) {
        let name = line.split_whitespace().next().expect("a command name");
        if name == "help" {
            continue;
        }
        let mut path = prefix.to_vec();
        path.push(name);
        found.extend(commands(&path));
    }
    found
}

/// Guards item 21 of step 5: every command whose `--help` lists `--server`
/// must work with it (`load` did not), and a command that only works on a
/// data directory must not offer it (`check` did). The commands come from
/// `x700 --help`, so a new one is checked too: it fails here until it has
/// arguments below, if it offers `--server`.
#[test]
fn every_command_that_offers_server_works_with_it() {
    let node = Node::start(&["--shards", "1"]);
    let server = node.tcp.to_string();
    let mut platform = Client::connect(node.tcp, Role::Platform, "").expect("platform");
    let kept = platform
        .bind(&axb(x(100), "13800000100", "13900000100", "kept"))
        .expect("bind answered");
    let kept = kept.binding_id.expect("bound").0.to_string();
    let removed = platform
        .bind(&axb(x(101), "13800000101", "13900000101", "removed"))
        .expect("bind answered");
    let removed = removed.binding_id.expect("bound").0.to_string();

    // `replay` reads a capture: an empty pcap (its 24-byte header only).
    let capture_dir = tempfile::tempdir().expect("temporary directory");
    let empty_capture = capture_dir.path().join("empty.pcap");
    let mut pcap_header = Vec::new();
    for field in [0xA1B2_C3D4u32, 0x0004_0002, 0, 0, 65_535, 1] {
        pcap_header.extend_from_slice(&field.to_le_bytes());
    }
    std::fs::write(&empty_capture, pcap_header).expect("write empty capture");
    let empty_capture = empty_capture.to_string_lossy().into_owned();
    // `import` reads a CSV file: one binding.
    let import_file = capture_dir.path().join("import.csv");
    let import_rows = "x,a,b,order,ttl_s\n700000000000200,13800000200,13900000200,i1,600\n";
    std::fs::write(&import_file, import_rows).expect("write import file");
    let import_file = import_file.to_string_lossy().into_owned();

    let arguments = |command: &str| -> Option<Vec<&str>> {
        let binding = ["--tenant", "1", "--ttl-s", "600", "--a", "13800000001"];
        let extra: Vec<&str> = match command {
            "bind axb" => vec![
                "--x",
                "700000000000001",
                "--b",
                "13900000001",
                "--order",
                "b1",
            ],
            "bind axn" => vec!["--x", "700000000000002", "--order", "b2"],
            "bind axe" => vec!["--x", "700000000000003", "--ext", "12", "--order", "b3"],
            "lookup" => {
                return Some(vec![
                    "--caller",
                    "13800000100",
                    "--called",
                    "700000000000100",
                ])
            }
            "unbind" => return Some(vec!["--id", &removed]),
            "update" => return Some(vec!["--id", &kept, "--ttl-s", "900"]),
            "query" => return Some(vec!["--id", &kept]),
            "load" => return Some(vec!["--bindings", "50", "--quiet"]),
            "stats" => return Some(Vec::new()),
            "cluster status" => return Some(Vec::new()),
            // A one-member node refuses it (exit 1, checked below).
            "cluster init" => return Some(vec!["--member", "1=127.0.0.1:9=127.0.0.1:9"]),
            "cluster add-node" => return Some(vec!["--member", "2=127.0.0.1:9=127.0.0.1:9"]),
            "cluster remove-node" => return Some(vec!["--node-id", "2"]),
            // A one-member node is a cluster: verify agrees with itself.
            "cluster verify" => return Some(Vec::new()),
            "replay" => return Some(vec![&empty_capture, "--speed", "max"]),
            "import" => return Some(vec![&import_file, "--tenant", "1"]),
            // Tenant 1 is the one the commands above bind for.
            "tenant add" => return Some(vec!["--tenant", "1", "--token", "tenant-one-token-0123"]),
            "tenant set" => return Some(vec!["--tenant", "1", "--max-live", "10"]),
            "tenant suspend" | "tenant resume" | "tenant show" => {
                return Some(vec!["--tenant", "1"])
            }
            "tenant list" => return Some(Vec::new()),
            "block add" | "block remove" => return Some(vec!["--caller", "13800000009"]),
            "pool add" => {
                return Some(vec![
                    "--tenant",
                    "1",
                    "--range",
                    "700000000000900-700000000000999",
                    "--area",
                    "010",
                ])
            }
            "pool show" => return Some(vec!["--tenant", "1"]),
            "trace" => return Some(vec!["--tenant", "1", "--order", "b1"]),
            "pool remove" => {
                return Some(vec![
                    "--tenant",
                    "1",
                    "--range",
                    "700000000000900-700000000000999",
                ])
            }
            "bench" => {
                return Some(vec![
                    "--requests",
                    "20",
                    "--warmup-s",
                    "0",
                    "--hit-ratio",
                    "0",
                    "--quiet",
                ])
            }
            _ => return None,
        };
        Some(binding.iter().copied().chain(extra).collect())
    };

    let all = commands(&[]);
    assert!(all.len() >= 10, "{all:?}");
    let mut offered = Vec::new();
    for path in &all {
        let name = path.join(" ");
        let mut help_args: Vec<&str> = path.iter().map(String::as_str).collect();
        help_args.push("--help");
        let help = x700(&help_args);
        assert_eq!(help.code, 0, "{name}: {}", help.text());
        if !String::from_utf8_lossy(&help.stdout).contains("--server") {
            continue;
        }
        offered.push(name.clone());
        let Some(extra) = arguments(&name) else {
            panic!("`x700 {name} --help` offers --server: give it arguments in this test");
        };
        let mut args: Vec<&str> = path.iter().map(String::as_str).collect();
        args.extend(["--server", &server]);
        args.extend(extra);
        let ran = x700(&args);
        let said = ran.text();
        assert!(!said.contains(OFFLINE_ONLY), "x700 {name} --server: {said}");
        if ["cluster init", "cluster add-node", "cluster remove-node"].contains(&name.as_str()) {
            assert_eq!(ran.code, 1, "x700 {name} --server: {said}");
            assert!(said.contains("--raft"), "x700 {name} --server: {said}");
            continue;
        }
        assert_eq!(ran.code, 0, "x700 {name} --server: {said}");
    }
    for name in ["bind axb", "lookup", "query", "load", "stats", "bench"] {
        assert!(offered.iter().any(|o| o == name), "{name} in {offered:?}");
    }
    for name in ["check", "demo", "serve"] {
        assert!(!offered.iter().any(|o| o == name), "{name} in {offered:?}");
    }
    assert!(node.stop().success());
}
