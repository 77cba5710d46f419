//! Proves that bad input on one connection never disturbs a live `x700
//! serve` process: random bytes, truncated frames, absurd lengths, refused
//! versions, bad numbers, unknown opcodes, wrong body lengths, too many
//! connections, a client that never reads and cross-core overload each get
//! an error answer, a closed connection or BUSY, while a well-behaved switch
//! on another connection checks every one of its answers (after each step,
//! and continuously from a background thread) and the node keeps running.

mod common;

use common::{
    ask, axb, callee, frame, hello_frame, real, x, xs_over_loops, Ending, Node, Raw, GARBAGE_NUMBER,
};
use std::collections::HashSet;
use std::io::ErrorKind;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};
use x700::binding::{LookupQuery, LookupResult};
use x700::client::Client;
use x700::protocol::codec::{self, LOOKUP_BYTES};
use x700::protocol::frame::Header;
use x700::protocol::{opcode, status, Role, VERSION, VERSION_MIN};

/// Flags of the node with small limits.
const SMALL_LIMITS: [&str; 8] = [
    "--max-in-flight",
    "4",
    "--max-output-bytes",
    "65536",
    "--max-connections",
    "8",
    "--shards",
    "2",
];

/// A deterministic byte source (xorshift64*), so a failure replays.
struct Noise(u64);

impl Noise {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    fn bytes(&mut self, count: usize) -> Vec<u8> {
        (0..count).map(|_| self.next().to_le_bytes()[3]).collect()
    }

    fn below(&mut self, bound: u64) -> u64 {
        self.next() % bound
    }
}

/// Bindings on every event loop and the answers a switch must get for them.
fn fixture(node: &Node) -> Vec<(LookupQuery, String)> {
    let mut admin = Client::connect(node.tcp, Role::Admin, "").expect("admin");
    let mut expected = Vec::new();
    for (i, xn) in xs_over_loops(node, 2, 50_000).into_iter().enumerate() {
        let reply = admin
            .bind(&axb(xn, "13800000001", "13900000002", &format!("f-{i}")))
            .expect("bind");
        assert_eq!(reply.status, status::OK, "{reply:?}");
        expected.push((ask("13800000001", xn), "13900000002".to_string()));
        expected.push((ask("13900000002", xn), "13800000001".to_string()));
        expected.push((ask("13700000000", xn), "reject:not_a_party".to_string()));
    }
    expected.push((ask("13800000001", x(1)), "reject:not_bound".to_string()));
    expected
}

/// Asks every fixture question, pipelined four deep (within the small
/// `--max-in-flight 4`, so no answer may be BUSY), and checks every answer.
fn try_check(
    client: &mut Client,
    expected: &[(LookupQuery, String)],
    step: &str,
) -> Result<(), String> {
    let queries: Vec<LookupQuery> = expected.iter().map(|(q, _)| *q).collect();
    let mut answers = Vec::new();
    client
        .lookup_pipelined(&queries, 4, &mut answers)
        .map_err(|e| format!("well-behaved client failed after {step}: {e}"))?;
    for ((query, want), answer) in expected.iter().zip(&answers) {
        let got = answer
            .as_ref()
            .map_or_else(|code| status::name(*code).to_string(), callee);
        if &got != want {
            return Err(format!(
                "after {step}: {query:?} answered {got}, not {want}"
            ));
        }
    }
    Ok(())
}

fn check(client: &mut Client, expected: &[(LookupQuery, String)], step: &str) {
    if let Err(message) = try_check(client, expected, step) {
        panic!("{message}");
    }
}

/// A well-behaved switch: one connection checked after each step, and a
/// background thread on another connection checking continuously.
struct Watch {
    expected: Vec<(LookupQuery, String)>,
    client: Client,
    /// Asks the background thread to finish its round and stop.
    stop: Arc<AtomicBool>,
    /// Set when the test fails and kills the node: the background thread
    /// then stops without a second, misleading panic.
    quiet: Arc<AtomicBool>,
    background: Option<JoinHandle<Duration>>,
}

