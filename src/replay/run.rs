//! Sending a plan: one TCP connection per captured connection, all at
//! once, each opening with its HELLO and then sending its requests at
//! their captured offsets divided by the speed, or as fast as the server
//! takes them with a bounded window. Captured UDP lookups go to the UDP
//! address from one socket per captured client address, the frames a
//! captured datagram held (same capture time) in one datagram again. A
//! reader thread per connection matches answers to requests by request id
//! and times them.

use super::ids::{IdMap, IdSummary};
use super::plan::{ConnectionPlan, Plan};
use crate::capture::Protocol;
use crate::protocol::codec::encode_hello;
use crate::protocol::frame::{next_frame, Header};
use crate::protocol::limits::ANSWER_FRAME_BYTES_MAX;
use crate::protocol::{opcode, status, Role};
use std::collections::{HashMap, VecDeque};
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream, UdpSocket};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Condvar, Mutex};
use std::time::{Duration, Instant};

/// Connections replayed at once; more wait for a free slot (their timing
/// then slips).
pub const CONNECTIONS_MAX: usize = 256;
/// Requests in flight per connection, at every speed.
pub const WINDOW_DEFAULT: usize = 256;
/// How long a connection waits for an answer before giving up on the rest.
pub const ANSWER_TIMEOUT: Duration = Duration::from_secs(5);
/// How long a UDP flow waits for an answer datagram: UDP may lose it, and
/// a switch would have retried by then.
pub const UDP_ANSWER_TIMEOUT: Duration = Duration::from_secs(1);
/// Lookups per replayed datagram (PROTOCOL.md: keep to 32).
pub const DATAGRAM_LOOKUPS_MAX: usize = 32;
/// How long connecting and the HELLO may take.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// How fast to send.
#[derive(Clone, Copy, PartialEq, Debug)]
pub enum Speed {
    /// Captured offsets divided by this factor (1: original timing).
    Times(f64),
    /// As fast as the connection takes them.
    Max,
}

/// How to replay.
#[derive(Clone, Debug)]
pub struct Options {
    /// The server's TCP address.
    pub server: SocketAddr,
    /// The server's UDP address (captured UDP lookups go there).
    pub udp: SocketAddr,
    /// How fast.
    pub speed: Speed,
    /// The credential a HELLO carries, by role.
    pub credentials: Credentials,
    /// Requests in flight per connection, at every speed.
    pub window: usize,
}

/// The credentials replayed HELLOs carry: one per role, else a default.
#[derive(Clone, Debug, Default)]
pub struct Credentials {
    /// For a role without its own.
    pub default: Vec<u8>,
    /// Switch, platform, admin.
    pub by_role: [Option<Vec<u8>>; 3],
}

impl Credentials {
    /// The credential a HELLO claiming `role` carries.
    pub fn of(&self, role: Role) -> &[u8] {
        let index = usize::from(role.code()).saturating_sub(1);
        self.by_role
            .get(index)
            .and_then(Option::as_deref)
            .unwrap_or(&self.default)
    }
}

/// A replayed answer.
#[derive(Clone, Debug)]
pub struct Answer {
    /// The index of its request in the connection's plan.
    pub request: usize,
    /// From sending the request to reading the whole answer.
    pub latency_us: u64,
    /// The whole answer frame.
    pub bytes: Vec<u8>,
}

/// What one connection's replay did.
#[derive(Clone, Debug, Default)]
pub struct ConnectionOutcome {
    /// Its captured connection number.
    pub connection: usize,
    /// Requests written to the socket.
    pub sent: u64,
    /// Answers read, matched to their requests.
    pub answers: Vec<Answer>,
    /// Why it stopped early, if it did.
    pub error: Option<String>,
}

impl ConnectionOutcome {
    /// A connection that could not start.
    fn failed(connection: &ConnectionPlan, error: String) -> ConnectionOutcome {
        ConnectionOutcome {
            connection: connection.connection,
            error: Some(error),
            ..ConnectionOutcome::default()
        }
    }
}

/// Requests waiting for their answer, by request id (ids may repeat).
#[derive(Default)]
struct Pending {
    by_id: HashMap<u32, VecDeque<(usize, Instant)>>,
    in_flight: usize,
    sending_done: bool,
    reader_done: bool,
}

