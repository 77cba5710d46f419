//! Proves that the admin HTTP endpoint of a real `x700 serve` process answers
//! probes and scrapes at once while hundreds of idle or trickling sockets are
//! open, closes slow and idle clients within its header timeout, caps its
//! open connections, lets the node stop at once with sockets still open, and
//! serves a /metrics page that reference parsers accept (`promtool check
//! metrics` and the Python client's OpenMetrics parser).

mod common;

use common::{ask, axb, xs_over_loops, Node};
use std::io::{ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use x700::binding::LookupResult;
use x700::client::Client;
use x700::protocol::{status, Role};
use x700::server::admin::{CONNECTIONS_MAX, HEADER_READ_TIMEOUT};

/// What a probe (a load balancer's, an orchestrator's) waits at most.
const PROBE_TIMEOUT: Duration = Duration::from_secs(3);
/// Idle sockets opened against the admin port in the flood test: ten times
/// what held /healthz back 10 s when one thread served one socket at a time.
const IDLE_SOCKETS: usize = 200;
/// Sockets trickling a request head one byte at a time.
const TRICKLERS: usize = 4;
/// Pause between two bytes of a trickled head.
const TRICKLE_PAUSE: Duration = Duration::from_millis(100);
/// Longest a trickler runs, so the test ends whatever the node does.
const TRICKLE_MAX: Duration = Duration::from_secs(8);
/// The OpenMetrics content type.
const OPENMETRICS: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

// ---- a small HTTP client with a deadline ----

/// One HTTP answer.
#[derive(Debug)]
struct Reply {
    code: u16,
    /// Header lines, names lower-cased.
    headers: Vec<(String, String)>,
    body: String,
}

impl Reply {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }
}

/// `method path` on its own connection (`Connection: close`), with
/// `headers` (each line ending in CRLF) added, read to the end; `Err` says
/// what went wrong and when if it does not complete within `timeout`.
fn request(
    admin: SocketAddr,
    method: &str,
    path: &str,
    headers: &str,
    timeout: Duration,
) -> Result<Reply, String> {
    let started = Instant::now();
    let mut stream = TcpStream::connect_timeout(&admin, timeout)
        .map_err(|e| format!("connect: {e} after {:?}", started.elapsed()))?;
    stream.set_write_timeout(Some(timeout)).expect("timeout");
    write!(
        stream,
        "{method} {path} HTTP/1.1\r\nHost: {admin}\r\nConnection: close\r\n{headers}\r\n"
    )
    .map_err(|e| format!("send: {e} after {:?}", started.elapsed()))?;
    let mut response = Vec::new();
    let mut chunk = [0u8; 16 * 1024];
    loop {
        let left = timeout.saturating_sub(started.elapsed());
        if left.is_zero() {
            return Err(format!(
                "{method} {path}: no complete answer within {timeout:?} ({} bytes)",
                response.len()
            ));
        }
        stream.set_read_timeout(Some(left)).expect("timeout");
        match stream.read(&mut chunk) {
            Ok(0) => break,
            Ok(n) => response.extend_from_slice(&chunk[..n]),
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {}
            Err(e) => {
                return Err(format!(
                    "{method} {path}: {e} after {:?}",
                    started.elapsed()
                ))
            }
        }
    }
    let response = String::from_utf8(response).map_err(|e| format!("not UTF-8: {e}"))?;
    let (head, body) = response
        .split_once("\r\n\r\n")
        .ok_or_else(|| format!("no HTTP head in {response:?}"))?;
    let mut lines = head.lines();
    let code = lines
        .next()
        .and_then(|status_line| status_line.split_whitespace().nth(1))
        .and_then(|code| code.parse().ok())
        .ok_or_else(|| format!("no status code in {head:?}"))?;
    let headers = lines
        .filter_map(|line| line.split_once(':'))
        .map(|(name, value)| (name.trim().to_ascii_lowercase(), value.trim().to_string()))
        .collect();
    Ok(Reply {
        code,
        headers,
        body: body.to_string(),
    })
}

