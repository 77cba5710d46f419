//! One event loop: pinned to a core, owning its share of the table shards,
//! serving TCP connections and UDP datagrams with `mio`.
//!
//! Per poll iteration: read every readable socket (many frames per `recv`),
//! answer local writes at once, gather local lookups into one batch (run with
//! the prefetching batch lookup), forward requests for other cores' shards
//! in one batch per core, then write each connection's answers with one
//! `send`. No allocation per request once buffers have grown.

use super::auth::Access;
use super::conn::{Connection, INPUT_BYTES};
use super::cross::{Message, Origin, WorkItem};
use super::dispatch::{self, Op};
use super::metrics::{LocalMetrics, WorkerMetrics};
use super::Shared;
use crate::binding::{LookupQuery, LookupResult, Reject};
use crate::number::XPolicy;
use crate::protocol::codec;
use crate::protocol::frame::{next_frame, push_frame, Header, HEADER_BYTES};
use crate::protocol::status;
use crate::store::ShardSet;
use crossbeam_channel::Receiver;
use mio::net::{TcpListener, UdpSocket};
use mio::{Events, Interest, Poll, Token};
use slab::Slab;
use std::io::{ErrorKind, Read, Write};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Token of the TCP listener.
const LISTENER: Token = Token(usize::MAX - 1);
/// Token of the UDP socket.
const UDP: Token = Token(usize::MAX - 2);
/// Token of the waker other loops use.
pub const WAKER: Token = Token(usize::MAX - 3);
/// Lookups gathered before a batch runs.
const LOOKUP_BATCH_MAX: usize = 256;
/// Housekeeping period: metrics are published this often.
const TICK: Duration = Duration::from_millis(10);
/// Datagrams read per readiness event before other work gets a turn.
const DATAGRAMS_PER_EVENT: usize = 64;
/// Largest UDP datagram.
const DATAGRAM_BYTES: usize = 65_536;
/// Lookups answered per datagram: their answers (44 bytes each at most)
/// must fit one UDP datagram (65,507 bytes). Frames beyond are not answered.
const LOOKUPS_PER_DATAGRAM_MAX: usize = 1024;
/// Longest time a graceful stop waits for in-flight answers to drain.
const DRAIN_DEADLINE: Duration = Duration::from_secs(3);
/// Largest LOOKUP answer frame.
const LOOKUP_ANSWER_BYTES: usize = codec::LOOKUP_ANSWER_FRAME_BYTES;

/// What reading a connection's input left it in.
enum Framing {
    /// Carry on.
    Keep,
    /// A length field could not be trusted: answer what was read, then close.
    Lost,
    /// Close now (the client does not read its answers, or it is gone).
    CutOff,
}

mod propose;
mod remote;
mod session;
mod udp;

use propose::PendingWrite;

use udp::PendingDatagram;

/// The event loop's state.
pub struct Worker {
    index: usize,
    shared: Arc<Shared>,
    poll: Poll,
    listener: Option<TcpListener>,
    udp: Option<UdpSocket>,
    inbox: Receiver<Message>,
    set: ShardSet,
    conns: Slab<Connection>,
    next_generation: u32,
    lookups: Vec<LookupQuery>,
    lookup_origins: Vec<(Origin, u32)>,
    answers: Vec<LookupResult>,
    outgoing: Vec<Vec<WorkItem>>,
    unsent_replies: Vec<(usize, Message)>,
    datagrams: Slab<PendingDatagram>,
    datagram_buffer: Box<[u8]>,
    dirty: Vec<usize>,
    scratch: Vec<u8>,
    metrics: LocalMetrics,
    shared_metrics: Arc<WorkerMetrics>,
    now_s: u32,
    iteration_started: Instant,
    policy: XPolicy,
    proposal: crate::replication::WriteBatch,
    pending_writes: Vec<PendingWrite>,
}