impl Drop for Watch {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        self.quiet.store(true, Ordering::SeqCst);
    }
}

impl Watch {
    fn start(node: &Node) -> Watch {
        let expected = fixture(node);
        let client = Client::connect(node.tcp, Role::Switch, "").expect("switch");
        let stop = Arc::new(AtomicBool::new(false));
        let quiet = Arc::new(AtomicBool::new(false));
        let mut background_client =
            Client::connect(node.tcp, Role::Switch, "").expect("background switch");
        let background = {
            let (expected, stop, quiet) = (expected.clone(), Arc::clone(&stop), Arc::clone(&quiet));
            std::thread::spawn(move || {
                let mut slowest = Duration::ZERO;
                // At least one round, however late this thread gets a core.
                loop {
                    let started = Instant::now();
                    if let Err(message) =
                        try_check(&mut background_client, &expected, "(background)")
                    {
                        assert!(quiet.load(Ordering::SeqCst), "{message}");
                        break;
                    }
                    slowest = slowest.max(started.elapsed());
                    if stop.load(Ordering::SeqCst) {
                        break;
                    }
                    std::thread::sleep(Duration::from_millis(2));
                }
                slowest
            })
        };
        Watch {
            expected,
            client,
            stop,
            quiet,
            background: Some(background),
        }
    }

    fn check(&mut self, step: &str) {
        check(&mut self.client, &self.expected, step);
    }

    /// Last checks: both well-behaved connections still get correct
    /// answers, none waited long, and the process is alive and answers PING.
    fn finish(mut self, node: &mut Node) {
        self.check("the last step");
        self.stop.store(true, Ordering::SeqCst);
        let slowest = self
            .background
            .take()
            .expect("started")
            .join()
            .expect("background checks passed");
        assert!(
            slowest < Duration::from_secs(2),
            "a background round took {slowest:?}"
        );
        assert!(node.is_running(), "the node died");
        let mut fresh = Client::connect(node.tcp, Role::Switch, "").expect("new connection");
        assert_eq!(fresh.ping().expect("ping"), status::OK);
        assert_eq!(self.client.ping().expect("ping"), status::OK);
    }
}

/// A LOOKUP frame with an arbitrary 20-byte body.
fn lookup_frame(request_id: u32, body: [u8; LOOKUP_BYTES]) -> Vec<u8> {
    frame(opcode::LOOKUP, request_id, &body)
}

/// The body of a valid lookup.
fn lookup_body(query: &LookupQuery) -> [u8; LOOKUP_BYTES] {
    let mut out = Vec::new();
    codec::encode_lookup(&mut out, 0, query, true);
    out[12..].try_into().expect("20 bytes")
}

/// Sends one frame and expects one answer with this id, opcode and status.
fn expect_answer(raw: &mut Raw, bytes: &[u8], op: u8, code: u8) -> (Header, Vec<u8>) {
    let request_id = u32::from_le_bytes(bytes[8..12].try_into().expect("id"));
    raw.send(bytes);
    let (header, body) = raw.expect_frame();
    assert_eq!(
        (
            header.request_id,
            header.opcode,
            status::name(header.status)
        ),
        (request_id, op, status::name(code)),
        "answer to {bytes:02x?}"
    );
    (header, body)
}

fn ping(raw: &mut Raw, request_id: u32) {
    expect_answer(
        raw,
        &frame(opcode::PING, request_id, &[]),
        opcode::PING,
        status::OK,
    );
}

/// Expects the node to end the connection without another answer.
fn expect_closed(raw: &mut Raw, what: &str) {
    let (frames, ending) = raw.until_end();
    assert!(frames.is_empty(), "{what}: unexpected answers {frames:?}");
    assert_ne!(ending, Ending::StillOpen, "{what}: the node kept it open");
}

