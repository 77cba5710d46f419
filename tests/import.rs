//! Proves `x700 import` keeps its documented semantics, by running the real
//! binary against a real `x700 serve` (and offline on a data directory):
//! a valid file is imported and every row routes; a file with bad rows
//! imports nothing and names each bad line; a row refused in batch 2 of 3
//! leaves batch 1 in, undoes batch 2 (its other rows stop routing) and
//! never sends batch 3, and `--resume` finishes once the blocker is gone;
//! the undoing removes only what the batch created (a row already present,
//! as a crashed import leaves it, stays) and a resume completes such a
//! partial batch; rows for a tenant the credential may not bind for are
//! refused; quoted fields and CRLF line ends are read as written; offline
//! `--data` binds into a directory a node then serves. Every command runs
//! with a deadline; nodes listen on loopback only.

mod common;

use common::{axb, callee, real, x, Node, CREDENTIALS, P1_TOKEN, SWITCH_TOKEN};
use serde_json::Value;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};
use x700::binding::LookupQuery;
use x700::client::Client;
use x700::number::Number;
use x700::protocol::{status, Role, UnbindBody};

/// Longest a single `x700` command may take here.
const COMMAND_TIMEOUT: Duration = Duration::from_secs(60);

/// Runs `x700 ARGS` (killed after `COMMAND_TIMEOUT`): exit code and the
/// one JSON object it printed.
fn x700(args: &[&str]) -> (i32, Value) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_x700"))
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
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
    let output = child.wait_with_output().expect("x700 output");
    let text = String::from_utf8_lossy(&output.stdout);
    let json = serde_json::from_str(&text).unwrap_or_else(|e| {
        panic!(
            "x700 {args:?}: not one JSON object ({e}): {text}; stderr: {}",
            String::from_utf8_lossy(&output.stderr)
        )
    });
    (output.status.code().unwrap_or(-1), json)
}

/// `x700 import --tenant 1 FILE --json` against `node` as platform 1, with
/// `extra` flags.
fn import(node: &Node, file: &Path, extra: &[&str]) -> (i32, Value) {
    let server = node.tcp.to_string();
    let file = file.to_str().expect("UTF-8 path");
    let mut args = vec![
        "import", "--tenant", "1", file, "--server", &server, "--token", P1_TOKEN, "--json",
    ];
    args.extend_from_slice(extra);
    x700(&args)
}

/// An AXB row of the files here: X number `n`, A and B derived from it.
struct Pair {
    x: Number,
    a: String,
    b: String,
}

fn pair(n: u64) -> Pair {
    Pair {
        x: x(n),
        a: format!("1380000{n:04}"),
        b: format!("1390000{n:04}"),
    }
}

/// A file of AXB rows for `pairs`, header first.
fn axb_file(dir: &Path, name: &str, pairs: &[Pair]) -> std::path::PathBuf {
    let mut text = String::from("x,a,b,order,ttl_s\n");
    for (i, p) in pairs.iter().enumerate() {
        text.push_str(&format!("{},{},{},order-{i},600\n", p.x.digits(), p.a, p.b));
    }
    let path = dir.join(name);
    std::fs::write(&path, text).expect("write the CSV file");
    path
}

fn switch(node: &Node) -> Client {
    Client::connect(node.tcp, Role::Switch, SWITCH_TOKEN).expect("switch session")
}

/// Where a call from `caller` to `x` goes: the callee's digits, or
/// `reject:<reason>`.
fn route(client: &mut Client, caller: &str, x: Number) -> String {
    let query = LookupQuery {
        caller: real(caller),
        x,
        extension: Number::NONE,
    };
    callee(&client.lookup(&query).expect("lookup"))
}

fn routes(client: &mut Client, p: &Pair) -> bool {
    route(client, &p.a, p.x) == p.b
}

fn lines(json: &Value) -> Vec<u64> {
    json["rejected"]
        .as_array()
        .expect("rejected is a list")
        .iter()
        .map(|row| row["line"].as_u64().expect("line"))
        .collect()
}

