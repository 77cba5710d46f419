//! The SIP redirect front-end, driven by a real `sipp` UAC (and, for what
//! sipp cannot send, a raw socket) against a real node, over UDP and TCP:
//! an INVITE for a bound pair is answered 302 with the right Contact,
//! display number and recording flag; every reject is answered its status
//! from the (configured) table; OPTIONS answers 200, other methods 405, ACK
//! nothing; a retransmitted INVITE gets the same bytes; malformed,
//! oversized and foreign messages get 400 or silence; /metrics counts the
//! answers by code.

mod common;

use common::{axb, axe, axn, real, x, Node};
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream, UdpSocket};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};
use x700::binding::Direction;
use x700::client::Client;
use x700::protocol::codec::control::{ControlRequest, PutMode};
use x700::protocol::{status, Role};

/// The status table the node of these tests runs with: a different code
/// per reject, so each answer names its reject.
const CONFIG: &str = r#"
[sip]
contact = "sip:{callee}@gw.example:5080"
trusted_networks = ["127.0.0.0/8"]
message_bytes_max = 2048
[sip.status]
not_bound = 404
expired = 410
direction_denied = 403
not_a_party = 480
bad_number = 484
tenant_suspended = 402
blocked = 603
rate_limited = 503
busy = 503
"#;

/// The sipp binary, or a failure that says how to get it.
fn sipp() -> &'static str {
    let found = Command::new("sipp")
        .arg("-v")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok();
    assert!(
        found,
        "sipp is not installed: tools/test.sh installs it (apt-get install sip-tester)"
    );
    "sipp"
}

/// A node with the SIP front-end and the tests' `[sip]` table.
fn start(dir: &Path) -> Node {
    let config = dir.join("x700.toml");
    std::fs::write(&config, CONFIG).expect("write config");
    let config = config.to_str().expect("utf-8 path").to_string();
    let node = Node::start(&["--sip", "127.0.0.1:0", "--config", &config, "--shards", "2"]);
    assert!(node.sip.is_some(), "the serving line names sip=");
    node
}

fn control(admin: &mut Client, request: &ControlRequest) {
    let (code, body) = admin.control(request).expect("control answered");
    assert_eq!(code, status::OK, "{request:?}: {body}");
}

/// Tenant `tenant` with X `700` + `first..first+99` and a lookup quota.
fn add_tenant(admin: &mut Client, tenant: u32, first: u64, lookups_per_s: u32) {
    control(
        admin,
        &ControlRequest::TenantPut {
            tenant,
            mode: PutMode::Add,
            max_live: 0,
            binds_per_s: 0,
            lookups_per_s,
            x_lookups_per_s: 0,
            token: format!("tenant-{tenant}-token-0123456").as_bytes(),
            hashed: false,
        },
    );
    control(
        admin,
        &ControlRequest::PoolAdd {
            tenant,
            first: 700_000_000_000_000 + first,
            last: 700_000_000_000_000 + first + 99,
            area: *b"010\0",
            province: 0,
        },
    );
}