#[test]
fn random_bytes_after_hello_are_answered_or_closed() {
    let mut node = Node::start(&["--shards", "2"]);
    let mut watch = Watch::start(&node);
    for seed in 1..=12u64 {
        let mut noise = Noise(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15));
        let mut raw = Raw::session(node.tcp, Role::Switch, "");
        let _ = raw.try_send(&noise.bytes(4096));
        raw.shutdown_write();
        let (_, ending) = raw.until_end();
        assert_ne!(ending, Ending::StillOpen, "seed {seed}");
        watch.check(&format!("random bytes after HELLO, seed {seed}"));
    }
    // Frames with honest lengths and random opcodes and bodies: exactly one
    // answer each, never a write done for a switch, and the connection goes
    // on.
    let ops = [
        0x01, 0x02, 0x03, 0x10, 0x10, 0x10, 0x20, 0x21, 0x22, 0x23, 0x24, 0x25, 0x77,
    ];
    let sizes = [0usize, 4, 8, 19, 20, 21, 24, 32, 68, 100];
    for seed in 1..=4u64 {
        let mut noise = Noise(seed ^ 0xDEAD_BEEF);
        let mut raw = Raw::session(node.tcp, Role::Switch, "");
        let mut stream = Vec::new();
        let mut sent_ops = Vec::new();
        for request_id in 0..300u32 {
            let op = ops[noise.below(ops.len() as u64) as usize];
            let size = sizes[noise.below(sizes.len() as u64) as usize];
            stream.extend(frame(op, request_id, &noise.bytes(size)));
            sent_ops.push(op);
        }
        raw.send(&stream);
        let mut seen = HashSet::new();
        while seen.len() < sent_ops.len() {
            let (header, _) = raw.expect_frame();
            let id = header.request_id as usize;
            assert!(seen.insert(id), "request {id} answered twice");
            assert_eq!(header.opcode, sent_ops[id], "answer {id} echoes its opcode");
            let is_write = (0x20..=0x25).contains(&header.opcode);
            assert!(
                !(is_write && header.status == status::OK),
                "a switch's random write was done"
            );
        }
        ping(&mut raw, 10_000);
        watch.check(&format!("random frames after HELLO, seed {seed}"));
    }
    watch.finish(&mut node);
}

#[test]
fn random_bytes_before_hello_are_refused() {
    let mut node = Node::start(&["--shards", "2"]);
    let mut watch = Watch::start(&node);
    for seed in 1..=12u64 {
        let mut noise = Noise(seed.wrapping_mul(0xA076_1D64_78BD_642F));
        let mut raw = Raw::connect(node.tcp);
        let _ = raw.try_send(&noise.bytes(4096));
        let (frames, ending) = raw.until_end();
        assert_ne!(ending, Ending::StillOpen, "seed {seed}");
        for (header, _) in &frames {
            assert_eq!(status::name(header.status), "unauthorised", "seed {seed}");
        }
        watch.check(&format!("random bytes before HELLO, seed {seed}"));
    }
    // A well-framed request before HELLO: refused once, then closed, and
    // what follows it is ignored.
    for first in [
        frame(opcode::PING, 5, &[]),
        lookup_frame(5, lookup_body(&watch.expected[0].0)),
        frame(0x77, 5, &[1, 2, 3]),
        // HELLO whose credential length disagrees with its frame.
        frame(opcode::HELLO, 5, &[1, 0, 1, 9, 0]),
        // HELLO with a role that does not exist.
        frame(opcode::HELLO, 5, &[1, 0, 9, 0]),
    ] {
        let mut raw = Raw::connect(node.tcp);
        let mut bytes = first.clone();
        bytes.extend(frame(opcode::PING, 6, &[]));
        raw.send(&bytes);
        let (frames, ending) = raw.until_end();
        let answers: Vec<(u32, &str)> = frames
            .iter()
            .map(|(h, _)| (h.request_id, status::name(h.status)))
            .collect();
        assert_eq!(answers, vec![(5, "unauthorised")], "{first:02x?}");
        assert_eq!(ending, Ending::Closed, "{first:02x?}");
        watch.check("a request before HELLO");
    }
    watch.finish(&mut node);
}

