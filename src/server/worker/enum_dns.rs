//! The ENUM front-end in an event loop: DNS over UDP and TCP on one
//! address (`frontend::enum_dns` decodes and answers; this file moves the
//! bytes). Only switch networks are answered.
//!
//! Every loop serves duplicates of the node's one UDP socket and one TCP
//! listener, as for the binary protocol's UDP: whichever loop reads a
//! query routes its lookup like a binary UDP lookup (`route`, the batch
//! lookup, another core's shards through `cross`), and writes the answer
//! when the lookup's answer comes back (`deliver` -> `deliver_enum_answer`).
//! A TCP connection stays with the loop that accepted it.
//!
//! The sockets sit in a small poll of their own, whose descriptor the
//! loop's poll watches (token `ENUM`): with epoll it is one more ready
//! source; with io_uring the ring already watches the loop's poll (its
//! waker), so the ENUM sockets are served the same way on both backends
//! without a ring request of their own. Each time that poll is ready the
//! loop takes its events without waiting.
//!
//! Step 5's limits apply: UDP queries count against
//! `udp_lookups_per_source_per_s` (the same budget as binary UDP lookups;
//! past it they are dropped unanswered), and TCP connections against
//! `connections_max` and `connections_per_source_max`.

use super::front_tcp::{Flushed, FrontConnections, Reading};
use super::{Worker, ENUM};
use crate::frontend::enum_dns::wire::QUERY_BYTES_MAX;
use crate::frontend::enum_dns::{
    decode, write_fault, Answer, Ask, Fault, Question, Zone, TCP_ANSWER_BYTES_MAX,
};
use crate::protocol::codec;
use crate::protocol::frame::{Header, HEADER_BYTES};
use crate::server::cross::Origin;
use crate::server::metrics::Guard;
use crate::server::{tcp_listener, udp_socket};
use mio::net::{TcpListener, TcpStream, UdpSocket};
use mio::{Events, Interest, Poll, Token};
use slab::Slab;
use std::io::ErrorKind;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

/// Token of the UDP socket in the ENUM poll.
const UDP: Token = Token(usize::MAX - 1);
/// Token of the TCP listener in the ENUM poll; connections are their slab
/// keys.
const LISTENER: Token = Token(usize::MAX - 2);
/// Events taken from the ENUM poll per look.
const EVENTS_MAX: usize = 256;
/// `recvmmsg` calls per look (of `sys::DATAGRAMS_PER_CALL` datagrams
/// each) before other work gets a turn.
const RECEIVE_CALLS_PER_LOOK: usize = 4;
/// Bytes of one received datagram's slot: one more than the longest query
/// read, so that a longer one shows as too long.
const DATAGRAM_SLOT_BYTES: usize = QUERY_BYTES_MAX + 1;
/// UDP answers queued before they are sent (with `sendmmsg`, at the end of
/// the iteration, or at once past this many).
const UDP_ANSWERS_QUEUED_MAX: usize = 256;
/// Connections accepted per look.
const ACCEPTS_PER_LOOK: usize = 64;
/// Reads of one connection per look (of `READ_BYTES` each).
const READS_PER_LOOK: usize = 4;
/// One read from a TCP connection.
const READ_BYTES: usize = 16 * 1024;
/// A TCP connection with nothing in flight is closed after this long
/// silent (RFC 7766 asks servers to close idle connections after
/// seconds, not minutes).
const TCP_IDLE_MS: u64 = 10_000;
/// Tries at finding one port free for both UDP and TCP when the address
/// asks for any port (port 0).
const BIND_ATTEMPTS: usize = 16;

/// The node's ENUM sockets and zone, bound once at start-up; each loop
/// serves duplicates of the sockets.
pub struct EnumSockets {
    /// The address both sockets are bound to.
    pub address: SocketAddr,
    zone: Arc<Zone>,
    udp: std::net::UdpSocket,
    listener: std::net::TcpListener,
}

impl EnumSockets {
    /// Binds UDP and TCP on `address` (with port 0: a port free for both).
    pub fn bind(address: SocketAddr, zone: Zone) -> std::io::Result<EnumSockets> {
        let mut attempt = 0;
        loop {
            attempt += 1;
            let udp = udp_socket(address)?;
            let bound = udp.local_addr()?;
            match tcp_listener(bound) {
                Ok(listener) => {
                    return Ok(EnumSockets {
                        address: bound,
                        zone: Arc::new(zone),
                        udp,
                        listener,
                    })
                }
                // The port UDP picked is taken for TCP: try another.
                Err(_) if address.port() == 0 && attempt < BIND_ATTEMPTS => {}
                Err(error) => return Err(error),
            }
        }
    }
}