/// The bindings every test here uses (see each one's comment).
fn bind_all(node: &Node) {
    let mut admin = Client::connect(node.tcp, Role::Admin, "").expect("admin");
    add_tenant(&mut admin, 5, 1, 0);
    add_tenant(&mut admin, 6, 101, 0);
    add_tenant(&mut admin, 7, 201, 1);
    fn bind_as(admin: &mut Client, mut body: x700::protocol::codec::BindBody, tenant: u32) {
        body.tenant = tenant;
        let reply = admin.bind(&body).expect("bind answered");
        assert_eq!(reply.status, status::OK, "{body:?}");
    }
    let mut bind = |body, tenant| bind_as(&mut admin, body, tenant);
    // x(1): A and B, recorded.
    let mut recorded = axb(x(1), "13800000001", "13900000001", "o-1");
    recorded.recording = true;
    bind(recorded, 5);
    // x(2): only A's calls pass.
    let mut one_way = axb(x(2), "13800000002", "13900000002", "o-2");
    one_way.direction = Direction::AToB;
    bind(one_way, 5);
    // x(4): A is blocked (below).
    bind(axb(x(4), "13800000004", "13900000004", "o-4"), 5);
    // x(6): AXN, anyone reaches A. x(7) + 12: AXE.
    bind(axn(x(6), "13800000006", None, "o-6"), 5);
    bind(axe(x(7), "13800000007", "12", "o-7"), 5);
    // x(101): its tenant is suspended (below). x(201): its tenant
    // answers one lookup a second.
    bind(axb(x(101), "13800000101", "13900000101", "o-101"), 6);
    bind(axb(x(201), "13800000201", "13900000201", "o-201"), 7);
    control(
        &mut admin,
        &ControlRequest::TenantStatus {
            tenant: 6,
            suspended: true,
        },
    );
    control(
        &mut admin,
        &ControlRequest::Block {
            tenant: None,
            caller: real("13800000004"),
            add: true,
        },
    );
}

/// Which transport a sipp run uses.
#[derive(Clone, Copy)]
enum Transport {
    Udp,
    Tcp,
}

/// A sipp UAC scenario: `request` (sipp keywords allowed), then the
/// response `code`, whose `header` must match `regexp` when given, then an
/// ACK for an INVITE.
struct Scenario<'a> {
    method: &'a str,
    request_uri: &'a str,
    from: &'a str,
    extra: &'a str,
    code: u16,
    check: Option<(&'a str, &'a str)>,
}

fn scenario_xml(s: &Scenario<'_>) -> String {
    let check = s.check.map_or(String::new(), |(header, regexp)| {
        // sipp's header value keeps the space after the colon.
        let regexp = regexp
            .replacen('^', "^ *", 1)
            .replace('<', "&lt;")
            .replace('>', "&gt;");
        format!(
            "<action><ereg regexp=\"{regexp}\" search_in=\"hdr\" header=\"{header}:\" \
             check_it=\"true\" assign_to=\"seen\"/></action>"
        )
    });
    let ack = if s.method == "INVITE" {
        format!(
            "<send><![CDATA[\n\nACK {uri} SIP/2.0\nVia: SIP/2.0/[transport] [local_ip]:[local_port];branch=[branch]\n\
             From: <{from}>;tag=[pid]t[call_number]\nTo: <{uri}>[peer_tag_param]\nCall-ID: [call_id]\n\
             CSeq: 1 ACK\nMax-Forwards: 70\nContent-Length: 0\n\n]]></send>",
            uri = s.request_uri,
            from = s.from
        )
    } else {
        String::new()
    };
    format!(
        "<?xml version=\"1.0\" encoding=\"ISO-8859-1\" ?>\n<scenario name=\"x700\">\n\
         <send retrans=\"500\"><![CDATA[\n\n{method} {uri} SIP/2.0\n\
         Via: SIP/2.0/[transport] [local_ip]:[local_port];branch=[branch]\n\
         From: <{from}>;tag=[pid]t[call_number]\nTo: <{uri}>\nCall-ID: [call_id]\n\
         CSeq: 1 {method}\nContact: <sip:sipp@[local_ip]:[local_port]>\nMax-Forwards: 70\n\
         {extra}Content-Length: 0\n\n]]></send>\n\
         <recv response=\"{code}\">{check}</recv>\n{ack}\n{reference}</scenario>\n",
        reference = if s.check.is_some() {
            "<Reference variables=\"seen\"/>\n"
        } else {
            ""
        },
        method = s.method,
        uri = s.request_uri,
        from = s.from,
        extra = s.extra,
        code = s.code,
    )
}

