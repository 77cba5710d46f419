//! Connections and the client threads that drive them. Each thread owns a
//! few non-blocking connections on one `mio` poll: it writes every request
//! that is due (open loop) or that the pipeline has room for (closed loop)
//! in one `send` per connection, reads every answer one `recv` brought, and
//! matches answers to requests by request id (x700: answers may come out of
//! order) or by order (Redis). Buffers, request slots and histograms are
//! allocated once per connection: nothing is allocated per request.

use super::redis::{answer_of, decode_reply, RedisCodec};
use super::schedule::{Clock, End, Place, Schedule, Window};
use super::tally::Tally;
use super::workload::{Generator, Op, OpKind, DIRECTION, TENANT};
use crate::number::Number;
use crate::protocol::codec::{self, BindBody, UnbindBody};
use crate::protocol::frame::{next_frame, HEADER_BYTES};
use crate::protocol::{limits, status, Role, VERSION};
use mio::{Events, Interest, Poll, Token};
use std::io::{ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

/// Bytes of received, unparsed answers a connection holds (many answers
/// per `recv`; the largest answer frame fits).
const INPUT_BYTES: usize = 256 * 1024;
/// Unsent request bytes above which a connection stops making requests
/// until the socket drains.
const OUTPUT_HIGH_WATER_BYTES: usize = 256 * 1024;
/// Most requests one connection makes per turn, so reads are not starved.
const REQUESTS_PER_TURN_MAX: usize = 4096;
/// How often in-flight requests are checked against the timeout.
const TIMEOUT_SCAN_NS: u64 = 2_000_000;
/// Longest wait in one poll when nothing is due.
const IDLE_WAIT: Duration = Duration::from_millis(2);
/// Open loop: waits shorter than this are spun (polling without
/// sleeping). A timed sleep and its wake-up cost tens of microseconds of
/// CPU on a virtual machine, more than polling for that long, and wake
/// late; the time spun is counted apart (`client_cpu.spin_s`) so it does
/// not read as load.
const SPIN_NS: u64 = 200_000;
/// Timer slack asked of the kernel for the pacing sleeps.
const TIMER_SLACK_NS: u64 = 1_000;
/// Poll events handled per wake-up.
const EVENTS_MAX: usize = 256;
/// Longest wait for a connection and its HELLO.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// The protocol a phase speaks.
#[derive(Clone, Copy, Debug)]
pub enum Wire {
    /// x700's binary protocol, with this HELLO role.
    X700 {
        /// Role for HELLO.
        role: Role,
        /// Lifetime of bound bindings.
        ttl_s: u32,
    },
    /// RESP, in a layout.
    Redis(RedisCodec),
}

/// One phase of a run (a preload, or one measured load), for every thread.
pub struct Phase {
    /// The server.
    pub address: SocketAddr,
    /// The protocol.
    pub wire: Wire,
    /// HELLO credential (x700).
    pub token: String,
    /// Requests in flight per connection, at most (closed loop: always).
    pub pipeline: usize,
    /// Client threads.
    pub threads: usize,
    /// Open loop rate over all connections; `None` for a closed loop.
    pub rate_per_s: Option<f64>,
    /// Open loop: a thread sends at most once per this many ns, every
    /// request due by then in one `send` per connection (one send per
    /// request would cost the client and the server a system call each).
    /// Requests wait for it, and their latency, counted from their due
    /// time, shows it.
    pub send_quantum_ns: u64,
    /// Requests intended before this are not counted.
    pub warmup_ns: u64,
    /// When measuring ends (a count is split over the connections).
    pub end: End,
    /// Unanswered this long: a timeout.
    pub timeout_ns: u64,
    /// Answers received so far (for a progress bar).
    pub progress: Arc<AtomicU64>,
}

/// A request on the wire, waiting for its answer.
#[derive(Clone, Copy, Debug)]
struct Slot {
    busy: bool,
    measured: bool,
    kind: OpKind,
    request_id: u32,
    intended_ns: u64,
    sent_ns: u64,
    /// The route a lookup must get (`NONE`: a reject).
    callee: Number,
    /// A fresh binding's index, to unbind later; `u64::MAX` if none.
    fresh_index: u64,
}

const FREE: Slot = Slot {
    busy: false,
    measured: false,
    kind: OpKind::Lookup,
    request_id: 0,
    intended_ns: 0,
    sent_ns: 0,
    callee: Number::NONE,
    fresh_index: u64::MAX,
};

/// One connection and its request stream.
struct Connection {
    stream: mio::net::TcpStream,
    out: Vec<u8>,
    out_sent: usize,
    input: Box<[u8]>,
    input_start: usize,
    input_end: usize,
    slots: Box<[Slot]>,
    mask: u32,
    next_request_id: u32,
    /// Redis answers in order: the id of the next answer.
    next_answer_id: u32,
    in_flight: usize,
    generator: Generator,
    schedule: Option<Schedule>,
    window: Window,
    done_sending: bool,
    closed: bool,
}

/// Opens a connection and, for x700, says HELLO (blocking, before the
/// clock starts).
pub fn connect(address: SocketAddr, wire: &Wire, token: &str) -> Result<TcpStream, String> {
    let mut stream = TcpStream::connect_timeout(&address, CONNECT_TIMEOUT)
        .map_err(|e| format!("connect {address}: {e}"))?;
    stream
        .set_nodelay(true)
        .map_err(|e| format!("nodelay: {e}"))?;
    if let Wire::X700 { role, .. } = wire {
        stream
            .set_read_timeout(Some(CONNECT_TIMEOUT))
            .map_err(|e| e.to_string())?;
        let mut hello = Vec::new();
        codec::encode_hello(&mut hello, 0, VERSION, *role, token.as_bytes());
        stream
            .write_all(&hello)
            .map_err(|e| format!("HELLO: {e}"))?;
        let mut answer = Vec::new();
        let mut chunk = [0u8; 256];
        let header = loop {
            if let Some((header, _)) =
                next_frame(&answer, limits::ANSWER_FRAME_BYTES_MAX).map_err(|e| e.to_string())?
            {
                break header;
            }
            let n = stream
                .read(&mut chunk)
                .map_err(|e| format!("HELLO answer: {e}"))?;
            if n == 0 {
                return Err("the node closed the connection after HELLO".into());
            }
            answer.extend_from_slice(&chunk[..n]);
        };
        if header.status != status::OK {
            return Err(format!(
                "HELLO refused: {} (role {}; give --token or --role)",
                status::name(header.status),
                role.as_str()
            ));
        }
        if answer.len() > header.length as usize {
            return Err("the node answered before it was asked".into());
        }
    }
    stream
        .set_nonblocking(true)
        .map_err(|e| format!("nonblocking: {e}"))?;
    Ok(stream)
}

impl Connection {
    fn new(
        stream: TcpStream,
        generator: Generator,
        schedule: Option<Schedule>,
        window: Window,
        pipeline: usize,
    ) -> Connection {
        let capacity = pipeline.next_power_of_two();
        Connection {
            stream: mio::net::TcpStream::from_std(stream),
            out: Vec::with_capacity(OUTPUT_HIGH_WATER_BYTES + REQUESTS_PER_TURN_MAX * 128),
            out_sent: 0,
            input: vec![0u8; INPUT_BYTES].into_boxed_slice(),
            input_start: 0,
            input_end: 0,
            slots: vec![FREE; capacity].into_boxed_slice(),
            // capacity <= PIPELINE_MAX rounded up: fits u32.
            mask: u32::try_from(capacity - 1).unwrap_or(u32::MAX),
            next_request_id: 1,
            next_answer_id: 1,
            in_flight: 0,
            generator,
            schedule,
            window,
            done_sending: false,
            closed: false,
        }
    }

    fn finished(&self) -> bool {
        self.closed || (self.done_sending && self.in_flight == 0)
    }

    /// True if a request could go now (room in the pipeline and the socket).
    fn has_room(&self, pipeline: usize) -> bool {
        !self.closed
            && !self.done_sending
            && self.in_flight < pipeline
            && !self.slots[(self.next_request_id & self.mask) as usize].busy
            && self.out.len() - self.out_sent < OUTPUT_HIGH_WATER_BYTES
    }

    /// Makes every request that is due and fits, then writes.
    fn make_requests(&mut self, phase: &Phase, now_ns: u64, now_s: u32, tally: &mut Tally) {
        for _ in 0..REQUESTS_PER_TURN_MAX {
            if !self.has_room(phase.pipeline) {
                break;
            }
            let intended_ns = match &self.schedule {
                Some(schedule) => {
                    let due = schedule.due_ns();
                    if due > now_ns {
                        break;
                    }
                    due
                }
                None => now_ns,
            };
            let measured = match self.window.place(intended_ns) {
                Place::Over => {
                    self.done_sending = true;
                    break;
                }
                Place::Warmup => false,
                Place::Measured => true,
            };
            let Some(op) = self.generator.next_op() else {
                self.done_sending = true;
                break;
            };
            let request_id = self.next_request_id;
            self.next_request_id = self.next_request_id.wrapping_add(1);
            encode(&phase.wire, &op, request_id, now_s, &mut self.out);
            let (callee, fresh_index) = match op {
                Op::Lookup { callee, .. } => (callee.unwrap_or(Number::NONE), u64::MAX),
                Op::Bind(binding) if binding.fresh => (Number::NONE, binding.index),
                _ => (Number::NONE, u64::MAX),
            };
            self.slots[(request_id & self.mask) as usize] = Slot {
                busy: true,
                measured,
                kind: op.kind(),
                request_id,
                intended_ns,
                sent_ns: now_ns,
                callee,
                fresh_index,
            };
            self.in_flight += 1;
            if let Some(schedule) = &mut self.schedule {
                schedule.advance();
            }
            if measured {
                let lag = self.schedule.is_some().then(|| now_ns - intended_ns);
                tally.sent(intended_ns, lag);
            }
        }
        self.flush(tally);
    }

    /// Writes unsent requests until done or the socket is full.
    fn flush(&mut self, tally: &mut Tally) {
        while self.out_sent < self.out.len() {
            match self.stream.write(&self.out[self.out_sent..]) {
                Ok(0) => {
                    self.fail("the server stopped reading".into(), tally);
                    return;
                }
                Ok(n) => self.out_sent += n,
                Err(e) if e.kind() == ErrorKind::WouldBlock => return,
                Err(e) if e.kind() == ErrorKind::Interrupted => {}
                Err(e) => {
                    self.fail(format!("write: {e}"), tally);
                    return;
                }
            }
        }
        self.out.clear();
        self.out_sent = 0;
    }

    /// Reads everything the socket has and handles the answers.
    fn read_answers(&mut self, phase: &Phase, clock: &Clock, tally: &mut Tally) -> u64 {
        let mut answers = 0;
        loop {
            if self.input_end == self.input.len() {
                self.input.copy_within(self.input_start..self.input_end, 0);
                self.input_end -= self.input_start;
                self.input_start = 0;
                if self.input_end == self.input.len() {
                    self.fail("an answer larger than the input buffer".into(), tally);
                    return answers;
                }
            }
            match self.stream.read(&mut self.input[self.input_end..]) {
                Ok(0) => {
                    self.fail("the server closed the connection".into(), tally);
                    return answers;
                }
                Ok(n) => {
                    let short = self.input_end + n < self.input.len();
                    self.input_end += n;
                    let now_ns = clock.now_ns();
                    answers += self.take_answers(&phase.wire, now_ns, tally);
                    // A short read drained the socket: edge-triggered
                    // epoll reports the next arrival, so the would-block
                    // read is skipped (one system call fewer per wake-up).
                    if self.closed || short {
                        return answers;
                    }
                }
                Err(e) if e.kind() == ErrorKind::WouldBlock => return answers,
                Err(e) if e.kind() == ErrorKind::Interrupted => {}
                Err(e) => {
                    self.fail(format!("read: {e}"), tally);
                    return answers;
                }
            }
        }
    }

    /// Handles every complete answer in the input buffer.
    fn take_answers(&mut self, wire: &Wire, now_ns: u64, tally: &mut Tally) -> u64 {
        let mut answers = 0;
        loop {
            let input = &self.input[self.input_start..self.input_end];
            let (used, request_id, status_code, callee, repeat) = match wire {
                Wire::X700 { .. } => match next_frame(input, limits::ANSWER_FRAME_BYTES_MAX) {
                    Ok(Some((header, frame))) => {
                        let ok = header.status == status::OK;
                        let callee = if ok && frame.len() >= HEADER_BYTES + 8 {
                            let mut bytes = [0u8; 8];
                            bytes.copy_from_slice(&frame[HEADER_BYTES..HEADER_BYTES + 8]);
                            Number(bytes)
                        } else {
                            Number::NONE
                        };
                        // Read as a bind answer; only a bind's slot uses it.
                        let repeat = ok
                            && codec::decode_bind_answer(&frame[HEADER_BYTES..])
                                .is_some_and(|(_, _, created)| !created);
                        (
                            frame.len(),
                            header.request_id,
                            header.status,
                            callee,
                            repeat,
                        )
                    }
                    Ok(None) => break,
                    Err(error) => {
                        self.fail(format!("answer framing: {error}"), tally);
                        break;
                    }
                },
                Wire::Redis(_) => match decode_reply(input) {
                    Ok(Some((used, reply))) => {
                        let request_id = self.next_answer_id;
                        self.next_answer_id = self.next_answer_id.wrapping_add(1);
                        let slot = self.slots[(request_id & self.mask) as usize];
                        let (status_code, callee) = answer_of(reply, slot.kind);
                        (used, request_id, status_code, callee, false)
                    }
                    Ok(None) => break,
                    Err(error) => {
                        self.fail(error.to_string(), tally);
                        break;
                    }
                },
            };
            self.input_start += used;
            self.answer(request_id, status_code, callee, repeat, now_ns, tally);
            answers += 1;
        }
        if self.input_start == self.input_end {
            self.input_start = 0;
            self.input_end = 0;
        }
        answers
    }

    /// One answer: checks it against what its request expected. `repeat`:
    /// a bind answered ok found its binding already there.
    #[inline]
    fn answer(
        &mut self,
        request_id: u32,
        status_code: u8,
        callee: Number,
        repeat: bool,
        now_ns: u64,
        tally: &mut Tally,
    ) {
        let slot = &mut self.slots[(request_id & self.mask) as usize];
        if !slot.busy || slot.request_id != request_id {
            tally.late_answers += 1;
            return;
        }
        slot.busy = false;
        let slot = *slot;
        self.in_flight -= 1;
        let correct = match slot.kind {
            OpKind::Lookup if slot.callee.is_none() => {
                matches!(
                    status_code,
                    status::NOT_BOUND
                        | status::EXPIRED
                        | status::DIRECTION_DENIED
                        | status::NOT_A_PARTY
                )
            }
            OpKind::Lookup => status_code == status::OK && callee == slot.callee,
            OpKind::Bind | OpKind::Unbind => status_code == status::OK,
        };
        if slot.fresh_index != u64::MAX && status_code == status::OK {
            self.generator.bound(slot.fresh_index);
        }
        if slot.measured {
            tally.answered(
                slot.kind,
                status_code,
                correct,
                now_ns.saturating_sub(slot.intended_ns),
                now_ns,
            );
            if !correct && slot.kind == OpKind::Lookup && status_code <= status::BAD_NUMBER {
                tally.wrong_answers += 1;
            }
            if repeat && slot.kind == OpKind::Bind {
                tally.binds_existing += 1;
            }
        }
    }

    /// Gives up on requests unanswered for longer than the timeout.
    fn expire(&mut self, timeout_ns: u64, now_ns: u64, tally: &mut Tally) {
        if self.in_flight == 0 {
            return;
        }
        for slot in self.slots.iter_mut() {
            if slot.busy && now_ns.saturating_sub(slot.sent_ns) > timeout_ns {
                slot.busy = false;
                self.in_flight -= 1;
                if slot.measured {
                    tally.timed_out(slot.kind, now_ns - slot.intended_ns.min(now_ns), now_ns);
                }
            }
        }
    }

    /// The connection is unusable: counts what was in flight as lost.
    fn fail(&mut self, reason: String, tally: &mut Tally) {
        if self.closed {
            return;
        }
        self.closed = true;
        let mut lost = [(OpKind::Lookup, 0), (OpKind::Bind, 0), (OpKind::Unbind, 0)];
        for slot in self.slots.iter_mut().filter(|s| s.busy) {
            slot.busy = false;
            if slot.measured {
                lost[slot.kind as usize].1 += 1;
            }
        }
        self.in_flight = 0;
        // A connection closed after its last answer is not an error.
        if !(self.done_sending && lost.iter().all(|l| l.1 == 0)) {
            tally.connection_failed(reason, &lost);
        }
    }
}

/// Appends the request for `op`.
#[inline]
fn encode(wire: &Wire, op: &Op, request_id: u32, now_s: u32, out: &mut Vec<u8>) {
    match wire {
        Wire::Redis(redis) => redis.encode(op, now_s, out),
        Wire::X700 { ttl_s, .. } => match op {
            Op::Lookup { query, .. } => codec::encode_lookup(out, request_id, query, true),
            Op::Bind(binding) => codec::encode_bind(
                out,
                request_id,
                &BindBody {
                    mode: binding.mode,
                    x: binding.x,
                    a: binding.a,
                    b: binding.b,
                    tenant: TENANT,
                    ttl_s: *ttl_s,
                    direction: DIRECTION,
                    recording: false,
                    order: binding.order(),
                },
            ),
            Op::Unbind(binding) => {
                let party = if binding.mode == crate::binding::Mode::Axe {
                    binding.b
                } else {
                    binding.a
                };
                codec::encode_unbind(
                    out,
                    request_id,
                    &UnbindBody::Party {
                        x: binding.x,
                        party,
                    },
                );
            }
        },
    }
}

/// The wall clock in seconds (binding expiry times in Redis values).
fn unix_now_s() -> u32 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| u32::try_from(d.as_secs()).unwrap_or(u32::MAX))
}

