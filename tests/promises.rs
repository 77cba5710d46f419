//! Proves, against a real `x700 serve`, the promises of PROTOCOL.md that an
//! outside review found broken (step 5): read-your-writes on a connection,
//! answers before a half-close, the order of checks, and the start-up
//! refusals, tokens and logs of OPERATIONS.md. Each test names the bug it
//! guards; `X700_TEST_BINARY=old/x700` runs them against an older build.

mod common;

use common::{
    ask, axb, frame, hello_frame, real, serve_expecting_exit, x, xs_over_loops, Ending, Node, Raw,
    GARBAGE_NUMBER,
};
use x700::binding::{Direction, LookupResult, Reject, Update};
use x700::number::Number;
use x700::protocol::codec::{self, BindBody, UnbindBody};
use x700::protocol::frame::Header;
use x700::protocol::{opcode, status, Role, VERSION};

/// Reads `count` answers; returns them in arrival order.
fn answers(raw: &mut Raw, count: usize) -> Vec<(Header, Vec<u8>)> {
    (0..count).map(|_| raw.expect_frame()).collect()
}

fn position(frames: &[(Header, Vec<u8>)], request_id: u32) -> usize {
    frames
        .iter()
        .position(|(h, _)| h.request_id == request_id)
        .unwrap_or_else(|| panic!("no answer to request {request_id}"))
}

fn lookup_result(frames: &[(Header, Vec<u8>)], request_id: u32) -> LookupResult {
    let (header, body) = &frames[position(frames, request_id)];
    codec::decode_lookup_answer(header, body)
        .unwrap_or_else(|code| panic!("lookup {request_id}: {}", status::name(code)))
}

/// One round on one connection, each pair in one `send`: BIND then LOOKUP,
/// UPDATE (direction A to B only) then LOOKUP by B, UNBIND by id then QUERY
/// and LOOKUP. Every read must see the write before it.
fn read_your_writes_round(raw: &mut Raw, xn: Number, round: u32) {
    let a = "13800000001";
    let b = "13900000002";
    let base = round * 10;

    let mut out = Vec::new();
    codec::encode_bind(&mut out, base, &axb(xn, a, b, &format!("ryw-{round}")));
    codec::encode_lookup(&mut out, base + 1, &ask(a, xn), true);
    raw.send(&out);
    let got = answers(raw, 2);
    let (bind_header, bind_body) = &got[position(&got, base)];
    assert_eq!(bind_header.status, status::OK, "bind of round {round}");
    let (id, _, _) = codec::decode_bind_answer(bind_body).expect("bind answer");
    match lookup_result(&got, base + 1) {
        LookupResult::Route(route) => assert_eq!(route.callee, real(b), "round {round}"),
        other => panic!("round {round}: a lookup pipelined after its bind answered {other:?}"),
    }
    assert!(
        position(&got, base) < position(&got, base + 1),
        "round {round}: the lookup was answered before the bind it must see"
    );

    out.clear();
    let update = Update {
        direction: Some(Direction::AToB),
        ..Update::default()
    };
    codec::encode_update(&mut out, base + 2, id, &update);
    codec::encode_lookup(&mut out, base + 3, &ask(b, xn), true);
    raw.send(&out);
    let got = answers(raw, 2);
    assert_eq!(got[position(&got, base + 2)].0.status, status::OK);
    assert_eq!(
        lookup_result(&got, base + 3),
        LookupResult::Reject(Reject::DirectionDenied),
        "round {round}: a lookup pipelined after an UPDATE of the direction routed the old way"
    );

    out.clear();
    codec::encode_unbind(&mut out, base + 4, &UnbindBody::Id(id));
    codec::encode_query(&mut out, base + 5, id);
    codec::encode_lookup(&mut out, base + 6, &ask(a, xn), true);
    raw.send(&out);
    let got = answers(raw, 3);
    assert_eq!(got[position(&got, base + 4)].0.status, status::OK);
    assert_eq!(
        got[position(&got, base + 5)].0.status,
        status::NOT_FOUND,
        "round {round}: a QUERY pipelined after an UNBIND still found the binding"
    );
    assert_eq!(
        lookup_result(&got, base + 6),
        LookupResult::Reject(Reject::NotBound),
        "round {round}: a lookup pipelined after an UNBIND still routed"
    );
}

/// Guards the bug where a LOOKUP or QUERY pipelined after a write on the
/// same connection was answered from the state before that write (PROTOCOL.md
/// section 10). Two event loops, two connections (one per loop), X numbers
/// on both loops: the read and the write meet on any core.
#[test]
fn a_connection_reads_its_own_writes_on_any_core() {
    let node = Node::start(&["--shards", "2"]);
    let xs = xs_over_loops(&node, 30, 100_000);
    let mut sessions = [
        Raw::session(node.tcp, Role::Admin, ""),
        Raw::session(node.tcp, Role::Admin, ""),
    ];
    for (round, &xn) in (0u32..).zip(xs.iter()) {
        let raw = &mut sessions[round as usize % 2];
        read_your_writes_round(raw, xn, round);
    }
    assert!(node.stop().success());
}