/// Runs one call of `scenario` against `sip`; panics with sipp's logs if
/// it fails. Bounded: one call, 5 s per receive, 20 s in all.
fn run_sipp(sip: SocketAddr, transport: Transport, scenario: &Scenario<'_>) {
    let dir = tempfile::tempdir().expect("temporary directory");
    let file = dir.path().join("uac.xml");
    std::fs::write(&file, scenario_xml(scenario)).expect("write scenario");
    let messages = dir.path().join("messages.log");
    let errors = dir.path().join("errors.log");
    let output = Command::new(sipp())
        .arg(sip.to_string())
        .args(["-sf", file.to_str().expect("utf-8 path")])
        .args(["-m", "1", "-i", "127.0.0.1", "-nostdin"])
        .args([
            "-t",
            if matches!(transport, Transport::Udp) {
                "u1"
            } else {
                "t1"
            },
        ])
        .args(["-recv_timeout", "5000", "-timeout", "20s", "-timeout_error"])
        .args([
            "-trace_msg",
            "-message_file",
            messages.to_str().expect("utf-8"),
        ])
        .args(["-trace_err", "-error_file", errors.to_str().expect("utf-8")])
        .stdin(Stdio::null())
        .output()
        .expect("run sipp");
    if !output.status.success() {
        let log = std::fs::read_to_string(&messages).unwrap_or_default();
        let errs = std::fs::read_to_string(&errors).unwrap_or_default();
        panic!(
            "sipp {} {} expecting {} failed ({:?}):\n{}\nmessages:\n{log}\nerrors:\n{errs}",
            scenario.method,
            scenario.request_uri,
            scenario.code,
            output.status,
            String::from_utf8_lossy(&output.stderr)
        );
    }
}

fn invite<'a>(request_uri: &'a str, from: &'a str, code: u16) -> Scenario<'a> {
    Scenario {
        method: "INVITE",
        request_uri,
        from,
        extra: "",
        code,
        check: None,
    }
}

#[test]
fn sipp_calls_get_302_or_their_reject_status_over_udp_and_tcp() {
    let dir = tempfile::tempdir().expect("temporary directory");
    let node = start(dir.path());
    let sip = node.sip.expect("sip address");
    bind_all(&node);
    for transport in [Transport::Udp, Transport::Tcp] {
        // A bound pair: the other party, the display number X, recorded.
        run_sipp(
            sip,
            transport,
            &Scenario {
                check: Some((
                    "Contact",
                    "^<sip:13900000001@gw.example:5080;x700-display=700000000000001;x700-recording=1>$",
                )),
                ..invite("sip:700000000000001@x700.example", "sip:13800000001@a.example", 302)
            },
        );
        // B calls back through X; +86 and tel: spellings, user=phone.
        run_sipp(
            sip,
            transport,
            &Scenario {
                check: Some(("Contact", "^<sip:13800000001@gw.example:5080;")),
                ..invite("tel:+86-700-0000-0000-0001", "tel:+8613900000001", 302)
            },
        );
        run_sipp(
            sip,
            transport,
            &Scenario {
                check: Some(("Contact", "^<sip:13800000006@gw.example:5080;x700-display=700000000000006;x700-recording=0>$")),
                ..invite("sip:+86700000000000006@x;user=phone", "sip:13700000000@a", 302)
            },
        );
        // AXE: X and the extension's digits.
        run_sipp(
            sip,
            transport,
            &Scenario {
                check: Some(("Contact", "^<sip:13800000007@")),
                ..invite("sip:70000000000000712@x", "sip:13700000000@a", 302)
            },
        );
        // The caller from P-Asserted-Identity: the source is trusted.
        run_sipp(
            sip,
            transport,
            &Scenario {
                extra: "P-Asserted-Identity: <sip:13800000001@a.example>\n",
                check: Some(("Contact", "^<sip:13900000001@")),
                ..invite("sip:700000000000001@x", "sip:13711111111@a", 302)
            },
        );
        // Each reject, its status from the table.
        for (request_uri, from, code) in [
            ("sip:700000000000003@x", "sip:13800000001@a", 404),
            ("sip:700000000000001@x", "sip:13711111111@a", 480),
            ("sip:700000000000002@x", "sip:13900000002@a", 403),
            (
                "sip:700000000000001@x",
                "sip:anonymous@anonymous.invalid",
                484,
            ),
            ("sip:12345@x", "sip:13800000001@a", 484),
            ("sip:700000000000101@x", "sip:13800000101@a", 402),
            ("sip:700000000000004@x", "sip:13800000004@a", 603),
        ] {
            run_sipp(sip, transport, &invite(request_uri, from, code));
        }
        run_sipp(
            sip,
            transport,
            &Scenario {
                method: "OPTIONS",
                check: Some(("Allow", "^INVITE, ACK, OPTIONS$")),
                ..invite("sip:x700@127.0.0.1", "sip:dispatcher@a", 200)
            },
        );
        run_sipp(
            sip,
            transport,
            &Scenario {
                method: "BYE",
                check: Some(("Allow", "^INVITE, ACK, OPTIONS$")),
                ..invite("sip:700000000000001@x", "sip:13800000001@a", 405)
            },
        );
    }
    // Metrics are published every 10 ms.
    std::thread::sleep(Duration::from_millis(100));
    let (code, page) = common::http_get(node.admin, "/metrics");
    assert_eq!(code, 200);
    let count = |code: &str| -> u64 {
        let prefix = format!("x700_sip_responses_total{{code=\"{code}\"}} ");
        page.lines()
            .find_map(|line| line.strip_prefix(prefix.as_str()))
            .and_then(|n| n.trim().parse().ok())
            .unwrap_or(0)
    };
    assert!(count("302") >= 10, "{page}");
    assert!(count("484") >= 4 && count("405") >= 2, "{page}");
    assert!(
        page.contains("x700_sip_unanswered_total{reason=\"ack\"}"),
        "{page}"
    );
}