impl Worker {
    /// Builds a worker; sockets are registered with its poll.
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        index: usize,
        shared: Arc<Shared>,
        poll: Poll,
        listener: TcpListener,
        udp: Option<UdpSocket>,
        inbox: Receiver<Message>,
        set: ShardSet,
        shared_metrics: Arc<WorkerMetrics>,
    ) -> std::io::Result<Worker> {
        let mut listener = listener;
        poll.registry()
            .register(&mut listener, LISTENER, Interest::READABLE)?;
        let mut udp = udp;
        if let Some(socket) = udp.as_mut() {
            poll.registry().register(socket, UDP, Interest::READABLE)?;
        }
        let workers = shared.workers;
        let policy = XPolicy {
            allow_legacy: shared.config.allow_legacy_x,
        };
        Ok(Worker {
            index,
            shared,
            poll,
            listener: Some(listener),
            udp,
            inbox,
            set,
            conns: Slab::new(),
            next_generation: 1,
            lookups: Vec::with_capacity(LOOKUP_BATCH_MAX),
            lookup_origins: Vec::with_capacity(LOOKUP_BATCH_MAX),
            answers: Vec::with_capacity(LOOKUP_BATCH_MAX),
            outgoing: (0..workers).map(|_| Vec::new()).collect(),
            unsent_replies: Vec::new(),
            datagrams: Slab::new(),
            datagram_buffer: vec![0u8; DATAGRAM_BYTES].into_boxed_slice(),
            dirty: Vec::new(),
            scratch: Vec::with_capacity(1024),
            metrics: LocalMetrics::default(),
            shared_metrics,
            now_s: 0,
            iteration_started: Instant::now(),
            policy,
            proposal: crate::replication::WriteBatch::new(0),
            pending_writes: Vec::new(),
        })
    }

    /// Runs until the node stops; then drains, closes the shards cleanly and
    /// returns.
    pub fn run(mut self) -> Result<(), crate::table::TableError> {
        let mut events = Events::with_capacity(1024);
        let mut next_tick = Instant::now();
        let mut draining_since: Option<Instant> = None;
        let mut reported_drained = false;
        loop {
            let timeout = if self.unsent_replies.is_empty() {
                TICK
            } else {
                Duration::from_millis(1)
            };
            if let Err(error) = self.poll.poll(&mut events, Some(timeout)) {
                if error.kind() != ErrorKind::Interrupted {
                    eprintln!("x700: event loop {}: poll: {error}", self.index);
                }
            }
            self.iteration_started = Instant::now();
            self.now_s = self.shared.clock.now_s();
            let draining = draining_since.is_some();
            for event in &events {
                match event.token() {
                    LISTENER if !draining => self.accept(),
                    UDP if !draining => self.read_datagrams(),
                    WAKER | LISTENER | UDP => {}
                    Token(token) => {
                        if event.is_readable() && !draining {
                            self.read_connection(token, event.is_read_closed());
                        } else if event.is_readable() {
                            self.discard_input(token);
                        }
                        if event.is_writable() {
                            if let Some(conn) = self.conns.get_mut(token) {
                                if !conn.queued_for_write {
                                    conn.queued_for_write = true;
                                    self.dirty.push(token);
                                }
                            }
                        }
                        if event.is_read_closed() && event.is_write_closed() {
                            self.close(token);
                        }
                    }
                }
            }
            self.drain_inbox();
            self.run_lookups();
            self.flush_proposal();
            self.send_outgoing();
            self.retry_replies();
            self.write_dirty();
            if self.iteration_started >= next_tick {
                next_tick = self.iteration_started + TICK;
                self.tick();
            }
            if draining_since.is_none() && self.shared.stopping.load(Ordering::SeqCst) {
                self.stop_intake();
                draining_since = Some(Instant::now());
            }
            if let Some(since) = draining_since {
                let idle = self.conns.iter().all(|(_, c)| c.in_flight == 0)
                    && self.outgoing.iter().all(Vec::is_empty)
                    && self.unsent_replies.is_empty();
                // Answers are delivered once the peer has acknowledged them:
                // closing earlier, with unread requests in the socket, would
                // reset the connection and lose answers still in flight.
                let flushed = self.conns.iter().all(|(_, c)| {
                    c.pending_output() == 0
                        && crate::sys::unacknowledged_bytes(&c.stream).is_none_or(|n| n == 0)
                });
                if idle && !reported_drained {
                    reported_drained = true;
                    self.shared.busy_workers.fetch_sub(1, Ordering::SeqCst);
                }
                let everyone_idle = self.shared.busy_workers.load(Ordering::SeqCst) == 0;
                if (everyone_idle && flushed) || since.elapsed() > DRAIN_DEADLINE {
                    break;
                }
            }
        }
        if !reported_drained {
            self.shared.busy_workers.fetch_sub(1, Ordering::SeqCst);
        }
        // The replica's last checkpoint captures this loop's shards: keep
        // serving its messages until it has stopped.
        while !self.shared.replica_stopped.load(Ordering::SeqCst) {
            let _ = self.poll.poll(&mut events, Some(Duration::from_millis(10)));
            self.drain_inbox();
        }
        self.drain_inbox();
        self.tick();
        self.shared.barrier.wait();
        self.set.close()
    }

    /// While stopping: requests that arrive are not served, but they are
    /// read (and dropped) so the socket never resets over unread input.
    fn discard_input(&mut self, token: usize) {
        let Some(conn) = self.conns.get_mut(token) else {
            return;
        };
        let mut sink = [0u8; 4096];
        while let Ok(n) = conn.stream.read(&mut sink) {
            if n == 0 {
                break;
            }
        }
    }

    fn stop_intake(&mut self) {
        if let Some(mut listener) = self.listener.take() {
            let _ = self.poll.registry().deregister(&mut listener);
        }
        if let Some(mut socket) = self.udp.take() {
            let _ = self.poll.registry().deregister(&mut socket);
        }
    }

    fn tick(&mut self) {
        // Expired bindings are reclaimed by the log's sweep entries
        // (`server::apply`), deterministically: a timer here would make
        // slot reuse, and so binding ids, differ between runs.
        let queue_depth = self.inbox.len() as u64;
        self.metrics
            .publish(&self.shared_metrics, queue_depth, self.set.bindings_live());
    }

    fn accept(&mut self) {
        loop {
            let Some(listener) = self.listener.as_ref() else {
                return;
            };
            let (mut stream, peer) = match listener.accept() {
                Ok(accepted) => accepted,
                Err(error) if error.kind() == ErrorKind::WouldBlock => return,
                Err(error) => {
                    eprintln!("x700: accept: {error}");
                    return;
                }
            };
            let open = self.shared.connections.fetch_add(1, Ordering::SeqCst);
            if open >= self.shared.config.limits.connections_max {
                self.shared.connections.fetch_sub(1, Ordering::SeqCst);
                drop(stream);
                continue;
            }
            let _ = stream.set_nodelay(true);
            let entry = self.conns.vacant_entry();
            let token = entry.key();
            if self
                .poll
                .registry()
                .register(
                    &mut stream,
                    Token(token),
                    Interest::READABLE | Interest::WRITABLE,
                )
                .is_err()
            {
                self.shared.connections.fetch_sub(1, Ordering::SeqCst);
                continue;
            }
            let generation = self.next_generation;
            self.next_generation = self.next_generation.wrapping_add(1);
            let input_bytes =
                INPUT_BYTES.max(2 * self.shared.config.limits.request_frame_bytes_max as usize);
            entry.insert(Connection::new(
                stream,
                generation,
                input_bytes,
                peer.ip().is_loopback(),
            ));
            self.metrics.connections += 1;
        }
    }

    fn close(&mut self, token: usize) {
        if let Some(mut conn) = self.conns.try_remove(token) {
            let _ = self.poll.registry().deregister(&mut conn.stream);
            self.shared.connections.fetch_sub(1, Ordering::SeqCst);
            self.metrics.connections -= 1;
        }
    }

    /// Reads and serves a readable connection. `peer_closed` (the event
    /// also reported the peer's FIN) makes it read on to the end of stream.
    fn read_connection(&mut self, token: usize, peer_closed: bool) {
        loop {
            let Some(conn) = self.conns.get_mut(token) else {
                return;
            };
            if conn.closing {
                return;
            }
            conn.compact_input();
            let end = conn.end;
            let space = conn.input.len() - end;
            let read = conn.stream.read(&mut conn.input[end..]);
            match read {
                Ok(0) => {
                    self.close(token);
                    return;
                }
                Ok(n) => {
                    conn.end += n;
                    match self.process_frames(token) {
                        // A short read emptied the socket: epoll (edge
                        // triggered) reports the next arrival, so the read
                        // that would only say "would block" is skipped, one
                        // system call less per connection and iteration.
                        Framing::Keep if n < space && !peer_closed => return,
                        Framing::Keep => {}
                        Framing::Lost => {
                            // Nothing after a bad length can be trusted:
                            // stop reading, send the answers already made
                            // (the client learns which requests were done),
                            // then close.
                            if let Some(conn) = self.conns.get_mut(token) {
                                conn.closing = true;
                                if !conn.queued_for_write {
                                    conn.queued_for_write = true;
                                    self.dirty.push(token);
                                }
                            }
                            return;
                        }
                        Framing::CutOff => {
                            self.close(token);
                            return;
                        }
                    }
                }
                Err(error) if error.kind() == ErrorKind::WouldBlock => return,
                Err(error) if error.kind() == ErrorKind::Interrupted => {}
                Err(_) => {
                    self.close(token);
                    return;
                }
            }
        }
    }

    /// Handles every complete frame in the connection's input.
    fn process_frames(&mut self, token: usize) -> Framing {
        let frame_max = self.shared.config.limits.request_frame_bytes_max;
        let Some(conn) = self.conns.get_mut(token) else {
            return Framing::CutOff;
        };
        let input = std::mem::take(&mut conn.input);
        let (mut start, end) = (conn.start, conn.end);
        let mut framing = Framing::Keep;
        while start < end {
            match next_frame(&input[start..end], frame_max) {
                Ok(Some((header, frame))) => {
                    let length = frame.len();
                    self.handle_frame(token, &header, &frame[HEADER_BYTES..]);
                    start += length;
                    let Some(conn) = self.conns.get(token) else {
                        break;
                    };
                    if conn.closing {
                        break;
                    }
                }
                Ok(None) => break,
                Err(_) => {
                    framing = Framing::Lost;
                    break;
                }
            }
        }
        let Some(conn) = self.conns.get_mut(token) else {
            return Framing::CutOff;
        };
        conn.input = input;
        conn.start = start;
        if conn.closing {
            conn.start = conn.end;
        }
        if conn.pending_output() > self.shared.config.limits.output_buffer_bytes_max {
            return Framing::CutOff;
        }
        if conn.pending_output() > 0 && !conn.queued_for_write {
            conn.queued_for_write = true;
            self.dirty.push(token);
        }
        framing
    }

    fn answer(&mut self, token: usize, op_code: u8, status_code: u8, request_id: u32, body: &[u8]) {
        if let Some(conn) = self.conns.get_mut(token) {
            push_frame(&mut conn.output, op_code, status_code, request_id, body);
            self.metrics.answered(op_code, status_code);
        }
    }

    /// Sends a checked request to the loop that owns its shard, or runs it
    /// here.
    fn route(&mut self, origin: Origin, request_id: u32, op: Op, access: Access) {
        let owner = usize::from(op.table_shard(self.set.shard_count())) % self.shared.workers;
        if owner == self.index {
            if let Op::Lookup(query) = op {
                self.lookups.push(query);
                self.lookup_origins.push((origin, request_id));
                if self.lookups.len() >= LOOKUP_BATCH_MAX {
                    self.run_lookups();
                }
                return;
            }
            // Writes see every earlier request of the connection.
            self.run_lookups();
            let op_code = dispatch::op_opcode(&op);
            let mut frame = std::mem::take(&mut self.scratch);
            frame.clear();
            dispatch::execute_write(
                &mut self.set,
                &op,
                &access,
                op_code,
                request_id,
                self.now_s,
                &mut frame,
            );
            self.deliver(origin, &frame);
            self.scratch = frame;
            return;
        }
        if !self.admit(origin, dispatch::op_opcode(&op), request_id) {
            return;
        }
        self.outgoing[owner].push(WorkItem {
            origin,
            request_id,
            op,
            access,
        });
    }

    /// Counts a request that will be answered later (by another loop or
    /// the log) against its connection's in-flight limit; past the limit
    /// it is answered BUSY here and false is returned.
    fn admit(&mut self, origin: Origin, op_code: u8, request_id: u32) -> bool {
        let Origin::Tcp { token, .. } = origin else {
            return true;
        };
        let limit = self.shared.config.limits.in_flight_per_connection_max;
        let Some(conn) = self.conns.get_mut(token as usize) else {
            return false;
        };
        if conn.in_flight >= limit {
            self.answer(token as usize, op_code, status::BUSY, request_id, &[]);
            return false;
        }
        conn.in_flight += 1;
        true
    }

    /// Runs the gathered local lookups as one prefetching batch.
    fn run_lookups(&mut self) {
        if self.lookups.is_empty() {
            return;
        }
        self.answers
            .resize(self.lookups.len(), LookupResult::Reject(Reject::NotBound));
        self.set
            .lookup_batch(&self.lookups, &mut self.answers, self.now_s);
        let mut frame = [0u8; LOOKUP_ANSWER_BYTES];
        let origins = std::mem::take(&mut self.lookup_origins);
        for (i, &(origin, request_id)) in origins.iter().enumerate() {
            let length = codec::write_lookup_answer(&mut frame, request_id, &self.answers[i]);
            self.deliver(origin, &frame[..length]);
        }
        let count = origins.len() as u64;
        let latency_ns =
            u64::try_from(self.iteration_started.elapsed().as_nanos()).unwrap_or(u64::MAX);
        self.metrics.latency(latency_ns, count);
        self.lookup_origins = origins;
        self.lookup_origins.clear();
        self.lookups.clear();
    }

    /// Puts one answer frame where its request came from.
    fn deliver(&mut self, origin: Origin, frame: &[u8]) {
        let header = frame
            .first_chunk::<HEADER_BYTES>()
            .map(Header::read)
            .unwrap_or_default();
        self.metrics.answered(header.opcode, header.status);
        match origin {
            Origin::Tcp { token, generation } => {
                let token = token as usize;
                if let Some(conn) = self.conns.get_mut(token) {
                    if conn.generation == generation {
                        conn.output.extend_from_slice(frame);
                        if !conn.queued_for_write {
                            conn.queued_for_write = true;
                            self.dirty.push(token);
                        }
                    }
                }
            }
            Origin::Udp { datagram, slot } => {
                self.deliver_datagram_answer(datagram as usize, slot, frame)
            }
        }
    }

    fn write_dirty(&mut self) {
        let limit = self.shared.config.limits.output_buffer_bytes_max;
        let mut dirty = std::mem::take(&mut self.dirty);
        dirty.sort_unstable();
        dirty.dedup();
        for &token in &dirty {
            let Some(conn) = self.conns.get_mut(token) else {
                continue;
            };
            conn.queued_for_write = false;
            let mut broken = false;
            while conn.sent < conn.output.len() {
                match conn.stream.write(&conn.output[conn.sent..]) {
                    Ok(0) => {
                        broken = true;
                        break;
                    }
                    Ok(n) => conn.sent += n,
                    Err(error) if error.kind() == ErrorKind::WouldBlock => break,
                    Err(error) if error.kind() == ErrorKind::Interrupted => {}
                    Err(_) => {
                        broken = true;
                        break;
                    }
                }
            }
            if conn.sent == conn.output.len() {
                conn.output.clear();
                conn.sent = 0;
            }
            // A client that stops reading is cut off once its answers pile
            // up past the limit; nobody else waits for it.
            let cut_off = conn.pending_output() > limit;
            // Answers still owed by another core must arrive first.
            let finished = conn.closing && conn.pending_output() == 0 && conn.in_flight == 0;
            if broken || cut_off || finished {
                self.close(token);
            }
        }
        dirty.clear();
        self.dirty = dirty;
    }
}

fn offset(position: usize) -> u32 {
    u32::try_from(position).unwrap_or(u32::MAX)
}