/// What a replay did: each connection's outcome, and the binding ids.
#[derive(Debug, Default)]
pub struct Replayed {
    /// One per planned connection, in plan order.
    pub outcomes: Vec<ConnectionOutcome>,
    /// The captured-to-replayed binding ids and how many requests used them.
    pub ids: IdSummary,
}

/// What every connection of a replay shares.
struct Shared<'a> {
    options: &'a Options,
    /// When the replay began: timed requests are due from it.
    start: Instant,
    /// Answers read, over all connections.
    progress: &'a AtomicU64,
    ids: &'a IdMap,
}

/// Replays every connection of `plan`; `progress` counts answers read.
pub fn run(plan: &Plan, options: &Options, progress: &AtomicU64) -> Replayed {
    let ids = IdMap::new(plan);
    let shared = Shared {
        options,
        start: Instant::now(),
        progress,
        ids: &ids,
    };
    let shared = &shared;
    let mut outcomes = Vec::with_capacity(plan.connections.len());
    for batch in plan.connections.chunks(CONNECTIONS_MAX) {
        std::thread::scope(|scope| {
            let handles: Vec<_> = batch
                .iter()
                .map(|connection| {
                    scope.spawn(move || {
                        let outcome = match connection.protocol {
                            Protocol::Tcp => replay_connection(connection, shared),
                            Protocol::Udp => replay_datagrams(connection, shared),
                        };
                        shared.ids.give_up(connection, &outcome.answers);
                        outcome
                    })
                })
                .collect();
            for (handle, connection) in handles.into_iter().zip(batch) {
                outcomes.push(handle.join().unwrap_or_else(|_| {
                    ConnectionOutcome::failed(connection, "replay thread panicked".into())
                }));
            }
        });
    }
    Replayed {
        outcomes,
        ids: ids.summary(),
    }
}

/// Reads one whole frame into `buffer`'s front; `Ok(None)` at a clean end.
fn read_frame(
    stream: &mut TcpStream,
    buffer: &mut Vec<u8>,
) -> std::io::Result<Option<(Header, Vec<u8>)>> {
    loop {
        match next_frame(buffer, ANSWER_FRAME_BYTES_MAX) {
            Ok(Some((header, bytes))) => {
                let frame = bytes.to_vec();
                buffer.drain(..frame.len());
                return Ok(Some((header, frame)));
            }
            Ok(None) => {}
            Err(error) => {
                return Err(std::io::Error::new(
                    std::io::ErrorKind::InvalidData,
                    error.to_string(),
                ))
            }
        }
        let mut chunk = [0u8; 16 * 1024];
        let read = stream.read(&mut chunk)?;
        if read == 0 {
            return Ok(None);
        }
        buffer.extend_from_slice(&chunk[..read]);
    }
}

fn hello(connection: &ConnectionPlan, options: &Options) -> Result<(TcpStream, Vec<u8>), String> {
    let mut stream = TcpStream::connect_timeout(&options.server, CONNECT_TIMEOUT)
        .map_err(|error| format!("connect to {}: {error}", options.server))?;
    let _ = stream.set_nodelay(true);
    stream
        .set_read_timeout(Some(CONNECT_TIMEOUT))
        .map_err(|error| error.to_string())?;
    let mut frame = Vec::new();
    let hello = connection.hello;
    encode_hello(
        &mut frame,
        hello.request_id,
        hello.version,
        hello.role,
        options.credentials.of(hello.role),
    );
    stream
        .write_all(&frame)
        .map_err(|error| format!("send HELLO: {error}"))?;
    let mut buffer = Vec::new();
    match read_frame(&mut stream, &mut buffer) {
        Ok(Some((header, _))) if header.opcode == opcode::HELLO && header.status == status::OK => {
            Ok((stream, buffer))
        }
        Ok(Some((header, _))) => Err(format!("HELLO refused: {}", status::name(header.status))),
        Ok(None) => Err("server closed the connection after HELLO".into()),
        Err(error) => Err(format!("HELLO answer: {error}")),
    }
}

