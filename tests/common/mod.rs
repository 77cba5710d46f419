//! Harness for tests that run a real `x700 serve` process: start it on
//! ephemeral loopback ports in a temporary data directory, read the
//! addresses from its first stdout line, stop it with SIGTERM (or kill it on
//! drop); plus builders for numbers and bind bodies, a raw frame connection
//! with read timeouts, and a tiny HTTP GET for the admin endpoint.
//!
//! Each test binary uses a different part of this module.
#![allow(dead_code)]

pub mod cluster;
pub mod proxy;
pub mod small_disk;
pub mod tcpdump;

use std::io::{BufRead, BufReader, ErrorKind, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};
use x700::binding::{Direction, LookupQuery, LookupResult, Mode, OrderRef};
use x700::number::{parse_extension, parse_real, parse_virtual, Number, XPolicy};
use x700::protocol::codec::{encode_hello, BindBody};
use x700::protocol::frame::{next_frame, push_frame, Header, HEADER_BYTES};
use x700::protocol::{limits, opcode, Role, VERSION};

/// Longest wait for any single answer on a raw socket.
pub const IO_TIMEOUT: Duration = Duration::from_secs(5);
/// Longest wait for the server's first stdout line.
const START_TIMEOUT: Duration = Duration::from_secs(15);
/// Longest a restart waits for a port another process holds for a moment.
const ADDRESS_IN_USE_WAIT: Duration = Duration::from_secs(10);
/// Longest wait for the server to exit after SIGTERM.
const STOP_TIMEOUT: Duration = Duration::from_secs(10);
/// Tokens of the credentials `CREDENTIALS` configures.
pub const ADMIN_TOKEN: &str = "admin-token-0123456789";
/// A switch's token.
pub const SWITCH_TOKEN: &str = "switch-token-0123456789";
/// Platform 1 (tenant 1).
pub const P1_TOKEN: &str = "platform1-token-0123";
/// Platform 2 (tenant 2).
pub const P2_TOKEN: &str = "platform2-token-0123";

/// `serve` flags for an admin, a switch, and platforms for tenants 1 and 2.
pub const CREDENTIALS: [&str; 8] = [
    "--credential",
    "admin:admin-token-0123456789",
    "--credential",
    "switch:switch-token-0123456789",
    "--credential",
    "platform:platform1-token-0123:1",
    "--credential",
    "platform:platform2-token-0123:2",
];

/// Lifetime of bindings the builders make.
pub const TTL_S: u32 = 600;

/// The `x700` binary under test: this build's, or the one
/// `X700_TEST_BINARY` names (to show that a regression test fails on an
/// older build).
pub fn binary() -> PathBuf {
    std::env::var_os("X700_TEST_BINARY")
        .map_or_else(|| PathBuf::from(env!("CARGO_BIN_EXE_x700")), PathBuf::from)
}

/// The I/O backend the spawned nodes use: `X700_TEST_IO` (`epoll`, the
/// default, or `uring`), so that `tools/test.sh` runs the server tests
/// under both.
pub fn test_io() -> &'static str {
    match std::env::var("X700_TEST_IO").as_deref() {
        Err(_) | Ok("" | "epoll") => "epoll",
        Ok("uring") => "uring",
        Ok(other) => panic!("X700_TEST_IO={other}: expected epoll or uring"),
    }
}

/// `--io` and the backend of `test_io`, unless `args` name their own.
fn io_flags(args: &[&str]) -> Vec<&'static str> {
    if args.contains(&"--io") {
        Vec::new()
    } else {
        vec!["--io", test_io()]
    }
}

/// Runs `x700 serve` on a fresh temporary data directory with `args`,
/// expecting it to exit (a refused start): its exit code and stderr. A node
/// that keeps running is killed after 10 s and reported as `None`.
pub fn serve_expecting_exit(args: &[&str]) -> (Option<i32>, String) {
    let dir = tempfile::tempdir().expect("temporary directory");
    serve_on_until_exit(dir.path(), args, Duration::from_secs(10))
}