#[test]
fn a_valid_file_is_imported_every_row_routes_and_a_second_import_finds_them_present() {
    let node = Node::start(&CREDENTIALS);
    let dir = tempfile::tempdir().expect("temporary directory");
    let pairs: Vec<Pair> = (1..=5).map(pair).collect();
    let file = axb_file(dir.path(), "valid.csv", &pairs);
    let (code, json) = import(&node, &file, &["--batch", "2"]);
    assert_eq!(code, 0, "{json}");
    assert_eq!(json["status"], "ok", "{json}");
    assert_eq!(json["rows"], 5);
    assert_eq!(json["batches"], 3);
    assert_eq!(json["batches_done"], 3);
    assert_eq!(json["created"], 5);
    assert_eq!(json["present"], 0);
    assert_eq!(json["resume_from_line"], Value::Null);
    assert_eq!(lines(&json), Vec::<u64>::new());
    let mut switch = switch(&node);
    for p in &pairs {
        assert!(routes(&mut switch, p), "{} does not route", p.x.digits());
        assert_eq!(route(&mut switch, &p.b, p.x), p.a);
    }
    // Binds are idempotent: the same file again changes nothing.
    let (code, json) = import(&node, &file, &[]);
    assert_eq!(code, 0, "{json}");
    assert_eq!(
        (json["created"].as_u64(), json["present"].as_u64()),
        (Some(0), Some(5))
    );
}

#[test]
fn a_file_with_bad_rows_imports_nothing_and_lists_each_bad_line() {
    let node = Node::start(&CREDENTIALS);
    let dir = tempfile::tempdir().expect("temporary directory");
    let (good, other) = (pair(11), pair(12));
    let text = format!(
        "x,a,b,order,ttl_s,expires_at\n\
         {x1},{a1},{b1},o1,600,\n\
         {x2},{a2},1390000abc,o2,600,\n\
         {x2},{a2},{b2},o3,600,\n\
         {x2},{a2},{b2},o4,,1000000000\n\
         {x1},{a1},{b2},o5,600,\n",
        x1 = good.x.digits(),
        a1 = good.a,
        b1 = good.b,
        x2 = other.x.digits(),
        a2 = other.a,
        b2 = other.b,
    );
    let file = dir.path().join("bad.csv");
    std::fs::write(&file, text).expect("write the CSV file");
    let (code, json) = import(&node, &file, &[]);
    assert_eq!(code, 1, "{json}");
    assert_eq!(json["status"], "invalid", "{json}");
    assert_eq!(json["rows"], 5);
    assert_eq!(json["created"], 0);
    // Line 3: B is no number; line 5: expired long ago; line 6: A on X
    // again (line 2 holds it). Line 4 is good: nothing claimed its place.
    assert_eq!(lines(&json), vec![3, 5, 6], "{json}");
    let rejected = json["rejected"].as_array().expect("list");
    assert_eq!(rejected[0]["column"], "b");
    assert_eq!(rejected[0]["status"], "bad_number");
    assert_eq!(rejected[1]["column"], "expires_at");
    assert_eq!(rejected[2]["status"], "duplicate");
    let mut switch = switch(&node);
    assert_eq!(route(&mut switch, &good.a, good.x), "reject:not_bound");
    assert_eq!(route(&mut switch, &other.a, other.x), "reject:not_bound");
}

