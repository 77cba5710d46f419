//! Proves the ENUM front-end (`x700 serve --enum`) with a real DNS client: `kdig` (Knot DNS's dig) asks a real node, over UDP and TCP, for the NAPTR records of AXN and AXE numbers (on both event loops), of unknown and AXB numbers (NXDOMAIN with the SOA), for the apex's SOA and NS, and gets a truncated UDP answer that it asks again over TCP; raw sockets send malformed packets (FORMERR, NOTIMP, silence, closed TCP connections); answers are counted by rcode in /metrics; only switch networks are answered; UDP queries obey the per-source rate. Random and mutated queries go through the check shared with the `enum_query` fuzz target (`fuzz/check_enum.rs`).

mod common;

use common::{axb, axe, axn, http_get, x, xs_over_loops, Node, IO_TIMEOUT};
use proptest::prelude::*;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream, UdpSocket};
use std::process::Command;
use std::time::Duration;
use x700::client::Client;
use x700::number::Number;
use x700::protocol::codec::BindBody;
use x700::protocol::Role;

include!("../fuzz/check_enum.rs");

/// The ENUM name of `digits` under the default suffix.
fn enum_name(digits: &str) -> String {
    let mut name: String = digits.chars().rev().flat_map(|c| [c, '.']).collect();
    name.push_str("6.8.e164.arpa.");
    name
}

/// Runs kdig against `server` with `args`; its whole output. Fails with a
/// clear message when kdig is missing (tools/test.sh installs it).
fn kdig(server: SocketAddr, args: &[&str]) -> String {
    let output = Command::new("kdig")
        .arg(format!("@{}", server.ip()))
        .arg("-p")
        .arg(server.port().to_string())
        .args(["+timeout=2", "+retry=0"])
        .args(args)
        .output()
        .unwrap_or_else(|e| {
            panic!("kdig (Debian package knot-dnsutils) is needed: {e}; tools/test.sh installs it")
        });
    String::from_utf8_lossy(&output.stdout).into_owned()
}

fn start(args: &[&str]) -> (Node, SocketAddr) {
    let mut all = vec!["--enum", "127.0.0.1:0"];
    all.extend_from_slice(args);
    let node = Node::start(&all);
    let address = node.enum_dns.expect("the serving line names enum=");
    (node, address)
}

fn bind(node: &Node, body: &BindBody) {
    let mut client = Client::connect(node.tcp, Role::Admin, "").expect("admin HELLO");
    let reply = client.bind(body).expect("bind answered");
    assert_eq!(
        reply.status,
        x700::protocol::status::OK,
        "bind {body:?}: {reply:?}"
    );
}

fn digits(number: Number) -> String {
    number.digits()
}

/// The NAPTR regexp kdig shows for a callee at the default host.
fn naptr_of(callee: &str) -> String {
    format!("100 10 \"u\" \"E2U+sip\" \"!^.*$!sip:{callee}@localhost!\" .")
}

#[test]
fn axn_and_axe_numbers_answer_their_owner_over_udp_and_tcp_on_every_loop() {
    let (node, server) = start(&["--event-loops", "2"]);
    let xs = xs_over_loops(&node, 1, 700_100_000_000);
    for (i, &x) in xs.iter().enumerate() {
        // The default callee is for A's own calls: ENUM's caller is never A.
        bind(
            &node,
            &axn(x, &format!("1380013800{i}"), Some("13900000009"), "o"),
        );
    }
    let shared = x(700_200_000_001);
    bind(&node, &axe(shared, "13500000001", "12", "o1"));
    bind(&node, &axe(shared, "13500000002", "0012", "o2"));
    for transport in ["+notcp", "+tcp"] {
        for (i, &x) in xs.iter().enumerate() {
            let answer = kdig(
                server,
                &[transport, "+short", "NAPTR", &enum_name(&digits(x))],
            );
            assert_eq!(
                answer.trim(),
                naptr_of(&format!("1380013800{i}")),
                "{transport}"
            );
        }
        for (extension, owner) in [("12", "13500000001"), ("0012", "13500000002")] {
            let name = enum_name(&format!("{}{extension}", digits(shared)));
            let answer = kdig(server, &[transport, "+short", "NAPTR", &name]);
            assert_eq!(
                answer.trim(),
                naptr_of(owner),
                "{transport} extension {extension}"
            );
        }
    }
    let full = kdig(server, &["NAPTR", &enum_name(&digits(xs[0]))]);
    assert!(full.contains("status: NOERROR"), "{full}");
    assert!(full.contains("Flags: qr aa rd"), "{full}");
}