/// A raw UDP client of the node's SIP address.
struct Raw {
    socket: UdpSocket,
    sip: SocketAddr,
}

impl Raw {
    fn new(sip: SocketAddr) -> Raw {
        let socket = UdpSocket::bind("127.0.0.1:0").expect("bind");
        Raw { socket, sip }
    }

    /// Sends `message`; the answer, or `None` after 3 s (a loaded machine
    /// may take its time).
    fn ask(&self, message: &[u8]) -> Option<String> {
        self.wait(message, Duration::from_secs(3))
    }

    /// Sends a message that must get no answer: `None` after 500 ms of
    /// silence (an answer would come far sooner than one to `ask`).
    fn silence(&self, message: &[u8]) -> Option<String> {
        self.wait(message, Duration::from_millis(500))
    }

    fn wait(&self, message: &[u8], timeout: Duration) -> Option<String> {
        self.socket
            .set_read_timeout(Some(timeout))
            .expect("timeout");
        self.socket.send_to(message, self.sip).expect("send");
        let mut buffer = [0u8; 65_536];
        let (n, _) = self.socket.recv_from(&mut buffer).ok()?;
        Some(String::from_utf8_lossy(&buffer[..n]).into_owned())
    }

    fn invite(&self, x_digits: &str, caller: &str, call_id: &str) -> Vec<u8> {
        let port = self.socket.local_addr().expect("address").port();
        format!(
            "INVITE sip:{x_digits}@x SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:{port};branch=z9hG4bK-{call_id}\r\n\
             From: <sip:{caller}@a>;tag=f-{call_id}\r\nTo: <sip:{x_digits}@x>\r\nCall-ID: {call_id}\r\n\
             CSeq: 1 INVITE\r\nMax-Forwards: 70\r\nContent-Length: 0\r\n\r\n"
        )
        .into_bytes()
    }
}

fn status_of(answer: &str) -> u16 {
    answer
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0)
}

