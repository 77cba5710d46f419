//! One event loop: pinned to a core, owning its share of the table shards,
//! serving TCP connections and UDP datagrams over one of two I/O backends:
//! `mio` over epoll (`epoll.rs`) or io_uring (`uring/`). The backends only
//! move bytes; connections, framing, dispatch and answers are one copy.
//!
//! Per iteration: take in what arrived (epoll: read every readable socket,
//! many frames per `recv`; io_uring: handle the completions, frames read in
//! place from the provided buffers; `read.rs`), gather local lookups into one batch (run with the
//! prefetching batch lookup, `route.rs`), forward requests for other cores'
//! shards in one batch per core (`remote.rs`), gather writes into one batch
//! for the log (`propose.rs`), then write each connection's answers with one
//! `send` (`write.rs`; io_uring: one send request each, all submitted with
//! the next wait in one `io_uring_enter`). Connections are accepted and
//! closed in `accept.rs`.
//! No allocation per request once buffers have grown.

use super::config::IoBackend;
use super::conn::Connection;
use super::cross::{Message, Origin, WorkItem};
use super::limits::LogBudget;
use super::metrics::{LocalMetrics, WorkerMetrics};
use super::Shared;
use crate::binding::{LookupQuery, LookupResult};
use crate::number::XPolicy;
use crate::protocol::codec;
use crate::store::ShardSet;
use crossbeam_channel::Receiver;
use mio::net::{TcpListener, UdpSocket};
use mio::{Interest, Poll, Token};
use slab::Slab;
use std::io::ErrorKind;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Token of the TCP listener.
const LISTENER: Token = Token(usize::MAX - 1);
/// Token of the UDP socket.
const UDP: Token = Token(usize::MAX - 2);
/// Token of the waker other loops use.
pub const WAKER: Token = Token(usize::MAX - 3);
/// Token of the ENUM front-end's own poll (`enum_dns.rs`).
const ENUM: Token = Token(usize::MAX - 4);
/// Lookups gathered before a batch runs.
const LOOKUP_BATCH_MAX: usize = 256;
/// Housekeeping period: metrics are published this often.
const TICK: Duration = Duration::from_millis(10);
/// Pages a loop looks at per tick when it gives committed pages back to the
/// kernel (`ShardSet::give_back`): about 8 MiB, some 100 us of `madvise`.
const GIVE_BACK_PAGES_PER_TICK: usize = 2048;
/// Connections are checked against the HELLO deadline and the idle
/// timeout this often.
const SWEEP: Duration = Duration::from_millis(250);
/// Log lines a loop writes per second about what clients did wrong.
const CLIENT_LOG_LINES_PER_S: u32 = 5;
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