#[test]
fn truncated_frames_then_close_are_dropped_quietly() {
    let mut node = Node::start(&["--shards", "2"]);
    let mut watch = Watch::start(&node);
    let whole = lookup_frame(1, lookup_body(&watch.expected[0].0));
    for cut in [1, 3, 4, 5, 11, 12, 13, 20, whole.len() - 1] {
        for after_hello in [true, false] {
            let mut raw = if after_hello {
                Raw::session(node.tcp, Role::Switch, "")
            } else {
                Raw::connect(node.tcp)
            };
            raw.send(&whole[..cut]);
            raw.shutdown_write();
            expect_closed(&mut raw, &format!("{cut} bytes of a frame"));
            watch.check(&format!("a frame cut at {cut}"));
        }
    }
    watch.finish(&mut node);
}

#[test]
fn absurd_lengths_close_the_connection() {
    let mut node = Node::start(&["--shards", "2"]);
    let mut watch = Watch::start(&node);
    for length in [0xFFFF_FFFFu32, 5, 0, 11, 1025, 0x8000_0000, 65_536] {
        for whole_header in [false, true] {
            for after_hello in [true, false] {
                let mut raw = if after_hello {
                    Raw::session(node.tcp, Role::Switch, "")
                } else {
                    Raw::connect(node.tcp)
                };
                let mut bytes = length.to_le_bytes().to_vec();
                if whole_header {
                    bytes.extend([opcode::PING, 0, 0, 0, 9, 0, 0, 0]);
                }
                // Nothing else is sent and our side stays open: the node
                // must close on the length alone.
                let _ = raw.try_send(&bytes);
                expect_closed(&mut raw, &format!("length {length:#x}"));
                watch.check(&format!("length {length:#x}"));
            }
        }
    }
    // The largest frame the node accepts (1,024 bytes) is judged on its
    // body, and the connection goes on.
    let mut raw = Raw::session(node.tcp, Role::Switch, "");
    expect_answer(
        &mut raw,
        &frame(opcode::PING, 3, &[0; 1012]),
        opcode::PING,
        status::BAD_FRAME,
    );
    ping(&mut raw, 4);
    watch.finish(&mut node);
}

/// docs/PROTOCOL.md, section 11: after a bad length the node "sends the
/// answers to the requests before the bad frame (so the client knows which
/// were done), gives no answer to the bad frame, and closes" - including
/// the requests another core is answering. Fails today: `write_dirty`
/// (src/server/worker.rs) closes a closing connection as soon as its output
/// buffer is empty, without waiting for its `in_flight` cross-core answers.
#[test]
fn a_bad_length_after_requests_answers_them_then_closes() {
    let mut node = Node::start(&["--shards", "2"]);
    let mut watch = Watch::start(&node);
    for round in 0..20 {
        let mut raw = Raw::session(node.tcp, Role::Switch, "");
        let mut stream = Vec::new();
        for (i, (query, _)) in watch.expected.iter().enumerate() {
            codec::encode_lookup(&mut stream, i as u32, query, true);
        }
        stream.extend(frame(opcode::PING, 999, &[]));
        stream.extend(0xFFFF_FFFFu32.to_le_bytes());
        stream.extend([0; 8]);
        raw.send(&stream);
        let (frames, ending) = raw.until_end();
        assert_ne!(ending, Ending::StillOpen, "round {round}");
        let mut answered: Vec<u32> = frames.iter().map(|(h, _)| h.request_id).collect();
        answered.sort_unstable();
        let mut sent: Vec<u32> = (0..watch.expected.len() as u32).collect();
        sent.push(999);
        assert_eq!(answered, sent, "round {round}: answers before the close");
        for (header, body) in &frames {
            if header.opcode == opcode::LOOKUP {
                let (_, want) = &watch.expected[header.request_id as usize];
                let got = codec::decode_lookup_answer(header, body)
                    .map_or_else(|c| status::name(c).to_string(), |r| callee(&r));
                assert_eq!(&got, want, "round {round}");
            }
        }
        watch.check("a bad length after requests");
    }
    watch.finish(&mut node);
}