/// Connects every connection of a phase, hands them to the phase's
/// threads and runs them; returns the merged tally and the clock's start.
pub fn run_phase(phase: &Phase, generators: Vec<Generator>) -> Result<Tally, String> {
    let connections = generators.len();
    let mut streams = Vec::with_capacity(connections);
    for _ in 0..connections {
        streams.push(connect(phase.address, &phase.wire, &phase.token)?);
    }
    let threads = phase.threads.clamp(1, connections.max(1));
    let mut groups: Vec<Vec<(usize, TcpStream, Generator)>> =
        (0..threads).map(|_| Vec::new()).collect();
    for (index, (stream, generator)) in streams.into_iter().zip(generators).enumerate() {
        groups[index % threads].push((index, stream, generator));
    }
    let clock = Clock::start();
    let tallies = std::thread::scope(|scope| {
        let handles: Vec<_> = groups
            .into_iter()
            .map(|group| {
                let clock = &clock;
                scope.spawn(move || drive(phase, group, connections, clock))
            })
            .collect();
        handles
            .into_iter()
            .map(|handle| {
                handle
                    .join()
                    .unwrap_or_else(|_| Err("a client thread panicked".into()))
            })
            .collect::<Vec<_>>()
    });
    let mut total = Tally::default();
    for tally in tallies {
        total.merge(&tally?);
    }
    Ok(total)
}