/// `method path`, which must answer within `PROBE_TIMEOUT`.
fn probe(admin: SocketAddr, method: &str, path: &str) -> Reply {
    request(admin, method, path, "", PROBE_TIMEOUT).unwrap_or_else(|e| panic!("{e}"))
}

/// Opens `count` connections to the admin port that send nothing.
fn idle_sockets(admin: SocketAddr, count: usize) -> Vec<TcpStream> {
    (0..count)
        .map(|index| {
            TcpStream::connect_timeout(&admin, PROBE_TIMEOUT).unwrap_or_else(|e| {
                panic!("idle socket {index} of {count} could not connect to the admin port: {e}")
            })
        })
        .collect()
}

/// Waits until the server ends `stream` (EOF, reset, or a refused write)
/// and returns how long that took from `since`, or `None` if it is still
/// open at `until`. Bytes the server sends before closing are read and
/// ignored; when `trickle` is set, one byte of an endless header is sent
/// every `TRICKLE_PAUSE` meanwhile.
fn closed_by_server(
    stream: &mut TcpStream,
    since: Instant,
    until: Duration,
    trickle: bool,
) -> Option<Duration> {
    stream
        .set_read_timeout(Some(TRICKLE_PAUSE))
        .expect("timeout");
    let endless_head = b"GET /healthz HTTP/1.1\r\nX-Slow: ";
    let mut sent = 0usize;
    let mut chunk = [0u8; 1024];
    while since.elapsed() < until {
        if trickle {
            let byte = endless_head.get(sent).copied().unwrap_or(b'a');
            if stream.write_all(&[byte]).is_err() {
                return Some(since.elapsed());
            }
            sent += 1;
        }
        match stream.read(&mut chunk) {
            Ok(0) => return Some(since.elapsed()),
            Ok(_) => {}
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {}
            Err(_) => return Some(since.elapsed()),
        }
    }
    None
}

/// Starts `TRICKLERS` threads, each sending one byte of an endless request
/// head every `TRICKLE_PAUSE` until the server closes it, `running` is
/// cleared or `TRICKLE_MAX` passes.
fn start_tricklers(
    admin: SocketAddr,
    running: &Arc<AtomicBool>,
) -> Vec<std::thread::JoinHandle<()>> {
    (0..TRICKLERS)
        .map(|_| {
            let running = Arc::clone(running);
            std::thread::spawn(move || {
                let Ok(mut stream) = TcpStream::connect_timeout(&admin, PROBE_TIMEOUT) else {
                    return;
                };
                let started = Instant::now();
                for &byte in b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Slow: "
                    .iter()
                    .chain(std::iter::repeat(&b'a'))
                {
                    if !running.load(Ordering::SeqCst)
                        || started.elapsed() > TRICKLE_MAX
                        || stream.write_all(&[byte]).is_err()
                    {
                        return;
                    }
                    std::thread::sleep(TRICKLE_PAUSE);
                }
            })
        })
        .collect()
}

// ---- probes under a flood of sockets ----