#[test]
fn unsupported_versions_are_refused_with_the_supported_range() {
    let mut node = Node::start(&["--shards", "2"]);
    let mut watch = Watch::start(&node);
    for version in [0u16, VERSION + 1, 0xFFFF] {
        let mut raw = Raw::connect(node.tcp);
        let mut bytes = hello_frame(7, version, Role::Switch, "");
        bytes.extend(frame(opcode::PING, 8, &[]));
        let (_, body) = expect_answer(&mut raw, &bytes, opcode::HELLO, status::UNSUPPORTED_VERSION);
        let mut range = VERSION_MIN.to_le_bytes().to_vec();
        range.extend(VERSION.to_le_bytes());
        assert_eq!(body, range, "the answer names the versions spoken");
        expect_closed(&mut raw, &format!("version {version}"));
        watch.check(&format!("HELLO version {version}"));
    }
    watch.finish(&mut node);
}

#[test]
fn malformed_requests_get_error_answers_and_the_connection_goes_on() {
    let mut node = Node::start(&["--shards", "2"]);
    let mut watch = Watch::start(&node);
    let good = lookup_body(&watch.expected[0].0);
    let with = |edit: &dyn Fn(&mut [u8; LOOKUP_BYTES])| {
        let mut body = good;
        edit(&mut body);
        body
    };
    let cases: Vec<(&str, Vec<u8>, u8, u8)> = vec![
        (
            "caller bytes 0x12",
            lookup_frame(1, with(&|b| b[0..8].copy_from_slice(&GARBAGE_NUMBER.0))),
            opcode::LOOKUP,
            status::BAD_NUMBER,
        ),
        (
            "X bytes 0x12",
            lookup_frame(2, with(&|b| b[8..16].copy_from_slice(&GARBAGE_NUMBER.0))),
            opcode::LOOKUP,
            status::BAD_NUMBER,
        ),
        (
            "X a real number, not 700",
            lookup_frame(
                3,
                with(&|b| b[8..16].copy_from_slice(&real("13812345678").0)),
            ),
            opcode::LOOKUP,
            status::BAD_NUMBER,
        ),
        (
            "extension with a non-digit",
            lookup_frame(4, with(&|b| b[16..18].copy_from_slice(&[0xA1, 0xFF]))),
            opcode::LOOKUP,
            status::BAD_NUMBER,
        ),
        (
            "kind 2",
            lookup_frame(5, with(&|b| b[18] = 2)),
            opcode::LOOKUP,
            status::BAD_REQUEST,
        ),
        (
            "reserved byte set",
            lookup_frame(6, with(&|b| b[19] = 1)),
            opcode::LOOKUP,
            status::BAD_FRAME,
        ),
        (
            "unknown opcode 0x77",
            frame(0x77, 7, &[1, 2, 3]),
            0x77,
            status::UNKNOWN_OPCODE,
        ),
        (
            "unknown opcode 0xFF",
            frame(0xFF, 8, &[]),
            0xFF,
            status::UNKNOWN_OPCODE,
        ),
        (
            "LOOKUP body of 19 bytes",
            frame(opcode::LOOKUP, 9, &good[..19]),
            opcode::LOOKUP,
            status::BAD_FRAME,
        ),
        (
            "LOOKUP body of 21 bytes",
            frame(opcode::LOOKUP, 10, &[&good[..], &[0]].concat()),
            opcode::LOOKUP,
            status::BAD_FRAME,
        ),
        (
            "LOOKUP without body",
            frame(opcode::LOOKUP, 11, &[]),
            opcode::LOOKUP,
            status::BAD_FRAME,
        ),
        (
            "PING with a body",
            frame(opcode::PING, 12, &[0]),
            opcode::PING,
            status::BAD_FRAME,
        ),
        (
            "STATS from a switch",
            frame(opcode::STATS, 13, &[]),
            opcode::STATS,
            status::UNAUTHORISED,
        ),
        (
            "QUERY from a switch",
            frame(opcode::QUERY, 14, &[1, 0, 0, 0, 0, 0, 0, 0]),
            opcode::QUERY,
            status::UNAUTHORISED,
        ),
    ];
    // One at a time, each followed by a PING on the same connection.
    let mut raw = Raw::session(node.tcp, Role::Switch, "");
    for (what, bytes, op, code) in &cases {
        expect_answer(&mut raw, bytes, *op, *code);
        ping(&mut raw, 100);
        watch.check(what);
    }
    // All at once, pipelined with good lookups between them: one answer
    // each, the good ones correct.
    let mut stream = Vec::new();
    let mut want = std::collections::HashMap::new();
    for (i, (_, bytes, op, code)) in cases.iter().enumerate() {
        let request_id = 1_000 + 2 * i as u32;
        let mut bytes = bytes.clone();
        bytes[8..12].copy_from_slice(&request_id.to_le_bytes());
        stream.extend(bytes);
        want.insert(request_id, (*op, status::name(*code).to_string()));
        let (query, answer) = &watch.expected[i % watch.expected.len()];
        codec::encode_lookup(&mut stream, request_id + 1, query, true);
        want.insert(request_id + 1, (opcode::LOOKUP, answer.clone()));
    }
    raw.send(&stream);
    for _ in 0..want.len() {
        let (header, body) = raw.expect_frame();
        let (op, answer) = want.remove(&header.request_id).expect("one answer per id");
        assert_eq!(header.opcode, op, "answer {}", header.request_id);
        let got = if op == opcode::LOOKUP && header.request_id % 2 == 1 {
            codec::decode_lookup_answer(&header, &body)
                .map_or_else(|c| status::name(c).to_string(), |r| callee(&r))
        } else {
            status::name(header.status).to_string()
        };
        assert_eq!(got, answer, "answer {}", header.request_id);
    }
    ping(&mut raw, 101);
    watch.finish(&mut node);
}