/// One client thread: its connections until each has sent its share and
/// heard every answer (or given up on it).
fn drive(
    phase: &Phase,
    group: Vec<(usize, TcpStream, Generator)>,
    connection_count: usize,
    clock: &Clock,
) -> Result<Tally, String> {
    crate::sys::set_timer_slack_ns(TIMER_SLACK_NS);
    let mut tally = Tally::default();
    let mut poll = Poll::new().map_err(|e| format!("poll: {e}"))?;
    let mut connections = Vec::with_capacity(group.len());
    for (token, (index, stream, generator)) in group.into_iter().enumerate() {
        let schedule = phase
            .rate_per_s
            .map(|rate| Schedule::new(rate, connection_count, index));
        let end = match phase.end {
            End::At(ns) => End::At(ns),
            End::Count(total) => {
                let count = connection_count as u64;
                End::Count(total / count + u64::from((index as u64) < total % count))
            }
        };
        let mut connection = Connection::new(
            stream,
            generator,
            schedule,
            Window::new(phase.warmup_ns, end),
            phase.pipeline,
        );
        poll.registry()
            .register(
                &mut connection.stream,
                Token(token),
                Interest::READABLE | Interest::WRITABLE,
            )
            .map_err(|e| format!("register: {e}"))?;
        connections.push(connection);
    }
    let mut events = Events::with_capacity(EVENTS_MAX);
    let mut next_scan_ns = TIMEOUT_SCAN_NS;
    let open_loop = phase.rate_per_s.is_some();
    let mut last_send_ns = 0;
    loop {
        let now_ns = clock.now_ns();
        // Open loop: requests go out at most once per quantum, so each
        // send carries every request due since the last one.
        if !open_loop || now_ns >= last_send_ns + phase.send_quantum_ns {
            last_send_ns = now_ns;
            let now_s = if matches!(phase.wire, Wire::Redis(_)) {
                unix_now_s()
            } else {
                0
            };
            for connection in &mut connections {
                connection.make_requests(phase, now_ns, now_s, &mut tally);
            }
        }
        if now_ns >= next_scan_ns {
            for connection in &mut connections {
                connection.expire(phase.timeout_ns, now_ns, &mut tally);
            }
            next_scan_ns = now_ns + TIMEOUT_SCAN_NS;
        }
        if connections.iter().all(Connection::finished) {
            break;
        }
        // Sleep until the next request is due, an answer comes, or the
        // next timeout scan; short waits are spun for precision.
        let mut wake_ns = next_scan_ns;
        if open_loop {
            let mut due_ns = u64::MAX;
            for connection in &connections {
                if connection.has_room(phase.pipeline) {
                    if let Some(schedule) = &connection.schedule {
                        due_ns = due_ns.min(schedule.due_ns());
                    }
                }
            }
            wake_ns = wake_ns.min(due_ns.max(last_send_ns + phase.send_quantum_ns));
        }
        let now_ns = clock.now_ns();
        let wait_ns = wake_ns.saturating_sub(now_ns);
        let mut spinning = false;
        let timeout = if open_loop {
            if wait_ns > SPIN_NS {
                crate::sys::wait_readable(&poll, Duration::from_nanos(wait_ns - SPIN_NS));
            } else {
                spinning = true;
            }
            Some(Duration::ZERO)
        } else {
            Some(IDLE_WAIT.min(Duration::from_nanos(wait_ns.max(1))))
        };
        if let Err(e) = poll.poll(&mut events, timeout) {
            if e.kind() != ErrorKind::Interrupted {
                return Err(format!("poll: {e}"));
            }
        }
        let mut answers = 0;
        for event in &events {
            let connection = &mut connections[event.token().0];
            if event.is_writable() {
                connection.flush(&mut tally);
            }
            if event.is_readable() || event.is_read_closed() || event.is_error() {
                answers += connection.read_answers(phase, clock, &mut tally);
            }
        }
        if spinning && events.is_empty() {
            tally.spin_ns += clock.now_ns().saturating_sub(now_ns);
        }
        if answers > 0 {
            phase.progress.fetch_add(answers, Ordering::Relaxed);
        }
    }
    Ok(tally)
}