/// The requests of a connection, grouped into writes: one request per
/// write on TCP; on UDP the requests of one captured datagram (the same
/// capture time), at most `DATAGRAM_LOOKUPS_MAX`.
fn writes(connection: &ConnectionPlan) -> Vec<std::ops::Range<usize>> {
    let requests = &connection.requests;
    let mut writes = Vec::new();
    let mut first = 0;
    while first < requests.len() {
        let mut end = first + 1;
        if connection.protocol == Protocol::Udp {
            while end < requests.len()
                && end - first < DATAGRAM_LOOKUPS_MAX
                && requests[end].offset_ns == requests[first].offset_ns
            {
                end += 1;
            }
        }
        writes.push(first..end);
        first = end;
    }
    writes
}

/// Sends a connection's requests at their time (or within the window),
/// noting each as pending before it is written; `write` sends the bytes of
/// one write. Returns the requests written and why it stopped early.
fn send_requests(
    connection: &ConnectionPlan,
    shared: &Shared<'_>,
    pending: &Mutex<Pending>,
    changed: &Condvar,
    mut write: impl FnMut(&[u8]) -> std::io::Result<()>,
) -> (u64, Option<String>) {
    let window = shared.options.window.max(1);
    let mut sent = 0u64;
    let mut bytes = Vec::new();
    for group in writes(connection) {
        let requests = &connection.requests[group.clone()];
        let offset_ns = requests.first().map_or(0, |request| request.offset_ns);
        if let Speed::Times(factor) = shared.options.speed {
            let due = shared.start + Duration::from_secs_f64(offset_ns as f64 / 1e9 / factor);
            let now = Instant::now();
            if due > now {
                std::thread::sleep(due - now);
            }
        }
        // The window holds at every speed: a timed replay N times faster
        // than the capture must not pile more requests on a connection
        // than a client would (the node answers `busy` past its own limit).
        // The reader always says when it stops, so this wait ends.
        drop(
            changed
                .wait_while(lock(pending), |state| {
                    state.in_flight >= window && !state.reader_done
                })
                .unwrap_or_else(std::sync::PoisonError::into_inner),
        );
        // Ids are rewritten before the request is noted: a request may wait
        // for another connection's BIND answer (or this one's reader).
        bytes.clear();
        for request in requests {
            shared.ids.push_request(request, &mut bytes);
        }
        {
            let mut state = lock(pending);
            if state.reader_done {
                break;
            }
            let now = Instant::now();
            for (index, request) in group.clone().zip(requests) {
                state
                    .by_id
                    .entry(request.request_id)
                    .or_default()
                    .push_back((index, now));
                state.in_flight += 1;
            }
        }
        if let Err(error) = write(&bytes) {
            return (sent, Some(format!("send: {error}")));
        }
        sent += requests.len() as u64;
    }
    (sent, None)
}

/// One connection's exchange over any transport: a reader thread takes
/// answers from `next_frame` (which gives up after a short read timeout)
/// while this thread sends with `write`.
fn exchange(
    connection: &ConnectionPlan,
    shared: &Shared<'_>,
    answer_timeout: Duration,
    next_frame: impl FnMut() -> std::io::Result<Option<(Header, Vec<u8>)>> + Send,
    write: impl FnMut(&[u8]) -> std::io::Result<()>,
) -> ConnectionOutcome {
    let pending = Mutex::new(Pending::default());
    let changed = Condvar::new();
    let (sent, send_error, (answers, read_error)) = std::thread::scope(|scope| {
        let reader = scope.spawn(|| {
            read_answers(
                next_frame,
                connection,
                shared,
                answer_timeout,
                &pending,
                &changed,
            )
        });
        let (sent, send_error) = send_requests(connection, shared, &pending, &changed, write);
        lock(&pending).sending_done = true;
        changed.notify_all();
        let read = reader
            .join()
            .unwrap_or_else(|_| (Vec::new(), Some("reader panicked".into())));
        (sent, send_error, read)
    });
    ConnectionOutcome {
        connection: connection.connection,
        sent,
        answers,
        error: send_error.or(read_error),
    }
}

fn replay_connection(connection: &ConnectionPlan, shared: &Shared<'_>) -> ConnectionOutcome {
    let opened = hello(connection, shared.options).and_then(|(stream, buffer)| {
        let reader = stream.try_clone().map_err(|error| error.to_string())?;
        let _ = reader.set_read_timeout(Some(Duration::from_millis(100)));
        Ok((stream, reader, buffer))
    });
    let (mut stream, mut reader, mut buffer) = match opened {
        Ok(opened) => opened,
        Err(error) => return ConnectionOutcome::failed(connection, error),
    };
    let next = || read_frame(&mut reader, &mut buffer);
    let write = |bytes: &[u8]| stream.write_all(bytes);
    let outcome = exchange(connection, shared, ANSWER_TIMEOUT, next, write);
    let _ = stream.shutdown(std::net::Shutdown::Both);
    outcome
}