#[test]
fn connections_beyond_the_limit_are_closed_and_counted_back() {
    let mut node = Node::start(&SMALL_LIMITS);
    // The watch holds two connections; six more fit under the limit of 8.
    let mut watch = Watch::start(&node);
    let connect = || Client::connect(node.tcp, Role::Switch, "");
    // Dropping fixture's admin client is seen by the node a moment later.
    let deadline = Instant::now() + Duration::from_secs(2);
    let mut open = Vec::new();
    let mut refused = 0;
    while open.len() < 6 || refused < 10 {
        match connect() {
            Ok(client) => open.push(client),
            Err(_) if open.len() >= 6 => refused += 1,
            Err(error) => assert!(
                Instant::now() < deadline,
                "only {} connections admitted: {error}",
                open.len()
            ),
        }
        assert!(open.len() <= 6, "more than --max-connections admitted");
    }
    for client in &mut open {
        assert_eq!(client.ping().expect("earlier connection"), status::OK);
    }
    watch.check("connections beyond the limit");
    // Closing three frees exactly three places, whatever was refused.
    open.truncate(3);
    let deadline = Instant::now() + Duration::from_secs(2);
    let mut readmitted = 0;
    while readmitted < 3 {
        match connect() {
            Ok(client) => {
                open.push(client);
                readmitted += 1;
            }
            Err(error) => assert!(
                Instant::now() < deadline,
                "closed places not freed ({readmitted} of 3): {error}"
            ),
        }
    }
    assert!(connect().is_err(), "a ninth connection was admitted");
    for client in &mut open {
        assert_eq!(client.ping().expect("admitted connection"), status::OK);
    }
    drop(open);
    watch.finish(&mut node);
}