#[test]
fn a_refused_row_in_batch_2_undoes_batch_2_skips_batch_3_and_resume_finishes() {
    let node = Node::start(&CREDENTIALS);
    let dir = tempfile::tempdir().expect("temporary directory");
    let pairs: Vec<Pair> = (21..=26).map(pair).collect();
    let file = axb_file(dir.path(), "migration.csv", &pairs);
    let report = dir.path().join("migration.report.json");
    let report_arg = report.to_str().expect("UTF-8 path");
    // A live binding holds row 4's A on its X (row 4 is on line 5).
    let mut platform = Client::connect(node.tcp, Role::Platform, P1_TOKEN).expect("platform");
    let blocker = platform
        .bind(&axb(pairs[3].x, &pairs[3].a, "13700000001", "blocker"))
        .expect("bind the blocker");
    assert_eq!(blocker.status, status::OK);

    let (code, json) = import(&node, &file, &["--batch", "2", "--report", report_arg]);
    assert_eq!(code, 1, "{json}");
    assert_eq!(json["status"], "refused", "{json}");
    assert_eq!(json["batches"], 3);
    assert_eq!(json["batches_done"], 1);
    assert_eq!(json["created"], 2);
    assert_eq!(json["resume_from_line"], 4);
    assert_eq!(lines(&json), vec![5]);
    assert_eq!(json["rejected"][0]["status"], "conflict");
    assert_eq!(json["left_bound"], serde_json::json!([]));
    let mut switch = switch(&node);
    assert!(routes(&mut switch, &pairs[0]) && routes(&mut switch, &pairs[1]));
    // Row 3 was bound with batch 2, then unbound again; batch 3 never went.
    for p in &pairs[2..] {
        assert!(!routes(&mut switch, p), "{} routes", p.x.digits());
    }
    let written: Value =
        serde_json::from_str(&std::fs::read_to_string(&report).expect("report")).expect("JSON");
    assert_eq!(written["complete"], false);
    assert_eq!(written["rows_done"], 2);
    assert_eq!(written["resume_from_line"], 4);

    // Without --resume an existing report is not overwritten; another file
    // is refused by its SHA-256.
    let (code, json) = import(&node, &file, &["--report", report_arg]);
    assert_eq!(
        (code, json["status"].as_str()),
        (1, Some("bad_request")),
        "{json}"
    );
    let changed = axb_file(dir.path(), "changed.csv", &pairs[..5]);
    let (code, json) = import(&node, &changed, &["--report", report_arg, "--resume"]);
    assert_eq!(code, 1, "{json}");
    assert!(
        json["error"]
            .as_str()
            .unwrap_or("")
            .contains("another file"),
        "{json}"
    );

    let id = blocker.binding_id.expect("blocker id");
    let unbound = platform.unbind(&UnbindBody::Id(id)).expect("unbind");
    assert!(unbound.is_ok(), "{unbound:?}");
    let (code, json) = import(
        &node,
        &file,
        &["--batch", "2", "--report", report_arg, "--resume"],
    );
    assert_eq!(code, 0, "{json}");
    assert_eq!(json["status"], "ok", "{json}");
    assert_eq!(json["batches_done"], 3);
    assert_eq!(json["batches_this_run"], 2);
    assert_eq!(json["created"], 6);
    assert_eq!(json["resume_from_line"], Value::Null);
    for p in &pairs {
        assert!(routes(&mut switch, p), "{} does not route", p.x.digits());
    }
    let written: Value =
        serde_json::from_str(&std::fs::read_to_string(&report).expect("report")).expect("JSON");
    assert_eq!(written["complete"], true);
}

#[test]
fn quoted_fields_and_crlf_line_ends_are_read_as_written() {
    let node = Node::start(&CREDENTIALS);
    let dir = tempfile::tempdir().expect("temporary directory");
    let (p, owner) = (pair(31), pair(32));
    let text = format!(
        "\"mode\",order,x,a,b,ext,ttl_s,direction,recording\r\n\
         axb,\"order, \"\"quoted\"\"\",\"+86{x}\",{a},\"{b}\",,600,\"both\",0\r\n\
         axe,\"multi\r\nline\",{xe},{ae},,\"42\",600,,true\r\n",
        x = p.x.digits(),
        a = p.a,
        b = p.b,
        xe = owner.x.digits(),
        ae = owner.a,
    );
    let file = dir.path().join("quoted.csv");
    std::fs::write(&file, text).expect("write the CSV file");
    let (code, json) = import(&node, &file, &[]);
    assert_eq!(code, 0, "{json}");
    assert_eq!(json["created"], 2, "{json}");
    let mut switch = switch(&node);
    let query = LookupQuery {
        caller: real(&p.a),
        x: p.x,
        extension: Number::NONE,
    };
    let x700::binding::LookupResult::Route(found) = switch.lookup(&query).expect("lookup") else {
        panic!("the quoted row does not route");
    };
    let mut platform = Client::connect(node.tcp, Role::Platform, P1_TOKEN).expect("platform");
    let binding = platform
        .query(found.binding_id)
        .expect("query")
        .expect("bound");
    assert_eq!(binding.order.as_bytes(), b"order, \"quoted\"");
    let with_ext = LookupQuery {
        caller: real("13600000001"),
        x: owner.x,
        extension: common::ext("42"),
    };
    assert_eq!(callee(&switch.lookup(&with_ext).expect("lookup")), owner.a);
}

