//! Proves the step-9 bench client and key shapes against a real `x700
//! serve`: `x700 load --pairs-per-x N` then `x700 bench --pairs-per-x N`
//! (both I/O loops, several threads, uniform and zipfian keys) get every
//! lookup answered right; one X then holds N bindings, each routing its own
//! caller; a bench with another N than the load's is caught (the flag
//! really changes the keys); the default keeps the key set of earlier
//! releases (pinned digits); out-of-range N and `--io` values are refused
//! with a clear message; `--threads` splits connections on both loops and
//! the report carries the client's CPU; a node killed mid-run ends the run
//! with its connections counted lost on both loops. Loopback only; every
//! run bounded by --requests or a deadline.

mod common;

use common::Node;
use serde_json::Value;
use std::process::Command;
use x700::binding::{LookupQuery, LookupResult};
use x700::client::Client;
use x700::number::Number;
use x700::protocol::Role;
use x700::synth::Synthetic;

/// Runs `x700 ARGS`; returns the exit code, stdout and stderr.
fn x700(args: &[&str]) -> (i32, String, String) {
    let output = Command::new(common::binary())
        .args(args)
        .output()
        .expect("run x700");
    (
        output.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

/// Runs `x700 bench ARGS --json FILE --quiet`; returns the exit code and
/// the report.
fn bench(args: &[&str]) -> (i32, Value) {
    let dir = tempfile::tempdir().expect("temporary directory");
    let json = dir.path().join("report.json");
    let json_text = json.to_string_lossy().into_owned();
    let mut all = vec!["bench"];
    all.extend_from_slice(args);
    all.extend_from_slice(&["--json", &json_text, "--quiet"]);
    let (code, stdout, stderr) = x700(&all);
    let text = std::fs::read_to_string(&json)
        .unwrap_or_else(|_| panic!("no report; stdout: {stdout}\nstderr: {stderr}"));
    (
        code,
        serde_json::from_str(&text).expect("the report is JSON"),
    )
}

fn load_over_wire(node: &Node, bindings: u64, pairs_per_x: u64) {
    let (code, stdout, stderr) = x700(&[
        "load",
        "--server",
        &node.tcp.to_string(),
        "--bindings",
        &bindings.to_string(),
        "--pairs-per-x",
        &pairs_per_x.to_string(),
        "--quiet",
        "--json",
    ]);
    assert_eq!(code, 0, "{stdout}{stderr}");
    let report: Value = serde_json::from_str(&stdout).expect("load JSON");
    assert_eq!(report["created"], bindings, "{report}");
    assert_eq!(report["conflicts"], 0, "{report}");
}

fn callee(client: &mut Client, caller: Number, x: Number) -> Option<Number> {
    let query = LookupQuery {
        caller,
        x,
        extension: Number::NONE,
    };
    match client.lookup(&query).expect("lookup") {
        LookupResult::Route(route) => Some(route.callee),
        LookupResult::Reject(_) => None,
    }
}

#[test]
fn pairs_per_x_load_and_bench_agree_and_one_x_holds_n_bindings() {
    const PAIRS: u64 = 40;
    const BINDINGS: u64 = 400;
    let node = Node::start(&["--shards", "2"]);
    load_over_wire(&node, BINDINGS, PAIRS);

    // Group 0's X holds all 40 pairs: each A reaches its own B, each B
    // its own A, and group 1 has another X.
    let synthetic = Synthetic { seed: 1 };
    let mut client = Client::connect(node.tcp, Role::Admin, "").expect("connect");
    let x = synthetic.pooled(0, PAIRS).x;
    for i in 0..PAIRS {
        let binding = synthetic.pooled(i, PAIRS);
        assert_eq!(binding.x, x);
        assert_eq!(
            callee(&mut client, binding.a, x),
            Some(binding.b),
            "pair {i}"
        );
        assert_eq!(
            callee(&mut client, binding.b, x),
            Some(binding.a),
            "pair {i}"
        );
    }
    assert_ne!(synthetic.pooled(PAIRS, PAIRS).x, x);

    let address = node.tcp.to_string();
    let common = [
        "--server",
        &address,
        "--bindings",
        "400",
        "--pairs-per-x",
        "40",
        "--requests",
        "2000",
        "--warmup-s",
        "0",
        "--connections",
        "6",
        "--pipeline",
        "8",
    ];
    for extra in [
        &["--io", "uring", "--threads", "2"][..],
        &["--io", "epoll", "--threads", "3"][..],
        &["--keys", "zipfian", "--threads", "1"][..],
    ] {
        let mut args = common.to_vec();
        args.extend_from_slice(extra);
        let (code, report) = bench(&args);
        assert_eq!(code, 0, "{extra:?}: {report}");
        assert_eq!(report["requests_ok"], 2000, "{extra:?}: {report}");
        assert_eq!(report["wrong_answers"], 0, "{extra:?}: {report}");
        assert_eq!(
            report["latency_us_by_op"]["lookup"]["by_status"]["ok"], 2000,
            "{extra:?}: {report}"
        );
        assert_eq!(report["parameters"]["pairs_per_x"], 40, "{report}");
    }

    // A bench that assumes one pair per X asks for keys the load never
    // made: caught as failures, exit 1.
    let mut args = common.to_vec();
    args[5] = "1";
    let (code, report) = bench(&args);
    assert_eq!(code, 1, "{report}");
    assert!(
        report["requests_failed"].as_u64().unwrap_or(0) > 1900,
        "{report}"
    );
    node.stop();
}

/// Guards the default key set: `x700 load` without `--pairs-per-x` (and
/// with 1) binds exactly the bindings earlier releases bound (digits
/// computed by the step-8 build), so a node loaded then still answers the
/// bench's lookups now.
#[test]
fn the_default_keeps_the_old_key_set() {
    for flags in [&[][..], &["--pairs-per-x", "1"][..]] {
        let dir = tempfile::tempdir().expect("temporary directory");
        let data = dir.path().join("data");
        let data_text = data.to_string_lossy().into_owned();
        let mut args = vec!["load", "--data", &data_text, "--bindings", "2", "--quiet"];
        args.extend_from_slice(flags);
        let (code, stdout, stderr) = x700(&args);
        assert_eq!(code, 0, "{stdout}{stderr}");
        for (caller, called, expected) in [
            ("13066428519", "700379200822465", "15282890590"),
            ("15239393410", "700248184931039", "13026977078"),
        ] {
            let (code, stdout, stderr) = x700(&[
                "lookup", "--data", &data_text, "--caller", caller, "--called", called, "--json",
            ]);
            assert_eq!(code, 0, "{flags:?}: {stdout}{stderr}");
            let answer: Value = serde_json::from_str(&stdout).expect("lookup JSON");
            assert_eq!(answer["callee"], expected, "{flags:?}: {answer}");
        }
    }
}

#[test]
fn out_of_range_values_are_refused_with_a_clear_message() {
    for n in ["0", "201"] {
        let (code, _, stderr) = x700(&[
            "load",
            "--data",
            "/nonexistent/never-made",
            "--bindings",
            "1",
            "--pairs-per-x",
            n,
        ]);
        assert_eq!(code, 2, "{stderr}");
        assert!(
            stderr.contains("--pairs-per-x") && stderr.contains("1..=200"),
            "{stderr}"
        );
        let (code, _, stderr) = x700(&[
            "bench",
            "--server",
            "127.0.0.1:9",
            "--pairs-per-x",
            n,
            "--requests",
            "1",
        ]);
        assert_eq!(code, 2, "{stderr}");
        assert!(
            stderr.contains("--pairs-per-x") && stderr.contains("1..=200"),
            "{stderr}"
        );
    }
    let (code, stdout, stderr) = x700(&[
        "bench",
        "--server",
        "127.0.0.1:9",
        "--io",
        "poll",
        "--requests",
        "1",
    ]);
    assert_eq!(code, 2, "{stdout}{stderr}");
    assert!(
        format!("{stdout}{stderr}").contains("uring or epoll"),
        "{stdout}{stderr}"
    );
}

#[test]
fn threads_split_the_connections_and_report_the_client_cpu() {
    let node = Node::start(&[]);
    let address = node.tcp.to_string();
    for io in ["uring", "epoll"] {
        let (code, report) = bench(&[
            "--server",
            &address,
            "--preload",
            "300",
            "--requests",
            "3000",
            "--warmup-s",
            "0",
            "--connections",
            "8",
            "--pipeline",
            "4",
            "--threads",
            "3",
            "--io",
            io,
        ]);
        assert_eq!(code, 0, "{io}: {report}");
        assert_eq!(report["requests_ok"], 3000, "{io}: {report}");
        assert_eq!(report["client_cpu"]["threads"], 3, "{io}: {report}");
        assert!(
            report["client_cpu_s"].as_f64().unwrap_or(0.0) > 0.0,
            "{report}"
        );
        assert!(
            report["client_cpu_us_per_request"].as_f64().unwrap_or(0.0) > 0.0,
            "{report}"
        );
        // Every measured request is answered once, whatever thread drove it.
        assert_eq!(report["client_cpu"]["answers_all"], 3000, "{io}: {report}");
        assert_eq!(report["parameters"]["io"], io, "{report}");
    }
    // Open loop on both loops: every answer right.
    for io in ["uring", "epoll"] {
        let (code, report) = bench(&[
            "--server",
            &address,
            "--bindings",
            "300",
            "--rate",
            "4000",
            "--requests",
            "2000",
            "--warmup-s",
            "0",
            "--connections",
            "16",
            "--pipeline",
            "4",
            "--threads",
            "2",
            "--io",
            io,
        ]);
        assert_eq!(code, 0, "{io}: {report}");
        assert_eq!(report["mode"], "open", "{io}: {report}");
        assert_eq!(report["requests_ok"], 2000, "{io}: {report}");
    }
    node.stop();
}

/// A node killed mid-run: on either loop the client counts the lost
/// connections and exits 1 with its report, well before the run's end
/// (io_uring: the receives in flight complete and are reaped before the
/// buffers they write into are freed).
#[test]
fn a_node_killed_mid_run_ends_the_run_with_connection_errors() {
    for io in ["uring", "epoll"] {
        let node = Node::start(&[]);
        let address = node.tcp.to_string();
        let dir = tempfile::tempdir().expect("temporary directory");
        let json = dir.path().join("report.json");
        let mut child = Command::new(common::binary())
            .args([
                "bench",
                "--server",
                &address,
                "--hit-ratio",
                "0",
                "--duration-s",
                "30",
                "--warmup-s",
                "0",
                "--connections",
                "8",
                "--pipeline",
                "4",
                "--io",
                io,
                "--quiet",
                "--json",
            ])
            .arg(&json)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("start x700 bench");
        std::thread::sleep(std::time::Duration::from_millis(700));
        let started = std::time::Instant::now();
        node.kill();
        let deadline = started + std::time::Duration::from_secs(15);
        let status = loop {
            if let Some(status) = child.try_wait().expect("wait") {
                break status;
            }
            if std::time::Instant::now() > deadline {
                let _ = child.kill();
                panic!("{io}: x700 bench still running 15 s after its node died");
            }
            std::thread::sleep(std::time::Duration::from_millis(20));
        };
        assert_eq!(status.code(), Some(1), "{io}");
        let report: Value =
            serde_json::from_str(&std::fs::read_to_string(&json).expect("report")).expect("JSON");
        assert_eq!(report["connection_errors"], 8, "{io}: {report}");
        assert!(
            report["requests_ok"].as_u64().unwrap_or(0) > 0,
            "{io}: {report}"
        );
    }
}