/// Where an answer goes.
#[derive(Clone, Copy, Debug)]
enum Destination {
    Udp(SocketAddr),
    Tcp { token: usize, generation: u32 },
}

/// A query whose lookup is out.
struct PendingQuery {
    question: Question,
    empty_on_reject: bool,
    to: Destination,
}

/// One loop's ENUM state.
pub(super) struct EnumFront {
    zone: Arc<Zone>,
    poll: Poll,
    events: Events,
    udp: UdpSocket,
    listener: TcpListener,
    /// DNS-over-TCP connections (RFC 7766: a two-byte length, then a
    /// message); their input holds at most one partial message of at most
    /// 2 + `QUERY_BYTES_MAX` bytes once handled.
    conns: FrontConnections,
    pending: Slab<PendingQuery>,
    /// `recvmmsg`'s slots.
    datagrams: Box<[u8]>,
    /// Source and length of each datagram the last `recvmmsg` took.
    arrived: Box<[(SocketAddr, usize); crate::sys::DATAGRAMS_PER_CALL]>,
    /// UDP answers waiting for `sendmmsg`: their bytes back to back, and
    /// (peer, start, end) of each.
    udp_bytes: Vec<u8>,
    udp_answers: Vec<(SocketAddr, usize, usize)>,
    read_buffer: Box<[u8]>,
    out: Vec<u8>,
    /// Ready connections taken from the last look: (token, readable,
    /// writable, closed).
    ready: Vec<(usize, bool, bool)>,
    /// The poll may hold events not taken yet.
    due: bool,
    /// The UDP socket, the listener or a connection may hold more than
    /// one look took.
    more: bool,
    /// Connections whose input one look did not finish.
    unread: Vec<usize>,
    udp_unread: bool,
    accept_unread: bool,
}

impl EnumFront {
    /// Duplicates the node's sockets into a poll of this loop's own, which
    /// the loop's poll watches.
    pub(super) fn new(sockets: &EnumSockets, loop_poll: &Poll) -> std::io::Result<Box<EnumFront>> {
        let poll = Poll::new()?;
        let mut udp = UdpSocket::from_std(sockets.udp.try_clone()?);
        let mut listener = TcpListener::from_std(sockets.listener.try_clone()?);
        poll.registry()
            .register(&mut udp, UDP, Interest::READABLE)?;
        poll.registry()
            .register(&mut listener, LISTENER, Interest::READABLE)?;
        let fd = std::os::fd::AsRawFd::as_raw_fd(&poll);
        loop_poll
            .registry()
            .register(&mut mio::unix::SourceFd(&fd), ENUM, Interest::READABLE)?;
        Ok(Box::new(EnumFront {
            zone: Arc::clone(&sockets.zone),
            poll,
            events: Events::with_capacity(EVENTS_MAX),
            udp,
            listener,
            conns: FrontConnections::new(),
            pending: Slab::new(),
            datagrams: vec![0u8; crate::sys::DATAGRAMS_PER_CALL * DATAGRAM_SLOT_BYTES]
                .into_boxed_slice(),
            arrived: Box::new(
                [(SocketAddr::from(([0, 0, 0, 0], 0)), 0); crate::sys::DATAGRAMS_PER_CALL],
            ),
            udp_bytes: Vec::with_capacity(UDP_ANSWERS_QUEUED_MAX * 512),
            udp_answers: Vec::with_capacity(UDP_ANSWERS_QUEUED_MAX),
            read_buffer: vec![0u8; READ_BYTES].into_boxed_slice(),
            out: Vec::with_capacity(TCP_ANSWER_BYTES_MAX),
            ready: Vec::with_capacity(EVENTS_MAX),
            // Look once at start: a query may have come before the loop ran.
            due: true,
            more: false,
            unread: Vec::new(),
            udp_unread: false,
            accept_unread: false,
        }))
    }

    /// True if the loop must come back without waiting.
    pub(super) fn has_more(&self) -> bool {
        self.more
    }