#[test]
fn retransmissions_time_and_rate_rejects_and_malformed_messages() {
    let dir = tempfile::tempdir().expect("temporary directory");
    let node = start(dir.path());
    let sip = node.sip.expect("sip address");
    bind_all(&node);
    let raw = Raw::new(sip);

    // A retransmitted INVITE: the same answer, byte for byte (To tag too).
    let request = raw.invite("700000000000001", "13800000001", "retransmitted");
    let first = raw.ask(&request).expect("answered");
    assert_eq!(status_of(&first), 302, "{first}");
    assert!(
        first.contains("\r\nTo: <sip:700000000000001@x>;tag="),
        "{first}"
    );
    assert_eq!(raw.ask(&request).as_deref(), Some(first.as_str()));
    // Its ACK is absorbed.
    let ack = String::from_utf8(request.clone())
        .expect("text")
        .replace("INVITE sip", "ACK sip")
        .replace("1 INVITE", "1 ACK");
    assert_eq!(raw.silence(ack.as_bytes()), None);

    // rate_limited: tenant 7 answers one lookup a second; 503 + Retry-After.
    let limited = (0..20).find_map(|i| {
        let answer =
            raw.ask(&raw.invite("700000000000201", "13800000201", &format!("rate-{i}")))?;
        (status_of(&answer) == 503).then_some(answer)
    });
    let limited = limited.expect("a 503 within 20 INVITEs at one lookup a second");
    assert!(limited.contains("\r\nRetry-After: 5\r\n"), "{limited}");

    // expired: a binding of 1 s, asked until it stops routing. The sweep
    // may, rarely, reclaim it between two asks (then 404, not_bound); the
    // first refusal is then retried on a fresh X.
    let mut admin = Client::connect(node.tcp, Role::Admin, "").expect("admin");
    let mut expired_seen = false;
    for (attempt, n) in [(0, 50u64), (1, 51), (2, 52)] {
        let mut short = axb(
            x(n),
            "13800000050",
            "13900000050",
            &format!("short-{attempt}"),
        );
        short.tenant = 5;
        short.ttl_s = 1;
        assert_eq!(admin.bind(&short).expect("bind").status, status::OK);
        let deadline = Instant::now() + Duration::from_secs(5);
        let refused = loop {
            assert!(Instant::now() < deadline, "x({n}) still routes after 5 s");
            let id = format!("expiry-{n}-{}", deadline.elapsed().as_millis());
            let digits = format!("700{n:012}");
            let answer = raw
                .ask(&raw.invite(&digits, "13800000050", &id))
                .expect("answered");
            if status_of(&answer) != 302 {
                break status_of(&answer);
            }
            std::thread::sleep(Duration::from_millis(50));
        };
        if refused == 410 {
            expired_seen = true;
            break;
        }
        assert_eq!(refused, 404, "first refusal of x({n})");
    }
    assert!(expired_seen, "no INVITE was answered `expired` (410)");

    // Malformed, with a usable Via: 400 naming the fault.
    let port = raw.socket.local_addr().expect("address").port();
    let bad_cseq = format!(
        "INVITE sip:700000000000001@x SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:{port};branch=z9hG4bK-b\r\n\
         From: <sip:13800000001@a>;tag=1\r\nTo: <sip:700000000000001@x>\r\nCall-ID: bad\r\n\
         CSeq: one INVITE\r\nContent-Length: 0\r\n\r\n"
    );
    let answer = raw.ask(bad_cseq.as_bytes()).expect("a 400");
    assert!(answer.starts_with("SIP/2.0 400 bad CSeq\r\n"), "{answer}");
    // Oversized (message_bytes_max = 2048): 400 Message Too Large.
    let mut big = String::from_utf8(raw.invite("700000000000001", "13800000001", "big"))
        .expect("text")
        .replace("Content-Length: 0\r\n\r\n", "Content-Length: 4000\r\n\r\n");
    big.push_str(&"v".repeat(4000));
    let answer = raw.ask(big.as_bytes()).expect("a 400");
    assert!(
        answer.starts_with("SIP/2.0 400 Message Too Large\r\n"),
        "{answer}"
    );
    // No Via, garbage, a response: silence (nobody to answer).
    let no_via = "OPTIONS sip:x SIP/2.0\r\nFrom: <sip:a@h>;tag=1\r\nTo: <sip:x@h>\r\nCall-ID: c\r\nCSeq: 1 OPTIONS\r\n\r\n";
    assert_eq!(raw.silence(no_via.as_bytes()), None);
    assert_eq!(raw.silence(b"\x00\xff garbage \r\n\r\n"), None);
    assert_eq!(
        raw.silence(b"SIP/2.0 200 OK\r\nVia: SIP/2.0/UDP 127.0.0.1:9\r\n\r\n"),
        None
    );
    // ... and the node still answers.
    let answer = raw
        .ask(&raw.invite("700000000000001", "13800000001", "after"))
        .expect("answered");
    assert_eq!(status_of(&answer), 302);

    // TCP: a message without Content-Length is garbage on a stream: 400,
    // then the connection is closed.
    let mut stream = TcpStream::connect(sip).expect("connect");
    stream
        .set_read_timeout(Some(Duration::from_secs(5)))
        .expect("timeout");
    let no_length = no_via.replace(
        "OPTIONS sip:x SIP/2.0\r\n",
        "OPTIONS sip:x SIP/2.0\r\nVia: SIP/2.0/TCP 127.0.0.1:9;branch=z9hG4bK\r\n",
    );
    stream.write_all(no_length.as_bytes()).expect("send");
    let mut answer = String::new();
    stream
        .read_to_string(&mut answer)
        .expect("read to the close");
    assert!(
        answer.starts_with("SIP/2.0 400 Content-Length Required\r\n"),
        "{answer}"
    );
}