/// A read held behind a write does not hold reads on other connections:
/// a switch's lookups are answered while a platform's write waits.
#[test]
fn only_the_writing_connection_waits() {
    let node = Node::start(&["--shards", "2"]);
    let xs = xs_over_loops(&node, 2, 110_000);
    let mut platform = Raw::session(node.tcp, Role::Admin, "");
    let mut switch = Raw::session(node.tcp, Role::Switch, "");
    let mut out = Vec::new();
    for (i, &xn) in (0u32..).zip(xs.iter()) {
        codec::encode_bind(&mut out, i, &axb(xn, "13800000001", "13900000002", "w"));
    }
    platform.send(&out);
    for (header, _) in answers(&mut platform, xs.len()) {
        assert_eq!(header.status, status::OK);
    }
    // Many lookups on the switch connection, interleaved with writes and
    // reads on the platform's: the switch's answers all come, each right.
    for round in 0..50u32 {
        let xn = xs[round as usize % xs.len()];
        out.clear();
        codec::encode_bind(
            &mut out,
            1000 + round,
            &axb(xn, "13800000001", "13900000002", "w"),
        );
        codec::encode_lookup(&mut out, 2000 + round, &ask("13900000002", xn), true);
        platform.send(&out);
        out.clear();
        for i in 0..16 {
            codec::encode_lookup(&mut out, round * 16 + i, &ask("13800000001", xn), true);
        }
        switch.send(&out);
        for (header, body) in answers(&mut switch, 16) {
            match codec::decode_lookup_answer(&header, &body) {
                Ok(LookupResult::Route(route)) => assert_eq!(route.callee, real("13900000002")),
                other => panic!("switch lookup: {other:?}"),
            }
        }
        let got = answers(&mut platform, 2);
        assert!(matches!(
            lookup_result(&got, 2000 + round),
            LookupResult::Route(_)
        ));
    }
    assert!(node.stop().success());
}

/// Guards the bug where a client that sent HELLO and requests and then
/// `shutdown(SHUT_WR)` got no answer at all (the bind was still executed).
#[test]
fn requests_read_before_a_half_close_are_answered() {
    let node = Node::start(&["--shards", "2"]);
    let xs = xs_over_loops(&node, 10, 120_000);
    for (round, &xn) in (0u32..).zip(xs.iter()) {
        let mut raw = Raw::connect(node.tcp);
        let mut out = hello_frame(1, VERSION, Role::Admin, "");
        codec::encode_bind(&mut out, 2, &axb(xn, "13800000001", "13900000002", "half"));
        codec::encode_lookup(&mut out, 3, &ask("13800000001", xn), true);
        out.extend(frame(opcode::PING, 4, &[]));
        codec::encode_lookup(&mut out, 5, &ask("13700000000", x(999_999)), true);
        raw.send(&out);
        raw.shutdown_write();
        let (frames, ending) = raw.until_end();
        let mut ids: Vec<u32> = frames.iter().map(|(h, _)| h.request_id).collect();
        ids.sort_unstable();
        assert_eq!(
            ids,
            [1, 2, 3, 4, 5],
            "round {round}: answers before the FIN"
        );
        assert!(frames.iter().all(|(h, _)| h.status <= status::NOT_BOUND));
        assert_eq!(
            ending,
            Ending::Closed,
            "round {round}: then the node closes"
        );
    }
    assert!(node.stop().success());
}

const PLATFORM_TOKEN: &str = "platform-token-0123456789";
const SWITCH_CREDENTIAL: &str = "switch:switch-token-0123456789";

/// Guards the bug where a platform binding for a tenant it does not hold,
/// with a malformed X, learned `bad_number` instead of `unauthorised`
/// (PROTOCOL.md section 11: the role and tenant checks come first).
#[test]
fn tenant_is_checked_before_numbers() {
    let credential = format!("platform:{PLATFORM_TOKEN}:1");
    let node = Node::start(&["--shards", "1", "--credential", &credential]);
    let mut raw = Raw::session(node.tcp, Role::Platform, PLATFORM_TOKEN);
    let foreign = BindBody {
        tenant: 2,
        x: GARBAGE_NUMBER,
        ..axb(x(1), "13800000001", "13900000002", "o")
    };
    let mut out = Vec::new();
    codec::encode_bind(&mut out, 7, &foreign);
    raw.send(&out);
    let (header, _) = raw.expect_frame();
    assert_eq!(
        status::name(header.status),
        "unauthorised",
        "a bind for another tenant with a malformed X"
    );
    // Its own tenant with the same malformed X: bad_number, as before.
    out.clear();
    codec::encode_bind(
        &mut out,
        8,
        &BindBody {
            tenant: 1,
            ..foreign
        },
    );
    raw.send(&out);
    assert_eq!(status::name(raw.expect_frame().0.status), "bad_number");
    assert!(node.stop().success());
}