#[test]
fn offline_import_binds_into_a_data_directory() {
    let dir = tempfile::tempdir().expect("temporary directory");
    let data = dir.path().join("data");
    let pairs: Vec<Pair> = (41..=43).map(pair).collect();
    let file = axb_file(dir.path(), "offline.csv", &pairs);
    let data_arg = data.to_str().expect("UTF-8 path");
    let file_arg = file.to_str().expect("UTF-8 path");
    let (code, json) = x700(&[
        "import", "--tenant", "1", file_arg, "--data", data_arg, "--json",
    ]);
    assert_eq!(code, 0, "{json}");
    assert_eq!(json["created"], 3, "{json}");
    for p in &pairs {
        let called = p.x.digits();
        let (code, json) = x700(&[
            "lookup", "--data", data_arg, "--caller", &p.a, "--called", &called, "--json",
        ]);
        assert_eq!(code, 0, "{json}");
        assert_eq!(json["callee"], p.b.as_str(), "{json}");
    }
    // A stopped node started on the directory serves them too.
    let node = Node::start_on(&data, &CREDENTIALS);
    let mut switch = switch(&node);
    assert!(pairs.iter().all(|p| routes(&mut switch, p)));
}

#[test]
fn rows_for_a_tenant_the_credential_may_not_bind_for_are_refused_and_nothing_stays() {
    let node = Node::start(&CREDENTIALS);
    let dir = tempfile::tempdir().expect("temporary directory");
    let pairs: Vec<Pair> = (51..=53).map(pair).collect();
    let file = axb_file(dir.path(), "other-tenant.csv", &pairs);
    let server = node.tcp.to_string();
    let file_arg = file.to_str().expect("UTF-8 path");
    // Platform 1's credential may bind for tenant 1 only.
    let (code, json) = x700(&[
        "import", "--tenant", "2", file_arg, "--server", &server, "--token", P1_TOKEN, "--json",
    ]);
    assert_eq!(code, 1, "{json}");
    assert_eq!(json["status"], "refused", "{json}");
    assert_eq!(json["batches_done"], 0);
    assert_eq!(json["resume_from_line"], 2);
    assert_eq!(lines(&json), vec![2, 3, 4]);
    assert_eq!(json["rejected"][0]["status"], "unauthorised", "{json}");
    let mut switch = switch(&node);
    assert!(pairs.iter().all(|p| !routes(&mut switch, p)));
}

#[test]
fn rows_already_present_stay_when_their_batch_is_undone_and_resume_completes_a_partial_batch() {
    let node = Node::start(&CREDENTIALS);
    let dir = tempfile::tempdir().expect("temporary directory");
    let pairs: Vec<Pair> = (61..=64).map(pair).collect();
    let file = axb_file(dir.path(), "partial.csv", &pairs);
    let report = dir.path().join("partial.report.json");
    let report_arg = report.to_str().expect("UTF-8 path");
    // As a crashed import would have left it: row 3 (batch 2) bound
    // identically already. And a blocker on row 4's X.
    let mut platform = Client::connect(node.tcp, Role::Platform, P1_TOKEN).expect("platform");
    let earlier = platform
        .bind(&axb(pairs[2].x, &pairs[2].a, &pairs[2].b, "order-2"))
        .expect("bind row 3");
    assert_eq!(earlier.status, status::OK);
    let blocker = platform
        .bind(&axb(pairs[3].x, &pairs[3].a, "13700000002", "blocker"))
        .expect("bind the blocker");
    assert_eq!(blocker.status, status::OK);

    let (code, json) = import(&node, &file, &["--batch", "2", "--report", report_arg]);
    assert_eq!(
        (code, json["status"].as_str()),
        (1, Some("refused")),
        "{json}"
    );
    assert_eq!(lines(&json), vec![5]);
    // The compensation unbinds only what the batch created: row 3 was
    // there before it and stays.
    let mut switch = switch(&node);
    assert!(routes(&mut switch, &pairs[2]), "row 3 was unbound");

    let id = blocker.binding_id.expect("blocker id");
    assert!(platform
        .unbind(&UnbindBody::Id(id))
        .expect("unbind")
        .is_ok());
    let (code, json) = import(
        &node,
        &file,
        &["--batch", "2", "--report", report_arg, "--resume"],
    );
    assert_eq!(code, 0, "{json}");
    assert_eq!(json["created"], 3, "{json}");
    assert_eq!(json["present"], 1, "{json}");
    assert!(pairs.iter().all(|p| routes(&mut switch, p)));
}