#[test]
fn a_client_that_never_reads_is_cut_off() {
    let mut node = Node::start(&SMALL_LIMITS);
    let mut watch = Watch::start(&node);
    let mut flood = Raw::session(node.tcp, Role::Switch, "");
    let mut chunk = Vec::new();
    let mut request_id = 0u32;
    while chunk.len() < 64 * 1024 {
        let (query, _) = &watch.expected[request_id as usize % 3];
        codec::encode_lookup(&mut chunk, request_id, query, true);
        request_id += 1;
    }
    // Pipelines without reading until the node cuts it off; 256 MiB or
    // 20 s would mean it never does.
    let started = Instant::now();
    let mut sent_bytes = 0usize;
    let cut_off = loop {
        match flood.try_send(&chunk) {
            Ok(()) => {}
            Err(error) if matches!(error.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {
                panic!("the node stopped reading the flood but kept the connection open")
            }
            Err(_) => break true,
        }
        sent_bytes += chunk.len();
        if sent_bytes > 256 << 20 || started.elapsed() > Duration::from_secs(20) {
            break false;
        }
        if sent_bytes % (1 << 20) < chunk.len() {
            watch.check("a flood in progress");
        }
    };
    assert!(
        cut_off,
        "a client that never reads was not cut off after {} MiB",
        sent_bytes >> 20
    );
    let (_, ending) = flood.until_end();
    assert_ne!(ending, Ending::StillOpen);
    watch.check("a cut-off flood");
    watch.finish(&mut node);
}

#[test]
fn cross_core_overload_is_answered_busy_not_queued() {
    let mut node = Node::start(&SMALL_LIMITS);
    let mut watch = Watch::start(&node);
    let routed: Vec<(LookupQuery, String)> = watch
        .expected
        .iter()
        .filter(|(_, answer)| !answer.starts_with("reject"))
        .cloned()
        .collect();
    let mut raw = Raw::session(node.tcp, Role::Switch, "");
    for round in 0..5 {
        const SENT: u32 = 400;
        let mut stream = Vec::new();
        for request_id in 0..SENT {
            let (query, _) = &routed[request_id as usize % routed.len()];
            codec::encode_lookup(&mut stream, request_id, query, true);
        }
        raw.send(&stream);
        let (mut seen, mut busy) = (HashSet::new(), 0);
        for _ in 0..SENT {
            let (header, body) = raw.expect_frame();
            assert!(seen.insert(header.request_id), "answered twice");
            assert_eq!(header.opcode, opcode::LOOKUP);
            match header.status {
                status::OK => {
                    let (_, want) = &routed[header.request_id as usize % routed.len()];
                    let result: LookupResult =
                        codec::decode_lookup_answer(&header, &body).expect("route");
                    assert_eq!(&callee(&result), want);
                }
                status::BUSY => busy += 1,
                other => panic!("status {}", status::name(other)),
            }
        }
        assert!(busy <= SENT / 2, "only cross-core requests may be BUSY");
        eprintln!("round {round}: {busy} of {SENT} answered BUSY");
        // In-flight accounting came back to zero: one at a time, nothing
        // is BUSY.
        for (i, (query, want)) in routed.iter().enumerate() {
            let mut one = Vec::new();
            codec::encode_lookup(&mut one, 5_000 + i as u32, query, true);
            let (header, body) = expect_answer(&mut raw, &one, opcode::LOOKUP, status::OK);
            let result = codec::decode_lookup_answer(&header, &body).expect("route");
            assert_eq!(&callee(&result), want);
        }
        watch.check("cross-core overload");
    }
    ping(&mut raw, 9_999);
    watch.finish(&mut node);
}