/// Runs `x700 serve` on loopback expecting it to refuse to start.
fn refused_start(args: &[&str]) -> (Option<i32>, String) {
    let mut all = vec!["--listen", "127.0.0.1:0"];
    all.extend_from_slice(args);
    serve_expecting_exit(&all)
}

/// Guards `--max-frame-bytes 64`, which started a node unable to read a
/// BIND, and configuration errors that exited 1 instead of 2 (usage).
#[test]
fn invalid_configurations_exit_2_with_a_reason() {
    let (code, stderr) = refused_start(&["--max-frame-bytes", "64"]);
    assert_eq!(code, Some(2), "{stderr}");
    assert!(stderr.contains("80"), "names the smallest limit: {stderr}");
    let (code, stderr) = refused_start(&["--max-connections", "100000000"]);
    assert_eq!(code, Some(2), "{stderr}");
    assert!(stderr.contains("open-file limit"), "{stderr}");
    let (code, stderr) = refused_start(&["--credential", "switch:short"]);
    assert_eq!(code, Some(2), "a 5-byte token: {stderr}");
    assert!(stderr.contains("16"), "{stderr}");
}

/// Short tokens work only when asked for; the start-up line says the
/// open-file limit.
#[test]
fn short_tokens_need_allow_short_tokens() {
    let node = Node::start(&["--credential", "switch:sw", "--allow-short-tokens"]);
    let _switch = Raw::session(node.tcp, Role::Switch, "sw");
    assert!(node.stop().success());
}

/// A configuration file holding tokens that others can read is warned
/// about at start.
#[test]
fn a_config_file_readable_by_others_is_warned_about() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("x700.toml");
    std::fs::write(
        &path,
        format!(
            "[[credentials]]\ntoken = \"{PLATFORM_TOKEN}\"\nrole = \"platform\"\ntenants = [1]\n"
        ),
    )
    .expect("write config");
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).expect("chmod");
    let config = path.display().to_string();
    // The smoke check of `Node::start` uses the first --credential.
    let node = Node::start(&["--credential", SWITCH_CREDENTIAL, "--config", &config]);
    node.terminate();
    let stopped = node.wait_exit();
    assert!(
        stopped.stderr.contains("readable by others"),
        "stderr: {}",
        stopped.stderr
    );

    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).expect("chmod");
    // The smoke check of `Node::start` uses the first --credential.
    let node = Node::start(&["--credential", SWITCH_CREDENTIAL, "--config", &config]);
    node.terminate();
    let stopped = node.wait_exit();
    assert!(
        !stopped.stderr.contains("readable by others"),
        "{}",
        stopped.stderr
    );
}

/// A refused HELLO is logged with the peer's address, a few lines a second
/// at most, with a count of the ones left out.
#[test]
fn refused_hellos_are_logged_with_the_peer_rate_limited() {
    let credential = format!("platform:{PLATFORM_TOKEN}:1");
    let node = Node::start(&["--shards", "1", "--credential", &credential]);
    for _ in 0..60 {
        let mut raw = Raw::connect(node.tcp);
        raw.send(&hello_frame(
            1,
            VERSION,
            Role::Platform,
            "not-the-token-at-all",
        ));
        let (header, _) = raw.expect_frame();
        assert_eq!(header.status, status::UNAUTHORISED);
    }
    node.terminate();
    let stopped = node.wait_exit();
    let lines: Vec<&str> = stopped
        .stderr
        .lines()
        .filter(|l| l.contains("refused HELLO"))
        .collect();
    assert!(!lines.is_empty(), "stderr: {}", stopped.stderr);
    assert!(
        lines[0].contains("127.0.0.1:"),
        "names the peer: {}",
        lines[0]
    );
    assert!(
        lines.len() < 40,
        "60 refusals in about a second wrote {} lines",
        lines.len()
    );
}

/// Guards protected mode refusing `::ffff:127.0.0.1`, the address an IPv4
/// loopback client has on a `[::]` listener.
#[test]
fn protected_mode_admits_mapped_ipv4_loopback() {
    let node = Node::start(&["--listen", "[::]:0"]);
    let port = node.tcp.port();
    let address: std::net::SocketAddr = ([127, 0, 0, 1], port).into();
    let mut raw = Raw::connect(address);
    raw.send(&hello_frame(1, VERSION, Role::Admin, ""));
    let (header, _) = raw.expect_frame();
    assert_eq!(
        status::name(header.status),
        "ok",
        "HELLO over ::ffff:127.0.0.1"
    );
    drop(raw);
    assert!(node.stop().success());
}