    /// Writes the answer to `question` and sends it to `to`; returns the
    /// rcode.
    fn answer(&mut self, question: &Question, answer: Answer, to: Destination) -> u8 {
        let bytes_max = match to {
            Destination::Udp(_) => self.zone.udp_answer_bytes_max(question),
            Destination::Tcp { .. } => TCP_ANSWER_BYTES_MAX,
        };
        let mut out = std::mem::take(&mut self.out);
        out.clear();
        let code = self
            .zone
            .write_answer(question, answer, bytes_max, &mut out);
        self.send(to, &out);
        self.out = out;
        code
    }

    fn send(&mut self, to: Destination, message: &[u8]) {
        match to {
            Destination::Udp(peer) => {
                let start = self.udp_bytes.len();
                self.udp_bytes.extend_from_slice(message);
                self.udp_answers.push((peer, start, self.udp_bytes.len()));
                if self.udp_answers.len() >= UDP_ANSWERS_QUEUED_MAX {
                    self.send_udp_answers();
                }
            }
            Destination::Tcp { token, generation } => {
                let Some(conn) = self.conns.current(token, generation) else {
                    return;
                };
                // Messages are at most TCP_ANSWER_BYTES_MAX: fit u16.
                let length = u16::try_from(message.len()).unwrap_or(u16::MAX);
                conn.queue(&length.to_be_bytes());
                conn.queue(message);
                self.conns.mark(token);
            }
        }
    }
}

impl EnumFront {
    /// Sends the queued UDP answers, `sys::DATAGRAMS_PER_CALL` per system
    /// call. An answer that cannot be sent now (a full socket buffer) is
    /// lost; the resolver asks again on its own timer.
    fn send_udp_answers(&mut self) {
        if !self.udp_answers.is_empty() {
            crate::sys::send_datagrams(&self.udp, &self.udp_bytes, &self.udp_answers);
        }
        self.udp_answers.clear();
        self.udp_bytes.clear();
    }
}

impl Worker {
    /// The loop's poll said the ENUM poll is ready (epoll), or the loop
    /// was woken (io_uring): look at it this iteration.
    pub(super) fn enum_woken(&mut self) {
        if let Some(front) = self.enum_front.as_mut() {
            front.due = true;
        }
    }

    /// Serves what the ENUM sockets hold, if anything may be there.
    pub(super) fn enum_serve(&mut self) {
        let Some(front) = self.enum_front.as_mut() else {
            return;
        };
        if !(front.due || front.more) || self.draining {
            return;
        }
        front.due = false;
        front.more = false;
        let mut events = std::mem::replace(&mut front.events, Events::with_capacity(0));
        let _ = front.poll.poll(&mut events, Some(Duration::ZERO));
        let mut taken = 0;
        let mut udp_ready = std::mem::take(&mut front.udp_unread);
        let mut accept_ready = std::mem::take(&mut front.accept_unread);
        front.ready.clear();
        for token in std::mem::take(&mut front.unread) {
            front.ready.push((token, true, false));
        }
        for event in &events {
            taken += 1;
            match event.token() {
                UDP => udp_ready = true,
                LISTENER => accept_ready = true,
                Token(token) => front.ready.push((
                    token,
                    event.is_readable() || event.is_read_closed(),
                    event.is_writable(),
                )),
            }
        }
        // A full batch of events: the poll may hold more.
        front.more = taken == EVENTS_MAX;
        front.events = events;
        if udp_ready {
            self.enum_read_datagrams();
        }
        if accept_ready {
            self.enum_accept();
        }
        let Some(front) = self.enum_front.as_mut() else {
            return;
        };
        let ready = std::mem::take(&mut front.ready);
        for &(token, readable, writable) in &ready {
            if readable {
                self.enum_read_connection(token);
            }
            if writable {
                if let Some(front) = self.enum_front.as_mut() {
                    front.conns.mark(token);
                }
            }
        }
        if let Some(front) = self.enum_front.as_mut() {
            front.ready = ready;
        }
    }