/// Replays a captured UDP flow: its datagrams from one socket.
fn replay_datagrams(connection: &ConnectionPlan, shared: &Shared<'_>) -> ConnectionOutcome {
    let udp = shared.options.udp;
    let local: SocketAddr = if udp.is_ipv4() {
        (std::net::Ipv4Addr::UNSPECIFIED, 0).into()
    } else {
        (std::net::Ipv6Addr::UNSPECIFIED, 0).into()
    };
    let socket = match UdpSocket::bind(local).and_then(|socket| {
        socket.connect(udp)?;
        socket.set_read_timeout(Some(Duration::from_millis(100)))?;
        Ok(socket)
    }) {
        Ok(socket) => socket,
        Err(error) => {
            let error = format!("udp socket to {udp}: {error}");
            return ConnectionOutcome::failed(connection, error);
        }
    };
    let mut frames: VecDeque<(Header, Vec<u8>)> = VecDeque::new();
    let mut datagram = vec![0u8; 64 * 1024];
    let next = || loop {
        if let Some(frame) = frames.pop_front() {
            return Ok(Some(frame));
        }
        let length = socket.recv(&mut datagram)?;
        let mut rest = &datagram[..length];
        while let Ok(Some((header, frame))) = next_frame(rest, ANSWER_FRAME_BYTES_MAX) {
            frames.push_back((header, frame.to_vec()));
            rest = &rest[frame.len()..];
        }
    };
    let write = |bytes: &[u8]| socket.send(bytes).map(drop);
    exchange(connection, shared, UDP_ANSWER_TIMEOUT, next, write)
}

type ReaderResult = (Vec<Answer>, Option<String>);

fn lock(pending: &Mutex<Pending>) -> std::sync::MutexGuard<'_, Pending> {
    // A poisoned lock only means the other thread panicked: its counts are
    // still the best there are.
    pending
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// Reads answers from `next_frame` (which gives up after a short read
/// timeout) until every sent request has one, the server closes, or none
/// comes for `answer_timeout`.
fn read_answers(
    mut next_frame: impl FnMut() -> std::io::Result<Option<(Header, Vec<u8>)>>,
    connection: &ConnectionPlan,
    shared: &Shared<'_>,
    answer_timeout: Duration,
    pending: &Mutex<Pending>,
    changed: &Condvar,
) -> ReaderResult {
    let mut answers = Vec::new();
    let mut last_answer = Instant::now();
    let error = loop {
        {
            let state = lock(pending);
            if state.sending_done && state.in_flight == 0 {
                break None;
            }
            if state.in_flight == 0 {
                last_answer = Instant::now();
            }
        }
        match next_frame() {
            Ok(Some((header, bytes))) => {
                last_answer = Instant::now();
                let mut state = lock(pending);
                let Some((request, sent_at)) = state
                    .by_id
                    .get_mut(&header.request_id)
                    .and_then(VecDeque::pop_front)
                else {
                    continue;
                };
                state.in_flight -= 1;
                drop(state);
                changed.notify_all();
                if let Some(planned) = connection.requests.get(request) {
                    shared.ids.learn(planned, Some(&bytes));
                }
                shared.progress.fetch_add(1, Ordering::Relaxed);
                answers.push(Answer {
                    request,
                    latency_us: u64::try_from(sent_at.elapsed().as_micros()).unwrap_or(u64::MAX),
                    bytes,
                });
            }
            Ok(None) => break Some("server closed the connection".to_string()),
            Err(error)
                if matches!(
                    error.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) =>
            {
                if last_answer.elapsed() > answer_timeout {
                    let seconds = answer_timeout.as_secs_f64();
                    break Some(format!("no answer for {seconds:.1}s"));
                }
            }
            Err(error) => break Some(format!("read: {error}")),
        }
    };
    let mut state = lock(pending);
    state.reader_done = true;
    let cut_short = state.in_flight > 0 || !state.sending_done;
    drop(state);
    changed.notify_all();
    let error = error.filter(|_| cut_short);
    (answers, error)
}