/// Guards item 11 of step 5: the admin port served one connection at a time
/// on a blocking thread, so 20 idle sockets held `/healthz` back 10 s (here,
/// 200 would hold it back well past the probe's 3 s, or never let the probe
/// connect). Every page, HEAD and the error statuses must answer within a
/// probe's timeout while 200 idle sockets and 4 tricklers are open.
#[test]
fn probes_answer_while_hundreds_of_sockets_sit_idle_or_trickle() {
    // The flood, the tricklers and the probes all fit under the cap.
    const { assert!(IDLE_SOCKETS + TRICKLERS + 8 < CONNECTIONS_MAX) };
    let node = Node::start(&["--shards", "1"]);
    let running = Arc::new(AtomicBool::new(true));
    let tricklers = start_tricklers(node.admin, &running);
    let idle = idle_sockets(node.admin, IDLE_SOCKETS);
    // Let every trickler be part-way through its head.
    std::thread::sleep(Duration::from_millis(300));
    let flood_started = Instant::now();

    let health = probe(node.admin, "GET", "/healthz");
    assert_eq!(
        (health.code, health.body.as_str()),
        (200, "ok\n"),
        "{health:?}"
    );
    let ready = probe(node.admin, "GET", "/readyz");
    assert_eq!(
        (ready.code, ready.body.as_str()),
        (200, "ready\n"),
        "{ready:?}"
    );
    let metrics = probe(node.admin, "GET", "/metrics");
    assert_eq!(metrics.code, 200, "{metrics:?}");
    assert_eq!(metrics.header("content-type"), Some(OPENMETRICS));
    assert!(metrics.body.ends_with("# EOF\n"), "{}", metrics.body);

    // HEAD: the GET answer's head with its length, and no body.
    let head = probe(node.admin, "HEAD", "/metrics");
    assert_eq!(head.code, 200, "{head:?}");
    assert_eq!(head.header("content-type"), Some(OPENMETRICS));
    assert!(head.header("content-length").is_some(), "{head:?}");
    assert_eq!(head.body, "");
    let post = probe(node.admin, "POST", "/healthz");
    assert_eq!(post.code, 405, "{post:?}");
    assert_eq!(post.header("allow"), Some("GET, HEAD"), "{post:?}");
    assert_eq!(probe(node.admin, "GET", "/nonsense").code, 404);
    assert_eq!(probe(node.admin, "DELETE", "/nonsense").code, 404);

    // The probes were answered while the flood was open, not after the
    // server had cut it off.
    let probes_took = flood_started.elapsed();
    running.store(false, Ordering::SeqCst);
    for trickler in tricklers {
        trickler.join().expect("trickler thread");
    }
    drop(idle);
    assert!(
        probes_took < HEADER_READ_TIMEOUT,
        "the probes took {probes_took:?}, longer than the idle sockets live"
    );
    assert!(node.stop().success());
}

/// Keeps one kept-alive connection busy: a `GET /healthz` every
/// `TRICKLE_PAUSE` on the same socket, each answer read, until the server
/// closes it, `running` is cleared or `TRICKLE_MAX` passes. Returns how many
/// answers it read.
fn start_busy_keep_alive(
    admin: SocketAddr,
    running: &Arc<AtomicBool>,
) -> std::thread::JoinHandle<usize> {
    let running = Arc::clone(running);
    std::thread::spawn(move || {
        let Ok(mut stream) = TcpStream::connect_timeout(&admin, PROBE_TIMEOUT) else {
            return 0;
        };
        stream
            .set_read_timeout(Some(PROBE_TIMEOUT))
            .expect("timeout");
        let started = Instant::now();
        let mut answers = 0;
        while running.load(Ordering::SeqCst) && started.elapsed() < TRICKLE_MAX {
            if stream
                .write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
                .is_err()
            {
                return answers;
            }
            let mut answer = Vec::new();
            let mut chunk = [0u8; 512];
            while !answer.ends_with(b"\r\n\r\nok\n") {
                match stream.read(&mut chunk) {
                    Ok(n) if n > 0 => answer.extend_from_slice(&chunk[..n]),
                    _ => return answers,
                }
            }
            answers += 1;
            std::thread::sleep(TRICKLE_PAUSE);
        }
        answers
    })
}

/// Guards the stop half of item 11: the admin thread must not wait for its
/// clients when the node stops (a server that drained its connections
/// first would wait up to `CONNECTION_LIFETIME_MAX` for kept-alive ones
/// that keep asking). The node must exit promptly with idle sockets and
/// busy kept-alive connections open.
#[test]
fn a_node_with_admin_sockets_open_stops_at_once() {
    let node = Node::start(&["--shards", "1"]);
    let running = Arc::new(AtomicBool::new(true));
    let busy: Vec<_> = (0..5)
        .map(|_| start_busy_keep_alive(node.admin, &running))
        .collect();
    let idle = idle_sockets(node.admin, 50);
    // Every busy connection has had an answer or two.
    std::thread::sleep(Duration::from_millis(300));
    let started = Instant::now();
    node.terminate();
    let stopped = node.wait_exit();
    let took = started.elapsed();
    running.store(false, Ordering::SeqCst);
    let answered: Vec<usize> = busy
        .into_iter()
        .map(|thread| thread.join().expect("keep-alive thread"))
        .collect();
    drop(idle);
    assert!(stopped.status.success(), "{:?}", stopped.status);
    assert!(
        answered.iter().all(|&count| count > 0),
        "kept-alive connections went unanswered: {answered:?}"
    );
    assert!(
        took < Duration::from_secs(3),
        "SIGTERM took {took:?} with admin sockets open"
    );
}