    fn enum_read_datagrams(&mut self) {
        for _ in 0..RECEIVE_CALLS_PER_LOOK {
            let Some(front) = self.enum_front.as_mut() else {
                return;
            };
            let mut buffer = std::mem::take(&mut front.datagrams);
            let received = crate::sys::receive_datagrams(
                &front.udp,
                &mut buffer,
                DATAGRAM_SLOT_BYTES,
                &mut front.arrived,
            );
            let arrived = *front.arrived;
            let count = match received {
                Ok(count) => count,
                Err(error) => {
                    front.datagrams = buffer;
                    if error.kind() != ErrorKind::WouldBlock {
                        // ICMP errors and the like: try again next look.
                        front.udp_unread = true;
                        front.more = true;
                    }
                    return;
                }
            };
            for (i, &(peer, length)) in arrived.iter().take(count).enumerate() {
                let start = i * DATAGRAM_SLOT_BYTES;
                self.enum_datagram(&buffer[start..start + length], peer);
            }
            if let Some(front) = self.enum_front.as_mut() {
                front.datagrams = buffer;
            }
            // Fewer than a full call: the socket is empty.
            if count < crate::sys::DATAGRAMS_PER_CALL {
                return;
            }
        }
        if let Some(front) = self.enum_front.as_mut() {
            front.udp_unread = true;
            front.more = true;
        }
    }

    /// A datagram from `peer`: answered if `peer` is on a switch network
    /// and within its rate.
    fn enum_datagram(&mut self, message: &[u8], peer: SocketAddr) {
        if !self.is_switch_network(peer) {
            return;
        }
        if let Some(rate) = self.shared.udp_rate.as_ref() {
            // Nothing is sent back for a dropped query: an answer would
            // make the node an amplifier for whoever spoofs the source.
            if rate.take(peer.ip(), self.now_s, 1) < 1 {
                self.metrics.guard(Guard::UdpRateLimited, 1);
                return;
            }
        }
        self.enum_query(message, Destination::Udp(peer));
    }

    /// Decodes a query and answers it now, or sends its lookup on.
    fn enum_query(&mut self, message: &[u8], to: Destination) {
        let Some(front) = self.enum_front.as_mut() else {
            return;
        };
        let question = match decode(message) {
            Ok(question) => question,
            Err(Fault::Ignore) => return,
            Err(Fault::Answer { id, flags, rcode }) => {
                let mut out = std::mem::take(&mut front.out);
                out.clear();
                let code = write_fault(id, flags, rcode, front.zone.udp_payload_bytes(), &mut out);
                front.send(to, &out);
                front.out = out;
                self.metrics.enum_answered(code);
                return;
            }
        };
        let ask = front.zone.ask(&question);
        let Ask::Number {
            query,
            empty_on_reject,
        } = ask
        else {
            let code = front.answer(&question, Zone::answer_without_lookup(ask), to);
            self.metrics.enum_answered(code);
            return;
        };
        if let Destination::Tcp { token, .. } = to {
            let limit = self.shared.config.limits.in_flight_per_connection_max;
            match front.conns.get_mut(token) {
                Some(conn) if conn.in_flight < limit => conn.in_flight += 1,
                // Past the connection's limit: the resolver may retry.
                _ => {
                    let code = front.answer(&question, Answer::ServerFailure, to);
                    self.metrics.enum_answered(code);
                    return;
                }
            }
        }
        let key = front.pending.insert(PendingQuery {
            question,
            empty_on_reject,
            to,
        });
        let origin = Origin::Enum {
            // Pending queries are bounded by what the loop reads between
            // two batch lookups: far below u32::MAX.
            query: u32::try_from(key).unwrap_or(u32::MAX),
        };
        self.route_lookup(origin, 0, query);
    }

    /// The lookup of pending query `key` is answered: answer the query.
    pub(super) fn deliver_enum_answer(&mut self, key: usize, frame: &[u8]) {
        let Some(front) = self.enum_front.as_mut() else {
            return;
        };
        let Some(pending) = front.pending.try_remove(key) else {
            return;
        };
        let header = frame
            .first_chunk::<HEADER_BYTES>()
            .map(Header::read)
            .unwrap_or_default();
        let body = frame.get(HEADER_BYTES..).unwrap_or_default();
        let result = codec::decode_lookup_answer(&header, body);
        let answer = Zone::answer_of(result, pending.empty_on_reject);
        if let Destination::Tcp { token, generation } = pending.to {
            front.conns.answered(token, generation);
        }
        let code = front.answer(&pending.question, answer, pending.to);
        self.metrics.enum_answered(code);
    }