/// Why an event loop could not be built.
#[derive(Debug, thiserror::Error)]
pub enum WorkerError {
    /// A socket could not be registered with epoll.
    #[error("register: {0}")]
    Register(#[from] std::io::Error),
    /// The kernel refused io_uring, or lacks what the backend uses.
    #[error("io_uring: {0}")]
    Uring(#[from] RingError),
}

/// What reading a connection's input left it in.
enum Framing {
    /// Carry on.
    Keep,
    /// A length field could not be trusted: answer what was read, then close.
    Lost,
    /// Close now (the client does not read its answers, or it is gone).
    CutOff,
}

mod accept;
mod enum_dns;
mod epoll;
mod front_tcp;
mod propose;
mod read;
mod remote;
mod route;
mod session;
mod sip;
mod tenancy;
mod udp;
mod uring;
mod write;

pub use enum_dns::EnumSockets;
pub use sip::SipFront;
pub use uring::{probe as probe_uring, RingError};

/// The I/O backend of one loop (`config::IoBackend`).
enum Backend {
    Epoll(epoll::Epoll),
    Uring(Box<uring::Uring>),
}

use propose::PendingWrite;

/// Committed write batches and where their answers go (`Message::Apply`).
type HeldApply = (
    Arc<Vec<(u64, crate::replication::WriteBatch)>>,
    tokio::sync::oneshot::Sender<Vec<super::apply::PartialAnswers>>,
);
use udp::PendingDatagram;

/// The event loop's state.
pub struct Worker {
    index: usize,
    shared: Arc<Shared>,
    /// The loop's mio poll: every socket with epoll; only the waker with
    /// io_uring (whose ring watches this poll's descriptor).
    poll: Poll,
    io: Backend,
    listener: Option<TcpListener>,
    udp: Option<UdpSocket>,
    inbox: Receiver<Message>,
    set: ShardSet,
    /// The loop that owns each table shard (shard modulo loops, worked out
    /// once rather than divided per request).
    shard_owner: Box<[usize]>,
    conns: Slab<Connection>,
    next_generation: u32,
    lookups: Vec<LookupQuery>,
    lookup_origins: Vec<(Origin, u32)>,
    answers: Vec<LookupResult>,
    outgoing: Vec<Vec<WorkItem>>,
    unsent_replies: Vec<(usize, Message)>,
    datagrams: Slab<PendingDatagram>,
    datagram_buffer: Box<[u8]>,
    /// Every read lands here; frames are handled in place and only a
    /// partial frame (or a held read's frames) is copied to the connection.
    read_buffer: Box<[u8]>,
    dirty: Vec<usize>,
    /// Connections whose held read may go on (their writes are answered).
    resumed: Vec<usize>,
    /// Connections held by a WAIT_INDEX (`read.rs`).
    index_waits: Vec<usize>,
    scratch: Vec<u8>,
    metrics: LocalMetrics,
    shared_metrics: Arc<WorkerMetrics>,
    now_s: u32,
    /// Milliseconds since `started`, read once per iteration.
    now_ms: u64,
    started: Instant,
    iteration_started: Instant,
    /// The node is stopping: intake closed, new requests refused.
    draining: bool,
    /// The node's unsent output is beyond its limit: answer BUSY.
    output_full: bool,
    /// The UDP socket may hold datagrams not read yet.
    udp_more: bool,
    /// The inbox holds committed writes not applied yet (one chunk is
    /// applied per iteration).
    inbox_more: bool,
    /// A chunk of committed writes taken from the inbox, applied next
    /// iteration.
    held_apply: Option<HeldApply>,
    /// Unsent output bytes of this loop's connections...
    output_bytes: usize,
    /// ... and how much of it the node-wide total already counts.
    output_bytes_published: usize,
    /// Log lines about clients (refused HELLOs, refused connections).
    client_log: LogBudget,
    policy: XPolicy,
    proposal: crate::replication::WriteBatch,
    pending_writes: Vec<PendingWrite>,
    /// The TCP listener's address: a captured connection's node end when
    /// its own could not be read.
    tcp_local: std::net::SocketAddr,
    /// The UDP socket's address, for captured datagrams.
    udp_local: std::net::SocketAddr,
    /// Per connection slot, bytes captured so far from the client and to
    /// it: a chunk's place in its stream, so a chunk the capture drops
    /// shows as a hole, not as a stream that looks whole. Grown to the
    /// highest slot used while capturing (at most `connections_max`).
    capture_offsets: Vec<[u64; 2]>,
    /// The SIP front-end's sockets, connections and pending requests.
    sip: Option<Box<sip::Sip>>,
    /// BIND_AXB_AUTO writes proposed and not yet answered: the
    /// allocator's provisional binding for each, by (origin, request id).
    auto_pending: std::collections::HashMap<(Origin, u32), u64>,
    /// The next provisional binding id (`tenancy`).
    provisional_next: u64,
    /// Binds proposed this second, by tenant (the `binds_per_s` quota).
    binds_this_second: (u32, std::collections::HashMap<u32, u32>),
    /// The ENUM front-end, if the node serves one.
    enum_front: Option<Box<enum_dns::EnumFront>>,
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
    ) -> Result<Worker, WorkerError> {
        let mut listener = listener;
        let mut udp = udp;
        let io = match shared.config.io {
            IoBackend::Epoll => {
                poll.registry()
                    .register(&mut listener, LISTENER, Interest::READABLE)?;
                if let Some(socket) = udp.as_mut() {
                    poll.registry().register(socket, UDP, Interest::READABLE)?;
                }
                Backend::Epoll(epoll::Epoll::new())
            }
            IoBackend::Uring => Backend::Uring(Box::new(uring::Uring::new()?)),
        };
        let tcp_local = listener
            .local_addr()
            .unwrap_or_else(|_| std::net::SocketAddr::from(([0, 0, 0, 0], 0)));
        let udp_local = udp
            .as_ref()
            .and_then(|socket| socket.local_addr().ok())
            .unwrap_or(tcp_local);
        let enum_front = match shared.enum_dns.as_ref() {
            Some(sockets) => Some(enum_dns::EnumFront::new(sockets, &poll)?),
            None => None,
        };
        let sip = sip::Sip::open(shared.sip.as_ref(), poll.registry())?;
        let workers = shared.workers;
        let read_buffer_bytes = read::read_buffer_bytes(&shared.config.limits);
        let policy = XPolicy {
            allow_legacy: shared.config.allow_legacy_x,
        };
        Ok(Worker {
            index,
            shared,
            poll,
            io,
            listener: Some(listener),
            udp,
            inbox,
            shard_owner: (0..set.shard_count())
                .map(|shard| usize::from(shard) % workers)
                .collect(),
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
            read_buffer: vec![0u8; read_buffer_bytes].into_boxed_slice(),
            dirty: Vec::new(),
            resumed: Vec::new(),
            index_waits: Vec::new(),
            scratch: Vec::with_capacity(1024),
            metrics: LocalMetrics::default(),
            shared_metrics,
            now_s: 0,
            now_ms: 0,
            started: Instant::now(),
            iteration_started: Instant::now(),
            draining: false,
            output_full: false,
            udp_more: false,
            inbox_more: false,
            held_apply: None,
            output_bytes: 0,
            output_bytes_published: 0,
            client_log: LogBudget::new(CLIENT_LOG_LINES_PER_S),
            policy,
            proposal: crate::replication::WriteBatch::new(0),
            pending_writes: Vec::new(),
            tcp_local,
            udp_local,
            capture_offsets: Vec::new(),
            sip,
            auto_pending: std::collections::HashMap::new(),
            provisional_next: 0,
            binds_this_second: (0, std::collections::HashMap::new()),
            enum_front,
        })
    }

    /// Runs until the node stops; then drains, closes the shards cleanly and
    /// returns.
    pub fn run(mut self) -> Result<(), crate::table::TableError> {
        self.start_io();
        let mut next_tick = Instant::now();
        let mut next_sweep = Instant::now() + SWEEP;
        let mut draining_since: Option<Instant> = None;
        let mut reported_drained = false;
        loop {
            let enum_more = self.enum_front.as_ref().is_some_and(|f| f.has_more());
            let sip_more = self.sip.as_ref().is_some_and(|s| s.more);
            let timeout = if self.udp_more || self.inbox_more || enum_more || sip_more {
                Duration::ZERO
            } else if self.unsent_replies.is_empty() {
                TICK
            } else {
                Duration::from_millis(1)
            };
            self.wait(timeout);
            self.iteration_started = Instant::now();
            self.now_s = self.shared.clock.now_s();
            self.now_ms = u64::try_from(self.started.elapsed().as_millis()).unwrap_or(u64::MAX);
            self.output_full = self.shared.output_bytes.load(Ordering::Relaxed)
                > self.shared.output_bytes_total_max;
            self.take_in();
            if self.udp_more && !self.draining {
                self.read_datagrams();
            }
            self.enum_serve();
            if self.sip.as_ref().is_some_and(|s| s.more) && !self.draining {
                self.sip_datagrams();
            }
            self.drain_inbox();
            self.end_index_waits();
            self.resume_held();
            self.run_lookups();
            self.flush_proposal();
            self.send_outgoing();
            self.retry_replies();
            self.write_dirty();
            self.enum_flush();
            self.sip_flush();
            self.publish_output();
            if self.iteration_started >= next_tick {
                next_tick = self.iteration_started + TICK;
                self.tick();
            }
            if self.iteration_started >= next_sweep {
                next_sweep = self.iteration_started + SWEEP;
                self.sweep_connections();
                self.enum_sweep();
                self.sip_sweep();
            }
            if draining_since.is_none() && self.shared.stopping.load(Ordering::SeqCst) {
                self.stop_intake();
                self.draining = true;
                draining_since = Some(Instant::now());
                // Requests already read are answered; what arrives from
                // now on is refused (`read.rs`). Input that arrived before
                // this moment and was not read yet is read now, so that a
                // connection waiting on nothing hears of the stop.
                let tokens: Vec<usize> = self.conns.iter().map(|(token, _)| token).collect();
                for token in tokens {
                    self.read_connection(token, false);
                }
                self.write_dirty();
            }
            if let Some(since) = draining_since {
                let idle = self.conns.iter().all(|(_, c)| c.in_flight == 0 && !c.held)
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
            let timeout = if self.inbox_more {
                Duration::ZERO
            } else {
                Duration::from_millis(10)
            };
            self.wait(timeout);
            self.discard_io();
            self.drain_inbox();
        }
        self.drain_inbox();
        while self.inbox_more {
            self.drain_inbox();
        }
        self.tick();
        self.shared.barrier.wait();
        self.set.close()
    }

    /// Arms what the backend needs before the first wait.
    fn start_io(&mut self) {
        if matches!(self.io, Backend::Uring(_)) {
            self.uring_start();
        }
    }

    /// Waits up to `timeout` for I/O (io_uring: submits the iteration's
    /// sends in the same system call).
    fn wait(&mut self, timeout: Duration) {
        let result = match &mut self.io {
            Backend::Epoll(epoll) => self.poll.poll(&mut epoll.events, Some(timeout)),
            Backend::Uring(uring) => uring.submit_and_wait(timeout),
        };
        if let Err(error) = result {
            if error.kind() != ErrorKind::Interrupted {
                eprintln!("x700: event loop {}: wait: {error}", self.index);
            }
        }
    }

    /// Handles what the last wait brought: accepts, reads, wakes, sends
    /// done.
    fn take_in(&mut self) {
        match self.io {
            Backend::Epoll(_) => self.epoll_events(),
            Backend::Uring(_) => self.uring_completions(),
        }
    }

    /// After the drain: what arrives is dropped (io_uring: buffers given
    /// back, sends' copies freed).
    fn discard_io(&mut self) {
        if let Backend::Uring(uring) = &mut self.io {
            uring.discard();
        }
    }

    fn stop_intake(&mut self) {
        if let Backend::Uring(uring) = &mut self.io {
            uring.stop_intake();
        }
        if let Some(mut listener) = self.listener.take() {
            let _ = self.poll.registry().deregister(&mut listener);
        }
        if let Some(mut socket) = self.udp.take() {
            let _ = self.poll.registry().deregister(&mut socket);
        }
        self.enum_stop();
        self.sip_stop_intake();
    }

    fn tick(&mut self) {
        // Expired bindings are reclaimed by the log's sweep entries
        // (`server::apply`), deterministically: a timer here would make
        // slot reuse, and so binding ids, differ between runs.
        self.set.give_back(GIVE_BACK_PAGES_PER_TICK);
        let queue_depth = self.inbox.len() as u64;
        self.metrics
            .publish(&self.shared_metrics, queue_depth, self.set.bindings_live());
    }
}

/// Names connection `token` of loop `worker` for the capture.
fn capture_key(
    worker: usize,
    token: usize,
    generation: u32,
) -> crate::server::capture::ConnectionKey {
    crate::server::capture::ConnectionKey {
        worker: u32::try_from(worker).unwrap_or(u32::MAX),
        token: u32::try_from(token).unwrap_or(u32::MAX),
        generation,
    }
}

/// Where a chunk of `n` bytes of connection `token` going `direction`
/// begins in its stream, counted since the capture first saw the slot's
/// connection; moves the count past it.
fn capture_offset(
    offsets: &mut Vec<[u64; 2]>,
    token: usize,
    direction: crate::server::capture::Direction,
    n: usize,
) -> u64 {
    if offsets.len() <= token {
        offsets.resize(token + 1, [0, 0]);
    }
    let side = usize::from(direction == crate::server::capture::Direction::ToClient);
    let offset = offsets[token][side];
    offsets[token][side] = offset + n as u64;
    offset
}

fn offset(position: usize) -> u32 {
    u32::try_from(position).unwrap_or(u32::MAX)
}