/// A SIP connection silent for `idle_timeout_s` is closed, as a binary
/// session is; one that keeps sending stays.
#[test]
fn silent_sip_connections_are_closed_after_the_idle_timeout() {
    let node = Node::start(&["--sip", "127.0.0.1:0", "--idle-timeout-s", "1"]);
    let sip = node.sip.expect("sip address");
    let mut silent = TcpStream::connect(sip).expect("connect");
    silent
        .set_read_timeout(Some(Duration::from_secs(5)))
        .expect("timeout");
    let mut talking = TcpStream::connect(sip).expect("connect");
    let started = Instant::now();
    while started.elapsed() < Duration::from_millis(1600) {
        // CRLF keep-alives (RFC 5626): no answer, but the connection lives.
        talking.write_all(b"\r\n\r\n").expect("keep-alive");
        std::thread::sleep(Duration::from_millis(200));
    }
    let mut rest = Vec::new();
    assert_eq!(
        silent.read_to_end(&mut rest).expect("closed by the node"),
        0
    );
    assert!(
        started.elapsed() < Duration::from_secs(4),
        "closed within the idle timeout and a sweep"
    );
    // ... and the node still answers on it.
    let options = "OPTIONS sip:x SIP/2.0\r\nVia: SIP/2.0/TCP 127.0.0.1:9;branch=z9hG4bKk\r\n\
        From: <sip:a@h>;tag=1\r\nTo: <sip:x@h>\r\nCall-ID: k\r\nCSeq: 1 OPTIONS\r\nContent-Length: 0\r\n\r\n";
    talking
        .write_all(options.as_bytes())
        .expect("the talking one is still open");
    talking
        .set_read_timeout(Some(Duration::from_secs(5)))
        .expect("timeout");
    let mut answer = [0u8; 1024];
    let n = talking.read(&mut answer).expect("an answer");
    assert!(answer[..n].starts_with(b"SIP/2.0 200 OK\r\n"));
}