#[test]
fn unknown_and_axb_numbers_are_nxdomain_with_the_soa() {
    let (node, server) = start(&[]);
    let pair = x(700_300_000_001);
    bind(&node, &axb(pair, "13700000001", "13700000002", "o"));
    let shared = x(700_300_000_002);
    bind(&node, &axe(shared, "13500000001", "12", "o"));
    for transport in ["+notcp", "+tcp"] {
        for name in [
            enum_name("700399999999999"),
            enum_name(&digits(pair)),
            // X of AXE bindings without an extension, and an extension no
            // binding holds.
            enum_name(&digits(shared)),
            enum_name(&format!("{}13", digits(shared))),
            // Digits no 700 number begins with.
            enum_name("13800138000"),
        ] {
            let answer = kdig(server, &[transport, "NAPTR", &name]);
            assert!(answer.contains("status: NXDOMAIN"), "{name}: {answer}");
            assert!(answer.contains("AUTHORITY: 1"), "{name}: {answer}");
            assert!(
                answer.contains("6.8.e164.arpa.")
                    && answer.contains("SOA\tlocalhost. hostmaster.localhost. 1 3600 600 604800 0"),
                "{name}: {answer}"
            );
        }
    }
    // The start of a number exists (empty non-terminal): NODATA.
    let answer = kdig(server, &["NAPTR", &enum_name("70030")]);
    assert!(
        answer.contains("status: NOERROR") && answer.contains("ANSWER: 0"),
        "{answer}"
    );
}

fn config_file(dir: &tempfile::TempDir, text: &str) -> String {
    let path = dir.path().join("node.toml");
    std::fs::write(&path, text).expect("write config");
    path.display().to_string()
}

#[test]
fn the_apex_answers_soa_and_ns_from_the_enum_table() {
    let dir = tempfile::tempdir().expect("temporary directory");
    let config = config_file(
        &dir,
        "[enum]\nlisten = \"127.0.0.1:0\"\nsuffix = \"enum.example.\"\nns = [\"ns1.example.\", \"ns2.example.\"]\nhostmaster = \"dns.example.\"\nserial = 2026113001\nnegative_ttl_s = 30\nhost = \"sbc.example\"\nttl_s = 60\n",
    );
    let node = Node::start(&["--config", &config]);
    let server = node.enum_dns.expect("enum address");
    for transport in ["+notcp", "+tcp"] {
        let soa = kdig(server, &[transport, "+short", "SOA", "enum.example."]);
        assert_eq!(
            soa.trim(),
            "ns1.example. dns.example. 2026113001 3600 600 604800 30"
        );
        let ns = kdig(server, &[transport, "+short", "NS", "enum.example."]);
        let mut names: Vec<&str> = ns.lines().collect();
        names.sort_unstable();
        assert_eq!(names, ["ns1.example.", "ns2.example."]);
    }
    let x = x(700_400_000_001);
    bind(&node, &axn(x, "13800000001", None, "o"));
    let name = format!("{}enum.example.", &enum_name(&digits(x))[..30]);
    let answer = kdig(server, &["NAPTR", &name]);
    assert!(
        answer.contains(
            "60\tIN\tNAPTR\t100 10 \"u\" \"E2U+sip\" \"!^.*$!sip:13800000001@sbc.example!\" ."
        ),
        "{answer}"
    );
    // Other zones are refused; other types at a number are NODATA.
    let refused = kdig(server, &["NAPTR", &enum_name(&digits(x))]);
    assert!(refused.contains("status: REFUSED"), "{refused}");
    let nodata = kdig(server, &["A", &name]);
    assert!(
        nodata.contains("status: NOERROR") && nodata.contains("ANSWER: 0"),
        "{nodata}"
    );
}