// ---- slow and idle clients, the cap ----

/// Guards the header timeout: a server without one (hyper's default when
/// no timer is set, or a timeout far longer than `HEADER_READ_TIMEOUT`)
/// lets a slowloris or a silent socket hold a connection for ever. Both
/// must be closed within the timeout, with a margin for a loaded machine.
#[test]
fn slow_and_silent_clients_are_closed_within_the_header_timeout() {
    let node = Node::start(&["--shards", "1"]);
    let limit = HEADER_READ_TIMEOUT + Duration::from_millis(1500);
    let started = Instant::now();
    let mut slowloris = TcpStream::connect(node.admin).expect("connect");
    let mut silent = TcpStream::connect(node.admin).expect("connect");
    let slowloris_closed = closed_by_server(&mut slowloris, started, limit, true);
    let silent_closed = closed_by_server(&mut silent, started, limit, false);
    assert!(
        slowloris_closed.is_some(),
        "a client trickling its head was still connected after {limit:?}"
    );
    assert!(
        silent_closed.is_some(),
        "a client that sent nothing was still connected after {limit:?}"
    );
    // The server is still fine.
    assert_eq!(probe(node.admin, "GET", "/healthz").code, 200);
    assert!(node.stop().success());
}

/// Guards the connection cap: without it, idle sockets on the admin port
/// could take every file descriptor the node has. With `CONNECTIONS_MAX`
/// open, the next connection is closed at once; once they go, the endpoint
/// serves again.
#[test]
fn past_the_cap_a_new_admin_connection_is_closed_at_once() {
    let node = Node::start(&["--shards", "1"]);
    let started = Instant::now();
    let held = idle_sockets(node.admin, CONNECTIONS_MAX);
    let mut extra = TcpStream::connect_timeout(&node.admin, PROBE_TIMEOUT).expect("connect");
    let extra_opened = Instant::now();
    let closed = closed_by_server(&mut extra, extra_opened, Duration::from_secs(1), false);
    // Only meaningful while the held sockets are all still open.
    assert!(
        started.elapsed() < HEADER_READ_TIMEOUT,
        "opening {CONNECTIONS_MAX} sockets took {:?}",
        started.elapsed()
    );
    assert!(
        closed.is_some(),
        "a connection past the cap of {CONNECTIONS_MAX} stayed open"
    );
    drop(held);
    // The server sees the closes a moment later.
    let deadline = Instant::now() + PROBE_TIMEOUT;
    loop {
        match request(node.admin, "GET", "/healthz", "", PROBE_TIMEOUT) {
            Ok(reply) if reply.code == 200 => break,
            other => assert!(
                Instant::now() < deadline,
                "/healthz after the held sockets closed: {other:?}"
            ),
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(node.stop().success());
}

// ---- the /metrics page against reference parsers ----

/// Runs `program args` with `input` on stdin; panics with `missing` if it
/// cannot be started. Returns (success, stdout and stderr).
fn run_with_input(program: &str, args: &[&str], input: &str, missing: &str) -> (bool, String) {
    let mut child = Command::new(program)
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("{program} could not be started ({e}): {missing}"));
    child
        .stdin
        .take()
        .expect("piped stdin")
        .write_all(input.as_bytes())
        .expect("write to the checker");
    let output = child.wait_with_output().expect("checker output");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    (output.status.success(), text)
}

/// Reads the page from stdin with the reference OpenMetrics parser of the
/// Python client (which rejects what the format forbids, `le="inf"` among
/// it) and prints each family as `name type samples`.
const OPENMETRICS_CHECK: &str = "\
import sys
from prometheus_client.openmetrics.parser import text_string_to_metric_families
for family in text_string_to_metric_families(sys.stdin.read()):
    print(family.name, family.type, len(family.samples))
";

/// Guards item 20 of step 5: the histogram's last bucket read `le="inf"`,
/// which OpenMetrics parsers reject (the spelling is `+Inf`). The whole page
/// of a node that has served binds and lookups (so the histogram has
/// samples) must parse with the Python client's OpenMetrics parser, and the
/// page in the Prometheus text format (what a scraper asking for
/// `text/plain` gets) must pass `promtool check metrics`, that format's
/// linter, which reads OpenMetrics' counter names as missing help texts.
#[test]
fn the_metrics_page_passes_reference_parsers() {
    let node = Node::start(&["--shards", "2"]);
    let mut client = Client::connect(node.tcp, Role::Admin, "").expect("admin HELLO");
    let xs = xs_over_loops(&node, 2, 31_000);
    for &xn in &xs {
        let reply = client
            .bind(&axb(xn, "13800000001", "13900000002", "metrics"))
            .expect("bind answered");
        assert_eq!(status::name(reply.status), "ok", "{reply:?}");
    }
    let queries: Vec<_> = xs.iter().map(|&xn| ask("13800000001", xn)).collect();
    let mut answers = Vec::new();
    client
        .lookup_pipelined(&queries.repeat(20), 8, &mut answers)
        .expect("lookups");
    assert!(answers
        .iter()
        .all(|a| matches!(a, Ok(LookupResult::Route(_)))));
    let looked_up = answers.len();
    // Metrics are published every tick: wait until the page shows them.
    let series = "x700_requests_total{opcode=\"lookup\",status=\"ok\"} ";
    let deadline = Instant::now() + Duration::from_secs(3);
    let page = loop {
        let reply = probe(node.admin, "GET", "/metrics");
        assert_eq!(reply.code, 200, "{reply:?}");
        let counted = reply
            .body
            .lines()
            .find_map(|line| line.strip_prefix(series)?.trim().parse::<usize>().ok());
        if counted == Some(looked_up) {
            break reply.body;
        }
        assert!(
            Instant::now() < deadline,
            "{series} is {counted:?} after {looked_up} lookups:\n{}",
            reply.body
        );
        std::thread::sleep(Duration::from_millis(20));
    };
    // The same page in the Prometheus text format, as promtool's users ask
    // for it.
    let classic = request(
        node.admin,
        "GET",
        "/metrics",
        "Accept: text/plain; version=0.0.4\r\n",
        PROBE_TIMEOUT,
    )
    .unwrap_or_else(|e| panic!("{e}"));
    assert!(node.stop().success());
    assert!(
        page.contains("x700_request_latency_seconds_count ") && page.ends_with("# EOF\n"),
        "{page}"
    );
    assert_eq!(classic.code, 200, "{classic:?}");
    assert_eq!(
        classic.header("content-type"),
        Some("text/plain; version=0.0.4; charset=utf-8")
    );

    let (linted, lint) = run_with_input(
        "promtool",
        &["check", "metrics"],
        &classic.body,
        "install it with tools/test.sh (Debian package `prometheus`)",
    );
    assert!(
        linted,
        "promtool check metrics rejects the page:\n{lint}\n{}",
        classic.body
    );

    let (parsed, families) = run_with_input(
        "python3",
        &["-c", OPENMETRICS_CHECK],
        &page,
        "install Python 3 and `pip install prometheus-client` (tools/test.sh does)",
    );
    assert!(
        !families.contains("No module named"),
        "the OpenMetrics parser is missing: `pip install prometheus-client` \
         (tools/test.sh does):\n{families}"
    );
    assert!(
        parsed,
        "the OpenMetrics parser rejects the page:\n{families}\n{page}"
    );
    let histogram = families
        .lines()
        .find(|line| line.starts_with("x700_request_latency_seconds "))
        .unwrap_or_else(|| panic!("no latency histogram among:\n{families}"));
    assert!(
        histogram.starts_with("x700_request_latency_seconds histogram "),
        "{histogram}"
    );
    assert!(
        families.contains("x700_requests counter "),
        "no request counter among:\n{families}"
    );
}