/// Runs `x700 serve` on `data` with `args` until it exits: its exit code
/// and stderr. A node still running after `wait` is killed and reported as
/// `None`.
pub fn serve_on_until_exit(data: &Path, args: &[&str], wait: Duration) -> (Option<i32>, String) {
    let mut child = Command::new(binary())
        .arg("serve")
        .arg("--data")
        .arg(data)
        .arg("--no-pin")
        .args(io_flags(args))
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn x700 serve");
    let deadline = Instant::now() + wait;
    let code = loop {
        if let Some(status) = child.try_wait().expect("wait") {
            break status.code();
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            break None;
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let mut stderr = String::new();
    if let Some(mut pipe) = child.stderr.take() {
        let _ = pipe.read_to_string(&mut stderr);
    }
    (code, stderr)
}

/// A running `x700 serve` process.
pub struct Node {
    child: Child,
    /// TCP address it serves.
    pub tcp: SocketAddr,
    /// UDP address it serves.
    pub udp: SocketAddr,
    /// Admin HTTP address.
    pub admin: SocketAddr,
    /// Raft address, when started with `--raft`.
    pub raft: Option<SocketAddr>,
    /// ENUM address (UDP and TCP), when started with `--enum`.
    pub enum_dns: Option<SocketAddr>,
    /// SIP address (UDP and TCP), when started with `--sip`.
    pub sip: Option<SocketAddr>,
    /// Its data directory.
    pub data: PathBuf,
    /// Event loops (`--event-loops`).
    pub event_loops: usize,
    /// Table shards of the data directory.
    pub table_shards: u16,
    /// The temporary directory, when the node made its own.
    _dir: Option<tempfile::TempDir>,
    /// Drains the rest of stdout so the server never blocks on a full pipe.
    stdout: Option<JoinHandle<String>>,
    /// Drains stderr, kept for failure messages.
    stderr: Option<JoinHandle<String>>,
}

/// What a stopped node left behind.
pub struct Stopped {
    /// Its exit status.
    pub status: ExitStatus,
    /// Everything it printed on stdout after the first line.
    pub stdout: String,
    /// Everything it printed on stderr.
    pub stderr: String,
}

/// A loopback port free now for both TCP and UDP, chosen at random below the
/// kernel's ephemeral range (`/proc/sys/net/ipv4/ip_local_port_range`): a
/// port the kernel picked for `:0` can be handed to any outgoing connection
/// once its owner closes it, so a node restarted on it may find it taken.
pub fn unassigned_port() -> u16 {
    let ephemeral_low: u16 = std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
        .ok()
        .and_then(|range| range.split_whitespace().next()?.parse().ok())
        .unwrap_or(32768);
    let low = 10_000u16;
    let span = u64::from(ephemeral_low.saturating_sub(low).max(1000));
    let mut state = u64::from(std::process::id())
        ^ u64::from(
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |t| t.subsec_nanos()),
        )
        .rotate_left(17);
    for _ in 0..200 {
        // xorshift64*: enough to spread parallel test processes apart.
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        let port = low + u16::try_from(state % span).expect("span fits a port");
        let tcp = std::net::TcpListener::bind(("127.0.0.1", port));
        let udp = std::net::UdpSocket::bind(("127.0.0.1", port));
        if tcp.is_ok() && udp.is_ok() {
            return port;
        }
    }
    panic!("no loopback port free for TCP and UDP below {ephemeral_low}");
}

impl Node {
    /// Starts a node in a fresh temporary data directory; `args` are extra
    /// `serve` flags such as `--event-loops 2` or `--credential admin:adm`.
    pub fn start(args: &[&str]) -> Node {
        let dir = tempfile::tempdir().expect("temporary directory");
        let mut node = Node::start_on(dir.path(), args);
        node._dir = Some(dir);
        node
    }

    /// Starts a node on an existing (or new) data directory, which the
    /// caller keeps.
    ///
    /// A restarted node names its old ports again. While it was down another
    /// process may hold one for a moment (a connection from the kernel's
    /// ephemeral range, even a peer's connect that met itself on the dead
    /// port), so a start refused with "Address already in use" is tried
    /// again for up to `ADDRESS_IN_USE_WAIT`.
    pub fn start_on(data: &Path, args: &[&str]) -> Node {
        let deadline = Instant::now() + ADDRESS_IN_USE_WAIT;
        loop {
            match Node::try_start_on(data, args) {
                Ok(node) => return node,
                Err(refusal)
                    if refusal.contains("Address already in use") && Instant::now() < deadline =>
                {
                    std::thread::sleep(Duration::from_millis(250));
                }
                Err(refusal) => panic!("{refusal}"),
            }
        }
    }

    /// One start: the node, or why it did not start.
    fn try_start_on(data: &Path, args: &[&str]) -> Result<Node, String> {
        let mut child = Command::new(binary())
            .arg("serve")
            .arg("--data")
            .arg(data)
            .args(
                [
                    ("--listen", "127.0.0.1:0"),
                    ("--udp", "127.0.0.1:0"),
                    ("--admin", "127.0.0.1:0"),
                ]
                .into_iter()
                // A test may name its own address.
                .filter(|(flag, _)| !args.contains(flag))
                .flat_map(|(flag, value)| [flag, value]),
            )
            // Several nodes run at once on two cores: let the scheduler
            // place their threads rather than stacking them on core 0.
            .arg("--no-pin")
            .args(io_flags(args))
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn x700 serve");
        let stdout = child.stdout.take().expect("piped stdout");
        let stderr = child.stderr.take().expect("piped stderr");
        let (first_tx, first_rx) = mpsc::channel();
        let stdout = std::thread::spawn(move || {
            let mut reader = BufReader::new(stdout);
            let mut first = String::new();
            let _ = reader.read_line(&mut first);
            let _ = first_tx.send(first);
            let mut rest = String::new();
            let _ = reader.read_to_string(&mut rest);
            rest
        });
        let stderr = std::thread::spawn(move || {
            let mut text = String::new();
            let _ = BufReader::new(stderr).read_to_string(&mut text);
            text
        });
        let first = match first_rx.recv_timeout(START_TIMEOUT) {
            Ok(line) => line,
            Err(_) => {
                let _ = child.kill();
                let _ = child.wait();
                panic!("x700 serve printed nothing within {START_TIMEOUT:?}");
            }
        };
        if !first.starts_with("x700 serving ") {
            let _ = child.kill();
            let _ = child.wait();
            let errors = stderr.join().unwrap_or_default();
            return Err(format!(
                "x700 serve {args:?} did not start: {first:?}; stderr: {errors}"
            ));
        }
        let field = |name: &str| -> String {
            first
                .split_whitespace()
                .find_map(|word| word.strip_prefix(name)?.strip_prefix('='))
                .unwrap_or_else(|| panic!("no {name}= in {first:?}"))
                .to_string()
        };
        let node = Node {
            tcp: field("tcp").parse().expect("tcp address"),
            udp: field("udp").parse().expect("udp address"),
            admin: field("admin").parse().expect("admin address"),
            raft: first
                .split_whitespace()
                .find_map(|word| word.strip_prefix("raft="))
                .and_then(|value| value.parse().ok()),
            enum_dns: first
                .split_whitespace()
                .find_map(|word| word.strip_prefix("enum="))
                .and_then(|value| value.parse().ok()),
            sip: first
                .split_whitespace()
                .find_map(|word| word.strip_prefix("sip="))
                .and_then(|value| value.parse().ok()),
            data: PathBuf::from(field("data")),
            event_loops: field("event_loops").parse().expect("event_loops"),
            table_shards: field("table_shards").parse().expect("table_shards"),
            child,
            _dir: None,
            stdout: Some(stdout),
            stderr: Some(stderr),
        };
        node.smoke_check(args);
        Ok(node)
    }

    /// One session, three answers on it, each within `IO_TIMEOUT`: a node
    /// that cannot do this fails the test here, at once and with a clear
    /// message, instead of in the client library's 30 s read timeout.
    fn smoke_check(&self, args: &[&str]) {
        // The first configured credential, or protected mode.
        let (role, token) = args
            .windows(2)
            .find(|pair| pair[0] == "--credential")
            .map_or((Role::Switch, ""), |pair| {
                let mut parts = pair[1].splitn(3, ':');
                let role = match parts.next() {
                    Some("admin") => Role::Admin,
                    Some("platform") => Role::Platform,
                    _ => Role::Switch,
                };
                (role, parts.next().unwrap_or(""))
            });
        let mut raw = Raw::connect(self.tcp);
        raw.send(&hello_frame(1, VERSION, role, token));
        for request_id in 2..=3 {
            match raw.read_frame() {
                Ok(Some(_)) => {}
                other => panic!(
                    "x700 serve: answer {} of a session never came ({other:?}): it does not \
                     answer more than the first write of a connection",
                    request_id - 1
                ),
            }
            raw.send(&frame(opcode::PING, request_id, &[]));
        }
        match raw.read_frame() {
            Ok(Some(_)) => {}
            other => panic!(
                "x700 serve: the second PING of a session was never answered ({other:?}): it \
                 does not answer more than the first writes of a connection"
            ),
        }
    }

    /// The process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// True while the process has not exited.
    pub fn is_running(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }

    /// Sends SIGTERM without waiting.
    pub fn terminate(&self) {
        let pid = libc::pid_t::try_from(self.child.id()).expect("pid fits pid_t");
        // SAFETY: kill(2) with a pid this test spawned and still owns (the
        // child is not reaped until `wait`), and a valid signal number.
        let result = unsafe { libc::kill(pid, libc::SIGTERM) };
        assert_eq!(result, 0, "kill(SIGTERM) failed");
    }

    /// Waits for the process to exit, at most `STOP_TIMEOUT`; SIGKILLs it
    /// and panics if it does not.
    pub fn wait_exit(mut self) -> Stopped {
        let deadline = Instant::now() + STOP_TIMEOUT;
        let status = loop {
            match self.child.try_wait() {
                Ok(Some(status)) => break status,
                Ok(None) if Instant::now() < deadline => {
                    std::thread::sleep(Duration::from_millis(10));
                }
                Ok(None) => {
                    let _ = self.child.kill();
                    let _ = self.child.wait();
                    panic!("x700 serve did not exit within {STOP_TIMEOUT:?} of SIGTERM");
                }
                Err(error) => panic!("waiting for x700 serve: {error}"),
            }
        };
        let stdout = self
            .stdout
            .take()
            .map(|h| h.join().unwrap_or_default())
            .unwrap_or_default();
        let stderr = self
            .stderr
            .take()
            .map(|h| h.join().unwrap_or_default())
            .unwrap_or_default();
        Stopped {
            status,
            stdout,
            stderr,
        }
    }

    /// SIGKILL (a crash, as `kill -9` gives one), then reap the process.
    pub fn kill(mut self) -> Stopped {
        let _ = self.child.kill();
        let _ = self.child.wait();
        self.wait_exit()
    }

    /// SIGTERM, then wait (bounded) for the exit status.
    pub fn stop(self) -> ExitStatus {
        self.terminate();
        self.wait_exit().status
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        if matches!(self.child.try_wait(), Ok(None)) {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
        // A failing test shows what the node said on stderr.
        if std::thread::panicking() {
            if let Some(stderr) = self.stderr.take().and_then(|h| h.join().ok()) {
                eprintln!("x700 serve stderr:\n{stderr}");
            }
        }
    }
}

// ---- numbers and requests ----

/// The 700 number `700` followed by `n` in 12 digits.
pub fn x(n: u64) -> Number {
    parse_virtual(&format!("700{n:012}"), XPolicy::default()).expect("valid X")
}

/// The in-process bind of synthetic AXB binding `i`: X = `700` + i, A =
/// `138` + i, B = `139` + i, order `order-i` (the shape the store tests
/// fill tables with).
pub fn synthetic_bind(i: u64, tenant: u32, ttl_s: u32) -> x700::binding::BindRequest {
    x700::binding::BindRequest {
        x: x(i),
        parties: x700::binding::Parties::Axb {
            a: parse_real(&format!("138{i:08}")).unwrap(),
            b: parse_real(&format!("139{i:08}")).unwrap(),
        },
        tenant,
        order: OrderRef::new(format!("order-{i}").as_bytes()).unwrap(),
        ttl_s,
        direction: Direction::Both,
        recording: false,
    }
}

/// A real number.
pub fn real(text: &str) -> Number {
    parse_real(text).expect("valid real number")
}

/// An extension key.
pub fn ext(text: &str) -> Number {
    parse_extension(text).expect("valid extension")
}

/// Bytes that are not a number in any encoding (nibble 1, 2, 1, 2 ... with
/// no fill).
pub const GARBAGE_NUMBER: Number = Number([0x12; 8]);

/// The first X from `700<start>` upwards whose table shard is served by
/// event loop `event_loop` of `event_loops`.
pub fn x_on_loop(node: &Node, event_loop: usize, start: u64) -> Number {
    (start..start + 10_000)
        .map(x)
        .find(|&candidate| loop_of(node, candidate) == event_loop)
        .expect("some X lands on every loop")
}

/// The event loop that serves X's table shard.
pub fn loop_of(node: &Node, x: Number) -> usize {
    usize::from(x700::table::hash::shard_of(x, node.table_shards)) % node.event_loops
}

/// Xs spread over every event loop, `per_loop` from each, interleaved, so
/// a connection on any loop sends some of its requests across cores.
pub fn xs_over_loops(node: &Node, per_loop: usize, start: u64) -> Vec<Number> {
    let mut by_loop = vec![Vec::new(); node.event_loops];
    let mut n = start;
    while by_loop.iter().any(|xs: &Vec<Number>| xs.len() < per_loop) {
        let candidate = x(n);
        n += 1;
        let owner = &mut by_loop[loop_of(node, candidate)];
        if owner.len() < per_loop {
            owner.push(candidate);
        }
    }
    (0..per_loop)
        .flat_map(|i| by_loop.iter().map(move |xs| xs[i]))
        .collect()
}

fn order(text: &str) -> OrderRef {
    OrderRef::new(text.as_bytes()).expect("order reference")
}

/// An AXB bind body: tenant 1, ttl `TTL_S`, both directions, no recording.
pub fn axb(x: Number, a: &str, b: &str, order_ref: &str) -> BindBody {
    BindBody {
        mode: Mode::Axb,
        x,
        a: real(a),
        b: real(b),
        tenant: 1,
        ttl_s: TTL_S,
        direction: Direction::Both,
        recording: false,
        order: order(order_ref),
    }
}

/// An AXN bind body with an optional default callee for A's own calls.
pub fn axn(x: Number, a: &str, default_callee: Option<&str>, order_ref: &str) -> BindBody {
    BindBody {
        mode: Mode::Axn,
        b: default_callee.map_or(Number::NONE, real),
        ..axb(x, a, "13000000000", order_ref)
    }
}

/// An AXE bind body: X plus `extension` reaches A.
pub fn axe(x: Number, a: &str, extension: &str, order_ref: &str) -> BindBody {
    BindBody {
        mode: Mode::Axe,
        b: ext(extension),
        ..axb(x, a, "13000000000", order_ref)
    }
}

/// A lookup without extension.
pub fn ask(caller: &str, x: Number) -> LookupQuery {
    LookupQuery {
        caller: real(caller),
        x,
        extension: Number::NONE,
    }
}

/// A lookup with an extension.
pub fn ask_ext(caller: &str, x: Number, extension: &str) -> LookupQuery {
    LookupQuery {
        caller: real(caller),
        x,
        extension: ext(extension),
    }
}

/// A lookup answer as text: the callee's digits, or `reject:<reason>`.
pub fn callee(result: &LookupResult) -> String {
    match result {
        LookupResult::Route(route) => route.callee.digits(),
        LookupResult::Reject(reject) => format!("reject:{}", reject.as_str()),
    }
}

/// Seconds since the Unix epoch, as the server's clock counts them.
pub fn now_s() -> u32 {
    let seconds = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock after 1970")
        .as_secs();
    u32::try_from(seconds).expect("before 2106")
}

// ---- raw frames ----

/// A plain frame with `body`.
pub fn frame(op: u8, request_id: u32, body: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    push_frame(&mut out, op, 0, request_id, body);
    out
}

/// A HELLO frame for `role` with `token`, at protocol `version`.
pub fn hello_frame(request_id: u32, version: u16, role: Role, token: &str) -> Vec<u8> {
    let mut out = Vec::new();
    encode_hello(&mut out, request_id, version, role, token.as_bytes());
    out
}

/// How a raw connection ended when the test waited for its end.
#[derive(Debug, PartialEq, Eq)]
pub enum Ending {
    /// Orderly close (EOF).
    Closed,
    /// Reset by the peer (closed with unread data).
    Reset,
    /// Still open after the timeout.
    StillOpen,
}

/// A TCP connection that speaks frames byte by byte, for malformed input.
/// Every read is bounded by `IO_TIMEOUT`.
pub struct Raw {
    /// The socket.
    pub stream: TcpStream,
    input: Vec<u8>,
}

impl Raw {
    /// Connects, without HELLO.
    pub fn connect(address: SocketAddr) -> Raw {
        let stream = TcpStream::connect(address).expect("connect");
        stream.set_nodelay(true).expect("nodelay");
        stream
            .set_read_timeout(Some(IO_TIMEOUT))
            .expect("read timeout");
        stream
            .set_write_timeout(Some(IO_TIMEOUT))
            .expect("write timeout");
        Raw {
            stream,
            input: Vec::new(),
        }
    }

    /// Speaks frames on a socket the test connected itself (with its own
    /// options); every read and write bounded by `IO_TIMEOUT`.
    pub fn from_stream(stream: TcpStream) -> Raw {
        stream.set_nodelay(true).expect("nodelay");
        stream
            .set_read_timeout(Some(IO_TIMEOUT))
            .expect("read timeout");
        stream
            .set_write_timeout(Some(IO_TIMEOUT))
            .expect("write timeout");
        Raw {
            stream,
            input: Vec::new(),
        }
    }

    /// Connects and opens a session as `role` with `token`; panics unless
    /// the HELLO is accepted.
    pub fn session(address: SocketAddr, role: Role, token: &str) -> Raw {
        let mut raw = Raw::connect(address);
        raw.send(&hello_frame(0, VERSION, role, token));
        let (header, _) = raw.expect_frame();
        assert_eq!(
            (header.opcode, header.status),
            (opcode::HELLO, x700::protocol::status::OK),
            "HELLO as {role:?} refused"
        );
        raw
    }

    /// A second handle on the same socket (for a reader thread).
    pub fn try_clone(&self) -> Raw {
        Raw {
            stream: self.stream.try_clone().expect("clone the socket"),
            input: Vec::new(),
        }
    }

    /// Writes bytes; panics on failure.
    pub fn send(&mut self, bytes: &[u8]) {
        self.stream.write_all(bytes).expect("write to the node");
    }

    /// Writes bytes, returning the error if the node has closed the
    /// connection (or stopped reading for `IO_TIMEOUT`).
    pub fn try_send(&mut self, bytes: &[u8]) -> std::io::Result<()> {
        self.stream.write_all(bytes)
    }

    /// The next answer frame; `Ok(None)` on EOF, `Err` on reset or timeout.
    pub fn read_frame(&mut self) -> std::io::Result<Option<(Header, Vec<u8>)>> {
        loop {
            match next_frame(&self.input, limits::ANSWER_FRAME_BYTES_MAX) {
                Ok(Some((header, bytes))) => {
                    let body = bytes[HEADER_BYTES..].to_vec();
                    let length = bytes.len();
                    self.input.drain(..length);
                    return Ok(Some((header, body)));
                }
                Ok(None) => {}
                Err(error) => {
                    return Err(std::io::Error::new(
                        ErrorKind::InvalidData,
                        format!("the node sent a bad frame: {error}"),
                    ))
                }
            }
            let mut chunk = [0u8; 64 * 1024];
            let n = self.stream.read(&mut chunk)?;
            if n == 0 {
                assert!(
                    self.input.is_empty(),
                    "the node closed mid-frame: {} bytes left",
                    self.input.len()
                );
                return Ok(None);
            }
            self.input.extend_from_slice(&chunk[..n]);
        }
    }

    /// The next answer frame; panics on EOF, reset or timeout.
    pub fn expect_frame(&mut self) -> (Header, Vec<u8>) {
        match self.read_frame() {
            Ok(Some(frame)) => frame,
            Ok(None) => panic!("the node closed the connection; an answer was expected"),
            Err(error) => panic!("no answer from the node: {error}"),
        }
    }

    /// Reads (and returns) frames until the node ends the connection or
    /// `IO_TIMEOUT` passes without a byte.
    pub fn until_end(&mut self) -> (Vec<(Header, Vec<u8>)>, Ending) {
        let mut frames = Vec::new();
        loop {
            match self.read_frame() {
                Ok(Some(frame)) => frames.push(frame),
                Ok(None) => return (frames, Ending::Closed),
                Err(error) if error.kind() == ErrorKind::ConnectionReset => {
                    return (frames, Ending::Reset)
                }
                Err(error)
                    if matches!(error.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) =>
                {
                    return (frames, Ending::StillOpen)
                }
                Err(error) => panic!("reading until the end: {error}"),
            }
        }
    }

    /// Closes our sending side (the node then sees EOF).
    pub fn shutdown_write(&self) {
        let _ = self.stream.shutdown(Shutdown::Write);
    }
}

// ---- admin HTTP ----

/// `GET path` on the admin endpoint: (status code, body).
pub fn http_get(admin: SocketAddr, path: &str) -> (u16, String) {
    let mut stream = TcpStream::connect(admin).expect("connect to admin");
    stream.set_read_timeout(Some(IO_TIMEOUT)).expect("timeout");
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: {admin}\r\nConnection: close\r\n\r\n"
    )
    .expect("send request");
    let mut response = String::new();
    stream
        .read_to_string(&mut response)
        .expect("read admin response");
    let (head, body) = response
        .split_once("\r\n\r\n")
        .unwrap_or_else(|| panic!("no HTTP head in {response:?}"));
    let code = head
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or_else(|| panic!("no status code in {head:?}"));
    (code, body.to_string())
}