#[test]
fn a_truncated_udp_answer_is_asked_again_over_tcp() {
    let dir = tempfile::tempdir().expect("temporary directory");
    let names: Vec<String> = (0..12)
        .map(|i| format!("\"{}.ns{i}.example.\"", "n".repeat(60)))
        .collect();
    let config = config_file(
        &dir,
        "enum = \"127.0.0.1:0\"\n\n[limits]\nconnections_max = 100\n",
    );
    // The string form, then the table form with many long NS names.
    let node = Node::start(&["--config", &config]);
    assert!(node.enum_dns.is_some());
    drop(node);
    let config = config_file(
        &dir,
        &format!(
            "[enum]\nlisten = \"127.0.0.1:0\"\nns = [{}]\n",
            names.join(", ")
        ),
    );
    let node = Node::start(&["--config", &config]);
    let server = node.enum_dns.expect("enum address");
    let truncated = kdig(server, &["+ignore", "+noedns", "NS", "6.8.e164.arpa."]);
    assert!(truncated.contains("Flags: qr aa tc rd"), "{truncated}");
    assert!(truncated.contains("ANSWER: 0"), "{truncated}");
    let retried = kdig(server, &["+noedns", "NS", "6.8.e164.arpa."]);
    assert!(retried.contains("ANSWER: 12"), "{retried}");
    assert!(
        retried.contains("TCP"),
        "kdig says it asked over TCP: {retried}"
    );
}

/// A DNS query as bytes: `name` in wire form, type `qtype`, class IN.
fn raw_query(id: u16, flags: u16, name: &str, qtype: u16) -> Vec<u8> {
    let mut message = id.to_be_bytes().to_vec();
    message.extend_from_slice(&flags.to_be_bytes());
    message.extend_from_slice(&[0, 1, 0, 0, 0, 0, 0, 0]);
    message.extend(x700::frontend::enum_dns::settings::wire_name(name).expect("name"));
    message.extend_from_slice(&qtype.to_be_bytes());
    message.extend_from_slice(&1u16.to_be_bytes());
    message
}

fn exchange(socket: &UdpSocket, server: SocketAddr, message: &[u8]) -> Option<Vec<u8>> {
    socket.send_to(message, server).expect("send");
    let mut buffer = [0u8; 4096];
    match socket.recv_from(&mut buffer) {
        Ok((n, _)) => Some(buffer[..n].to_vec()),
        Err(_) => None,
    }
}

/// Guards the batched receive and send (`recvmmsg`, `sendmmsg`: 64
/// datagrams a call): a burst from two sources, more than a call holds,
/// gets every answer, each at its own source with its own id and name.
#[test]
fn a_burst_from_two_sources_gets_every_answer_at_its_source() {
    let (node, server) = start(&["--event-loops", "2"]);
    let xs = xs_over_loops(&node, 2, 700_500_000_000);
    for (i, &x) in xs.iter().enumerate() {
        bind(&node, &axn(x, &format!("1380013801{i}"), None, "o"));
    }
    let sockets = [
        UdpSocket::bind("127.0.0.1:0"),
        UdpSocket::bind("127.0.0.1:0"),
    ]
    .map(|socket| socket.expect("bind"));
    const QUERIES: u16 = 150;
    for id in 0..QUERIES {
        for (s, socket) in sockets.iter().enumerate() {
            let x = xs[usize::from(id) % xs.len()];
            let query = raw_query(id * 2 + s as u16, 0x0100, &enum_name(&digits(x)), 35);
            socket.send_to(&query, server).expect("send");
        }
    }
    for (s, socket) in sockets.iter().enumerate() {
        socket.set_read_timeout(Some(IO_TIMEOUT)).expect("timeout");
        let mut seen = vec![false; usize::from(QUERIES)];
        let mut buffer = [0u8; 512];
        for _ in 0..QUERIES {
            let (n, _) = socket.recv_from(&mut buffer).expect("an answer");
            let id = u16::from_be_bytes([buffer[0], buffer[1]]);
            assert_eq!(usize::from(id % 2), s, "an answer for the other source");
            let i = usize::from(id / 2);
            assert!(!seen[i], "answer {id} twice");
            seen[i] = true;
            assert_eq!(buffer[3], 0x00, "NOERROR");
            let owner = format!("1380013801{}", i % xs.len());
            let text = String::from_utf8_lossy(&buffer[..n]);
            assert!(text.contains(&format!("sip:{owner}@localhost")), "{text}");
        }
    }
}