    /// Accepts waiting connections from switch networks, within the
    /// node's connection caps.
    fn enum_accept(&mut self) {
        for _ in 0..ACCEPTS_PER_LOOK {
            let Some(front) = self.enum_front.as_mut() else {
                return;
            };
            let (stream, peer) = match front.listener.accept() {
                Ok(accepted) => accepted,
                Err(error) if error.kind() == ErrorKind::WouldBlock => return,
                Err(error) if error.kind() == ErrorKind::Interrupted => continue,
                Err(error) => {
                    self.accept_failed(&error);
                    return;
                }
            };
            if !self.is_switch_network(peer) || !self.take_front_connection_slot(peer) {
                continue;
            }
            self.enum_adopt(stream, peer);
        }
        if let Some(front) = self.enum_front.as_mut() {
            front.accept_unread = true;
            front.more = true;
        }
    }

    fn enum_adopt(&mut self, stream: TcpStream, peer: SocketAddr) {
        let now_ms = self.now_ms;
        let adopted = self.enum_front.as_mut().and_then(|front| {
            let front = &mut **front;
            front
                .conns
                .adopt(stream, peer, front.poll.registry(), Token, now_ms)
        });
        if adopted.is_none() {
            self.front_connection_closed(peer, None);
        }
    }

    /// Reads a connection and handles each whole message. A length under
    /// a DNS header or over `QUERY_BYTES_MAX` cannot be a query: the
    /// connection is closed.
    fn enum_read_connection(&mut self, token: usize) {
        for _ in 0..READS_PER_LOOK {
            let now_ms = self.now_ms;
            let Some(front) = self.enum_front.as_mut() else {
                return;
            };
            let front = &mut **front;
            let (generation, input) = match front.conns.read(token, &mut front.read_buffer, now_ms)
            {
                Reading::Input {
                    generation, input, ..
                } => (generation, input),
                Reading::Idle => return,
                Reading::Broken => {
                    self.enum_close(token, None);
                    return;
                }
            };
            let mut at = 0;
            let mut broken = false;
            while let Some(prefix) = input.get(at..at + 2) {
                let length = usize::from(u16::from_be_bytes([prefix[0], prefix[1]]));
                if !(HEADER_BYTES..=QUERY_BYTES_MAX).contains(&length) {
                    broken = true;
                    break;
                }
                let Some(message) = input.get(at + 2..at + 2 + length) else {
                    break;
                };
                self.enum_query(message, Destination::Tcp { token, generation });
                at += 2 + length;
            }
            let mut input = input;
            input.drain(..at);
            let restored = self
                .enum_front
                .as_mut()
                .and_then(|front| front.conns.restore(token, generation, input));
            if restored.is_none() {
                return;
            }
            if broken {
                self.enum_close(token, None);
                return;
            }
        }
        // Input left after the reads of one look: come back for it.
        if let Some(front) = self.enum_front.as_mut() {
            front.unread.push(token);
            front.more = true;
        }
    }

    /// Sends the queued UDP answers and each marked connection's; closes
    /// a connection whose client stopped reading past
    /// `output_buffer_bytes_max`, or that the client finished and that is
    /// owed nothing.
    pub(super) fn enum_flush(&mut self) {
        let limit = self.shared.config.limits.output_buffer_bytes_max;
        let Some(front) = self.enum_front.as_mut() else {
            return;
        };
        front.send_udp_answers();
        let mut closing = Vec::new();
        front.conns.flush_marked(limit, &mut closing);
        for (token, flushed) in closing {
            self.enum_close(token, Some(flushed));
        }
    }

    /// Closes connection `token`; `flushed` says why, when a flush did.
    fn enum_close(&mut self, token: usize, flushed: Option<Flushed>) {
        let Some(front) = self.enum_front.as_mut() else {
            return;
        };
        if let Some(conn) = front.conns.remove(token, front.poll.registry()) {
            self.front_connection_closed(conn.peer, flushed);
        }
    }

    /// Closes TCP connections silent for `TCP_IDLE_MS` with nothing in
    /// flight.
    pub(super) fn enum_sweep(&mut self) {
        let Some(front) = self.enum_front.as_ref() else {
            return;
        };
        for token in front.conns.idle(self.now_ms, TCP_IDLE_MS) {
            self.metrics.guard(Guard::Idle, 1);
            self.enum_close(token, None);
        }
    }

    /// The node stops: no more queries are read (answers owed still go).
    pub(super) fn enum_stop(&mut self) {
        if let Some(front) = self.enum_front.as_mut() {
            let _ = front.poll.registry().deregister(&mut front.listener);
            let _ = front.poll.registry().deregister(&mut front.udp);
            front.more = false;
        }
    }
}