#[test]
fn only_switch_networks_are_answered() {
    let dir = tempfile::tempdir().expect("temporary directory");
    let config = dir.path().join("x700.toml");
    std::fs::write(&config, "switch_networks = [\"10.0.0.0/8\"]\n").expect("config");
    let node = Node::start(&[
        "--sip",
        "127.0.0.1:0",
        "--config",
        config.to_str().expect("utf-8"),
    ]);
    let raw = Raw::new(node.sip.expect("sip address"));
    let options = raw.invite("700000000000001", "13800000001", "foreign");
    let options = String::from_utf8(options)
        .expect("text")
        .replace("INVITE", "OPTIONS");
    assert_eq!(raw.silence(options.as_bytes()), None);
    let mut stream = TcpStream::connect(raw.sip).expect("connect");
    stream
        .set_read_timeout(Some(Duration::from_secs(5)))
        .expect("timeout");
    let mut rest = Vec::new();
    // Closed at once: nothing to read, the end of the stream.
    assert_eq!(stream.read_to_end(&mut rest).expect("closed"), 0);
    // Metrics are published every 10 ms.
    std::thread::sleep(Duration::from_millis(100));
    let (_, page) = common::http_get(node.admin, "/metrics");
    assert!(
        page.contains("x700_sip_unanswered_total{reason=\"not_switch_network\"} 2"),
        "{page}"
    );
}

/// A proxy that sends its INVITEs on a TCP connection and then closes its
/// side still gets every answer before the node closes the connection
/// (the node used to close at the end of the stream and drop the answers
/// whose lookups were out); an open SIP connection counts in
/// `x700_connections`, as the binary protocol's and ENUM's do.
#[test]
fn a_half_closed_sip_connection_gets_every_answer_and_counts_as_a_connection() {
    let dir = tempfile::tempdir().expect("temporary directory");
    let node = start(dir.path());
    let sip = node.sip.expect("sip address");
    bind_all(&node);
    let connections = |node: &Node| -> u64 {
        // Metrics are published every 10 ms.
        std::thread::sleep(Duration::from_millis(100));
        let (_, page) = common::http_get(node.admin, "/metrics");
        page.lines()
            .find_map(|line| line.strip_prefix("x700_connections "))
            .and_then(|value| value.trim().parse().ok())
            .unwrap_or_else(|| panic!("no x700_connections in {page}"))
    };
    let before = connections(&node);
    let mut stream = TcpStream::connect(sip).expect("connect");
    stream
        .set_read_timeout(Some(Duration::from_secs(5)))
        .expect("timeout");
    let port = stream.local_addr().expect("address").port();
    let calls = 20;
    let mut requests = String::new();
    for call in 0..calls {
        requests.push_str(&format!(
            "INVITE sip:700000000000001@x SIP/2.0\r\nVia: SIP/2.0/TCP 127.0.0.1:{port};branch=z9hG4bK-h{call}\r\n\
             From: <sip:13800000001@a>;tag=f-h{call}\r\nTo: <sip:700000000000001@x>\r\nCall-ID: h{call}\r\n\
             CSeq: 1 INVITE\r\nMax-Forwards: 70\r\nContent-Length: 0\r\n\r\n"
        ));
    }
    assert_eq!(
        connections(&node),
        before + 1,
        "the SIP connection is counted"
    );
    // The end of the stream comes right behind the INVITEs, while their
    // lookups are out.
    stream.write_all(requests.as_bytes()).expect("send");
    stream
        .shutdown(std::net::Shutdown::Write)
        .expect("half-close");
    let mut answers = String::new();
    stream
        .read_to_string(&mut answers)
        .expect("every answer, then the node's close");
    let moved = answers.matches("SIP/2.0 302 Moved Temporarily\r\n").count();
    assert_eq!(moved, calls, "{answers}");
    for call in 0..calls {
        assert!(
            answers.contains(&format!("Call-ID: h{call}\r\n")),
            "{answers}"
        );
    }
    assert_eq!(connections(&node), before, "the close is counted");
}