#[test]
fn malformed_packets_are_formerr_notimp_or_silence_and_the_node_goes_on() {
    let (node, server) = start(&["--admin", "127.0.0.1:0"]);
    let socket = UdpSocket::bind("127.0.0.1:0").expect("bind");
    socket
        .set_read_timeout(Some(Duration::from_millis(300)))
        .expect("timeout");
    let good = raw_query(0x4242, 0x0100, "6.8.e164.arpa.", 6);
    // Shorter than a header, a response, a truncated question: silence
    // for the first two, FORMERR for the third.
    assert_eq!(exchange(&socket, server, &good[..5]), None);
    let mut response = good.clone();
    response[2] |= 0x80;
    assert_eq!(exchange(&socket, server, &response), None);
    let answer = exchange(&socket, server, &good[..good.len() - 2]).expect("FORMERR");
    assert_eq!(answer, [0x42, 0x42, 0x81, 0x01, 0, 0, 0, 0, 0, 0, 0, 0]);
    // A compression pointer in the question, two questions, a message
    // over the size limit: FORMERR.
    let mut pointer = good.clone();
    pointer[12] = 0xC0;
    let mut two = good.clone();
    two[5] = 2;
    let mut long = good.clone();
    long.resize(2000, 0);
    for bad in [pointer, two, long] {
        let answer = exchange(&socket, server, &bad).expect("FORMERR");
        assert_eq!(answer[3] & 0x0F, 1, "{answer:?}");
    }
    // NOTIFY (opcode 4): NOTIMP.
    let notify = raw_query(7, 4 << 11, "6.8.e164.arpa.", 6);
    let answer = exchange(&socket, server, &notify).expect("NOTIMP");
    assert_eq!(answer[3] & 0x0F, 4);
    // Over TCP: a length that cannot be a query closes the connection.
    let mut stream = TcpStream::connect(server).expect("connect");
    stream.set_read_timeout(Some(IO_TIMEOUT)).expect("timeout");
    stream.write_all(&[0, 3, 1, 2, 3]).expect("write");
    let mut rest = Vec::new();
    assert_eq!(
        stream.read_to_end(&mut rest).map(|_| rest.len()).ok(),
        Some(0)
    );
    // Two pipelined queries on one connection, the second split in two
    // writes: both answered, in length-prefixed messages.
    let mut stream = TcpStream::connect(server).expect("connect");
    stream.set_read_timeout(Some(IO_TIMEOUT)).expect("timeout");
    let mut framed = Vec::new();
    for message in [&good, &good] {
        framed.extend_from_slice(&(message.len() as u16).to_be_bytes());
        framed.extend_from_slice(message);
    }
    stream
        .write_all(&framed[..framed.len() - 3])
        .expect("write");
    std::thread::sleep(Duration::from_millis(50));
    stream
        .write_all(&framed[framed.len() - 3..])
        .expect("write");
    for _ in 0..2 {
        let mut length = [0u8; 2];
        stream.read_exact(&mut length).expect("length");
        let mut message = vec![0u8; usize::from(u16::from_be_bytes(length))];
        stream.read_exact(&mut message).expect("message");
        assert_eq!(message[..4], [0x42, 0x42, 0x85, 0x00]);
    }
    // The node still answers, and /metrics counts the answers by rcode.
    let answer = exchange(&socket, server, &good).expect("SOA");
    assert_eq!(answer[3] & 0x0F, 0);
    let lines = [
        "x700_enum_answers_total{rcode=\"FORMERR\"} 4",
        "x700_enum_answers_total{rcode=\"NOTIMP\"} 1",
        "x700_enum_answers_total{rcode=\"NOERROR\"} 3",
    ];
    let page = metrics_until(&node, |page| lines.iter().all(|line| page.contains(line)));
    for line in lines {
        assert!(page.contains(line), "{line} in {page}");
    }
}

/// The /metrics page once `done` holds of it, or after 1 s (the loops
/// publish their counters every 10 ms).
fn metrics_until(node: &Node, done: impl Fn(&str) -> bool) -> String {
    let mut page = String::new();
    for _ in 0..50 {
        let (code, text) = http_get(node.admin, "/metrics");
        assert_eq!(code, 200);
        page = text;
        if done(&page) {
            break;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    page
}

#[test]
fn only_switch_networks_are_answered() {
    let dir = tempfile::tempdir().expect("temporary directory");
    let config = config_file(
        &dir,
        "enum = \"127.0.0.1:0\"\nswitch_networks = [\"10.0.0.0/8\"]\n",
    );
    let node = Node::start(&["--config", &config]);
    let server = node.enum_dns.expect("enum address");
    let socket = UdpSocket::bind("127.0.0.1:0").expect("bind");
    socket
        .set_read_timeout(Some(Duration::from_millis(500)))
        .expect("timeout");
    let query = raw_query(1, 0x0100, "6.8.e164.arpa.", 6);
    assert_eq!(exchange(&socket, server, &query), None);
    let mut stream = TcpStream::connect(server).expect("the kernel accepts");
    stream.set_read_timeout(Some(IO_TIMEOUT)).expect("timeout");
    let mut framed = (query.len() as u16).to_be_bytes().to_vec();
    framed.extend_from_slice(&query);
    let _ = stream.write_all(&framed);
    let mut rest = Vec::new();
    let read = stream.read_to_end(&mut rest);
    assert!(read.is_err() || rest.is_empty(), "answered: {rest:?}");
}

#[test]
fn udp_queries_obey_the_per_source_rate() {
    let (node, server) = start(&[
        "--udp-lookups-per-source-per-s",
        "2",
        "--admin",
        "127.0.0.1:0",
    ]);
    let socket = UdpSocket::bind("127.0.0.1:0").expect("bind");
    socket
        .set_read_timeout(Some(Duration::from_millis(300)))
        .expect("timeout");
    let query = raw_query(1, 0x0100, "6.8.e164.arpa.", 6);
    for _ in 0..10 {
        socket.send_to(&query, server).expect("send");
    }
    let mut answered = 0;
    let mut buffer = [0u8; 512];
    while socket.recv_from(&mut buffer).is_ok() {
        answered += 1;
    }
    // Two a second; the ten may straddle one second boundary.
    assert!((1..=4).contains(&answered), "{answered} answered");
    let dropped = |page: &str| {
        page.lines()
            .find_map(|l| l.strip_prefix("x700_udp_lookups_rate_limited_total "))
            .and_then(|n| n.parse::<u64>().ok())
            .unwrap_or(0)
    };
    let page = metrics_until(&node, |page| dropped(page) >= 6);
    assert!(dropped(&page) >= 6, "drops counted: {page}");
}

#[test]
fn a_bad_enum_table_stops_the_node_with_the_reason() {
    let dir = tempfile::tempdir().expect("temporary directory");
    for (text, reason) in [
        (
            "[enum]\nlisten = \"127.0.0.1:0\"\nsuffix = \"a..b\"\n",
            "enum.suffix",
        ),
        (
            "[enum]\nlisten = \"127.0.0.1:0\"\ntemplate = \"sip:{caller}\"\n",
            "enum.template",
        ),
        ("[enum]\nsuffix = \"e164.arpa.\"\n", "listen"),
    ] {
        let config = config_file(&dir, text);
        let (code, stderr) = common::serve_expecting_exit(&["--config", &config]);
        assert_eq!(code, Some(2), "{text}: {stderr}");
        assert!(stderr.contains(reason), "{text}: {stderr}");
    }
}

/// A valid query for a random name under the suffix.
fn valid_query() -> impl Strategy<Value = Vec<u8>> {
    (
        any::<u16>(),
        prop::collection::vec(0u8..12, 0..22),
        prop::sample::select(vec![2u16, 6, 35, 1, 255, 252]),
        prop::option::of(0u16..5000),
    )
        .prop_map(|(id, digits, qtype, payload)| {
            let text: String = digits
                .iter()
                .map(|&d| if d < 10 { char::from(b'0' + d) } else { 'a' })
                .collect();
            let mut message = raw_query(id, 0x0100, &enum_name(&text), qtype);
            if let Some(payload) = payload {
                message[11] = 1;
                message.extend_from_slice(&[0, 0, 41]);
                message.extend_from_slice(&payload.to_be_bytes());
                message.extend_from_slice(&[0, 0, 0x80, 0, 0, 0]);
            }
            message
        })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(3000))]

    #[test]
    fn random_bytes_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..300)) {
        check_enum(&bytes);
    }

    #[test]
    fn valid_and_mutated_queries_never_panic(
        query in valid_query(),
        flips in prop::collection::vec((any::<usize>(), any::<u8>()), 0..4),
        cut in any::<usize>(),
    ) {
        check_enum(&query);
        let mut mutated = query.clone();
        for (at, byte) in flips {
            let at = at % mutated.len();
            mutated[at] = byte;
        }
        check_enum(&mutated);
        check_enum(&query[..cut % (query.len() + 1)]);
    }
}
