//! The SIP redirect front-end in the event loop (`frontend::sip` is the
//! pure core): one UDP socket and one TCP listener on the same address,
//! shared by every loop as duplicates of one descriptor (as the binary
//! protocol's UDP socket is), and the SIP connections each loop accepted.
//!
//! Both I/O backends serve it through the loop's mio poll: with epoll its
//! events come with every other; with io_uring the ring already watches
//! the poll's descriptor for the waker, and the events it reports are
//! handled the same way (`sip_events`). SIP's sockets thus never enter the
//! ring: they carry calls, not the binary protocol's lookup rate, and one
//! path for both backends is one to test.
//!
//! A request whose lookup is pending keeps a copy of its bytes (buffers are
//! reused) and is parsed again when the answer comes, from this loop's
//! batch or from another loop (`Origin::Sip`); the response is built then.
//! Only `switch_networks` are answered; UDP obeys
//! `udp_lookups_per_source_per_s` (one per message), TCP the node's
//! connection limits (`connections_max`, `connections_per_source_max`,
//! counted with the binary protocol's), `in_flight_per_connection_max`,
//! `output_buffer_bytes_max` and `idle_timeout_s` (`sip_sweep`; CRLF
//! keep-alives count as activity and are dropped from the input).

use super::front_tcp::{Flushed, FrontConnections, Reading};
use super::Worker;
use crate::binding::LookupResult;
use crate::frontend::sip::{self, message, response, Answer, Settings, Step, Unanswered};
use crate::protocol::codec;
use crate::protocol::frame::{Header, HEADER_BYTES};
use crate::server::cross::Origin;
use crate::server::dispatch;
use crate::server::metrics::SipUnanswered;
use mio::net::{TcpListener, TcpStream, UdpSocket};
use mio::{Interest, Token};
use slab::Slab;
use std::io::ErrorKind;
use std::net::SocketAddr;

/// Token of the SIP UDP socket.
const SIP_UDP: Token = Token(usize::MAX - 8);
/// Token of the SIP TCP listener.
const SIP_LISTENER: Token = Token(usize::MAX - 9);
/// SIP connections' tokens: this plus their slab key (binary connections'
/// tokens are their slab keys, far below).
const SIP_CONNECTION_BASE: usize = 1 << 40;
/// Datagrams read per readiness event before other work gets a turn.
const DATAGRAMS_PER_EVENT: usize = 64;
/// Requests a loop keeps waiting for their lookups; past this an INVITE is
/// answered `busy` at once.
const PENDING_MAX: usize = 65_536;
/// Bytes read from a SIP connection per `read`.
const READ_BYTES: usize = 16 * 1024;
/// Spare request buffers kept for reuse.
const SPARE_BUFFERS_MAX: usize = 1024;

/// The front-end's sockets and settings, made once at start-up; each loop
/// serves duplicates of the sockets.
#[derive(Debug)]
pub struct SipFront {
    /// The checked `[sip]` settings.
    pub settings: Settings,
    /// The UDP socket.
    pub udp: std::net::UdpSocket,
    /// The TCP listener, on the same address.
    pub listener: std::net::TcpListener,
    /// The address bound.
    pub address: SocketAddr,
    /// `{host}` when the Request-URI names none: the address, as text.
    pub local_host: Vec<u8>,
}

/// Where a response goes.
#[derive(Clone, Copy, Debug)]
enum Reply {
    /// A datagram, to where the top Via says (`response::reply_address`).
    Udp,
    /// A SIP connection's output.
    Tcp { key: usize, generation: u32 },
}

/// A request waiting for its lookup.
struct Pending {
    reply: Reply,
    source: SocketAddr,
    request: Vec<u8>,
}

/// One loop's SIP state.
pub(super) struct Sip {
    udp: Option<UdpSocket>,
    listener: Option<TcpListener>,
    connections: FrontConnections,
    pending: Slab<Pending>,
    spare: Vec<Vec<u8>>,
    datagram: Box<[u8]>,
    out: Vec<u8>,
    /// The UDP socket may hold datagrams not read yet.
    pub(super) more: bool,
}

impl Sip {
    /// This loop's duplicates of the front-end's sockets, registered with
    /// its poll (both backends: see the module docs).
    pub(super) fn open(
        front: Option<&SipFront>,
        registry: &mio::Registry,
    ) -> std::io::Result<Option<Box<Sip>>> {
        let Some(front) = front else {
            return Ok(None);
        };
        let mut udp = UdpSocket::from_std(front.udp.try_clone()?);
        let mut listener = TcpListener::from_std(front.listener.try_clone()?);
        registry.register(&mut udp, SIP_UDP, Interest::READABLE)?;
        registry.register(&mut listener, SIP_LISTENER, Interest::READABLE)?;
        Ok(Some(Box::new(Sip {
            udp: Some(udp),
            listener: Some(listener),
            connections: FrontConnections::new(),
            pending: Slab::new(),
            spare: Vec::new(),
            // One byte more than the limit tells a datagram cut at it.
            datagram: vec![0u8; front.settings.message_bytes_max + 1].into_boxed_slice(),
            out: Vec::with_capacity(1024),
            more: false,
        })))
    }
}

/// True for the tokens of the SIP front-end.
pub(super) fn owns(token: Token) -> bool {
    token == SIP_UDP || token == SIP_LISTENER || token.0 >= SIP_CONNECTION_BASE
}

impl Worker {
    /// Handles one readiness event of a SIP token.
    pub(super) fn sip_event(&mut self, event: &mio::event::Event) {
        match event.token() {
            SIP_UDP if !self.draining => self.sip_datagrams(),
            SIP_LISTENER if !self.draining => self.sip_accept(),
            SIP_UDP | SIP_LISTENER => {}
            Token(token) => {
                let key = token - SIP_CONNECTION_BASE;
                if event.is_readable() || event.is_read_closed() {
                    self.sip_read(key);
                }
                if event.is_writable() {
                    if let Some(sip) = self.sip.as_mut() {
                        sip.connections.mark(key);
                    }
                }
            }
        }
    }

    /// Handles the SIP events among `events` (io_uring: the events of the
    /// poll the ring watches).
    pub(super) fn sip_events(&mut self, events: &mio::Events) {
        for event in events {
            if owns(event.token()) {
                self.sip_event(event);
            }
        }
    }

    /// Closes the SIP sockets' intake (the node is stopping).
    pub(super) fn sip_stop_intake(&mut self) {
        let Some(sip) = self.sip.as_mut() else {
            return;
        };
        if let Some(mut socket) = sip.udp.take() {
            let _ = self.poll.registry().deregister(&mut socket);
        }
        if let Some(mut listener) = sip.listener.take() {
            let _ = self.poll.registry().deregister(&mut listener);
        }
        sip.more = false;
    }

    /// Reads up to `DATAGRAMS_PER_EVENT` datagrams; `more` brings the loop
    /// back for the rest (edge-triggered readiness).
    pub(super) fn sip_datagrams(&mut self) {
        for _ in 0..DATAGRAMS_PER_EVENT {
            let Some(sip) = self.sip.as_mut() else {
                return;
            };
            sip.more = false;
            let Some(socket) = sip.udp.as_ref() else {
                return;
            };
            let (length, peer) = match socket.recv_from(&mut sip.datagram) {
                Ok(received) => received,
                Err(_) => return,
            };
            if !self.sip_admits(peer) {
                continue;
            }
            if let Some(rate) = self.shared.udp_rate.as_ref() {
                // Nothing is sent for a dropped message: an answer would
                // make the node an amplifier for spoofed sources, and the
                // switch retransmits on its own timer.
                if rate.take(peer.ip(), self.now_s, 1) < 1 {
                    self.metrics.sip_unanswered(SipUnanswered::RateLimited);
                    continue;
                }
            }
            let Some(sip) = self.sip.as_mut() else {
                return;
            };
            let datagram = std::mem::take(&mut sip.datagram);
            self.sip_message(&datagram[..length], peer, Reply::Udp);
            if let Some(sip) = self.sip.as_mut() {
                sip.datagram = datagram;
            }
        }
        if let Some(sip) = self.sip.as_mut() {
            sip.more = true;
        }
    }

    /// True if `peer` is on a switch network; counts it otherwise.
    fn sip_admits(&mut self, peer: SocketAddr) -> bool {
        let admitted = self.is_switch_network(peer);
        if !admitted {
            self.metrics.sip_unanswered(SipUnanswered::NotSwitchNetwork);
        }
        admitted
    }

    /// Serves one whole message.
    fn sip_message(&mut self, message: &[u8], source: SocketAddr, reply: Reply) {
        let shared = std::sync::Arc::clone(&self.shared);
        let Some(front) = shared.sip.as_ref() else {
            return;
        };
        match sip::step(message, source.ip(), &front.settings, self.policy) {
            Step::Drop(why) => self.metrics.sip_unanswered(match why {
                Unanswered::Ack => SipUnanswered::Ack,
                Unanswered::Response => SipUnanswered::Response,
                Unanswered::NoVia => SipUnanswered::NoVia,
            }),
            Step::Respond(request, answer) => self.sip_respond(&request, answer, source, reply),
            Step::Lookup(request, query) => {
                let checked = dispatch::check_lookup(&query, self.policy);
                let (Some(sip), Ok(query)) = (self.sip.as_mut(), checked) else {
                    let answer = sip::answer_of(
                        &LookupResult::Reject(crate::binding::Reject::BadNumber),
                        &front.settings,
                    );
                    self.sip_respond(&request, answer, source, reply);
                    return;
                };
                let in_flight_max = self.shared.config.limits.in_flight_per_connection_max;
                let admitted = match reply {
                    Reply::Udp => true,
                    Reply::Tcp { key, .. } => sip
                        .connections
                        .get_mut(key)
                        .is_some_and(|c| c.in_flight < in_flight_max),
                };
                if !admitted || sip.pending.len() >= PENDING_MAX || self.draining {
                    let answer = sip::busy(&front.settings);
                    self.sip_respond(&request, answer, source, reply);
                    return;
                }
                if let Reply::Tcp { key, .. } = reply {
                    if let Some(connection) = sip.connections.get_mut(key) {
                        connection.in_flight += 1;
                    }
                }
                let mut copy = sip.spare.pop().unwrap_or_default();
                copy.clear();
                copy.extend_from_slice(message);
                let key = sip.pending.insert(Pending {
                    reply,
                    source,
                    request: copy,
                });
                // At most PENDING_MAX (65,536) keys: fits u32.
                let pending = u32::try_from(key).unwrap_or(u32::MAX);
                self.route_lookup(Origin::Sip { pending }, 0, query);
            }
        }
    }

    /// The lookup of pending request `key` has answered `frame`.
    pub(super) fn deliver_sip_answer(&mut self, key: usize, frame: &[u8]) {
        let Some(sip) = self.sip.as_mut() else {
            return;
        };
        let Some(pending) = sip.pending.try_remove(key) else {
            return;
        };
        if let Reply::Tcp { key, generation } = pending.reply {
            sip.connections.answered(key, generation);
        }
        let shared = std::sync::Arc::clone(&self.shared);
        let Some(front) = shared.sip.as_ref() else {
            return;
        };
        let header = frame
            .first_chunk::<HEADER_BYTES>()
            .map(Header::read)
            .unwrap_or_default();
        let body = frame.get(HEADER_BYTES..).unwrap_or_default();
        let answer = match codec::decode_lookup_answer(&header, body) {
            Ok(result) => sip::answer_of(&result, &front.settings),
            Err(_) => sip::busy(&front.settings),
        };
        // It parsed when it arrived: the same bytes parse again.
        if let Ok(request) = message::parse(&pending.request) {
            self.sip_respond(&request, answer, pending.source, pending.reply);
        }
        if let Some(sip) = self.sip.as_mut() {
            if sip.spare.len() < SPARE_BUFFERS_MAX {
                sip.spare.push(pending.request);
            }
        }
    }

    /// Writes and sends the response to `request`.
    fn sip_respond(
        &mut self,
        request: &message::Request<'_>,
        answer: Answer,
        source: SocketAddr,
        reply: Reply,
    ) {
        let (Some(sip), Some(front)) = (self.sip.as_mut(), self.shared.sip.as_ref()) else {
            return;
        };
        let context = response::Context {
            source,
            local_host: &front.local_host,
        };
        response::write(&mut sip.out, request, answer, &front.settings, &context);
        self.metrics.sip_answered(answer.code());
        match reply {
            Reply::Udp => {
                let (Some(socket), Some(to)) =
                    (sip.udp.as_ref(), response::reply_address(request, source))
                else {
                    return;
                };
                // An answer that cannot be sent now is lost; the client
                // retransmits and is answered the same again.
                let _ = socket.send_to(&sip.out, to);
            }
            Reply::Tcp { key, generation } => {
                if let Some(connection) = sip.connections.current(key, generation) {
                    connection.queue(&sip.out);
                    sip.connections.mark(key);
                }
            }
        }
    }

    /// Accepts every connection waiting on the SIP listener, within the
    /// node's connection limits.
    fn sip_accept(&mut self) {
        loop {
            let Some(listener) = self.sip.as_ref().and_then(|s| s.listener.as_ref()) else {
                return;
            };
            let (stream, peer) = match listener.accept() {
                Ok(accepted) => accepted,
                Err(error) if error.kind() == ErrorKind::Interrupted => continue,
                Err(error) => {
                    if error.kind() != ErrorKind::WouldBlock {
                        self.accept_failed(&error);
                    }
                    return;
                }
            };
            if !self.sip_admits(peer) || !self.take_front_connection_slot(peer) {
                continue;
            }
            self.sip_adopt(stream, peer);
        }
    }

    fn sip_adopt(&mut self, stream: TcpStream, peer: SocketAddr) {
        let now_ms = self.now_ms;
        let adopted = self.sip.as_mut().and_then(|sip| {
            let token_of = |key| Token(SIP_CONNECTION_BASE + key);
            sip.connections
                .adopt(stream, peer, self.poll.registry(), token_of, now_ms)
        });
        if adopted.is_none() {
            self.front_connection_closed(peer, None);
        }
    }

    /// Reads a SIP connection until it would block, serving each whole
    /// message; garbage (no Content-Length, past the size limit) is
    /// answered 400 when it names a Via, and the connection is closed.
    fn sip_read(&mut self, key: usize) {
        let Some(bytes_max) = self
            .shared
            .sip
            .as_ref()
            .map(|f| f.settings.message_bytes_max)
        else {
            return;
        };
        let mut chunk = [0u8; READ_BYTES];
        loop {
            let now_ms = self.now_ms;
            let Some(sip) = self.sip.as_mut() else {
                return;
            };
            let (peer, generation, mut input) = match sip.connections.read(key, &mut chunk, now_ms)
            {
                Reading::Input {
                    peer,
                    generation,
                    input,
                } => (peer, generation, input),
                Reading::Idle => return,
                Reading::Broken => {
                    self.sip_close(key, None);
                    return;
                }
            };
            let mut used = 0;
            let mut garbage = false;
            while used < input.len() {
                // CRLF keep-alives between messages are read and dropped,
                // so a connection that only pings holds no input.
                if input.get(used..used + 2) == Some(b"\r\n") {
                    used += 2;
                    continue;
                }
                match message::frame_length(&input[used..], bytes_max) {
                    Ok(Some(length)) => {
                        let reply = Reply::Tcp { key, generation };
                        self.sip_message(&input[used..used + length], peer, reply);
                        used += length;
                    }
                    Ok(None) => break,
                    Err(error) => {
                        let why = match error {
                            message::FrameError::TooLarge => sip::TOO_LARGE,
                            message::FrameError::NoLength => "Content-Length Required",
                        };
                        let rest = &input[used..input.len().min(used + bytes_max)];
                        if let Some(request) = message::salvage(rest) {
                            if response::top_via(&request).is_some() {
                                let reply = Reply::Tcp { key, generation };
                                self.sip_respond(&request, Answer::BadRequest(why), peer, reply);
                            }
                        }
                        garbage = true;
                        break;
                    }
                }
            }
            input.drain(..used);
            let Some(sip) = self.sip.as_mut() else {
                return;
            };
            let Some(connection) = sip.connections.restore(key, generation, input) else {
                return;
            };
            if garbage {
                // Nothing more is read; it closes once the 400 and the
                // answers owed are sent.
                connection.finished = true;
                sip.connections.mark(key);
                return;
            }
        }
    }

    /// Sends what the SIP connections marked this iteration hold; closes
    /// those that are broken, finished and owed nothing, or whose unsent
    /// output passed `output_buffer_bytes_max` (they do not read).
    pub(super) fn sip_flush(&mut self) {
        let limit = self.shared.config.limits.output_buffer_bytes_max;
        let Some(sip) = self.sip.as_mut() else {
            return;
        };
        let mut closing = Vec::new();
        sip.connections.flush_marked(limit, &mut closing);
        for (key, flushed) in closing {
            self.sip_close(key, Some(flushed));
        }
    }

    /// Closes SIP connections silent for `idle_timeout_s` (as binary
    /// sessions are; a proxy keeps its connection alive with OPTIONS or
    /// CRLF keep-alives), unless an answer is still owed to them.
    pub(super) fn sip_sweep(&mut self) {
        let idle_ms = self
            .shared
            .config
            .limits
            .idle_timeout_s
            .saturating_mul(1000);
        let now_ms = self.now_ms;
        let Some(sip) = self.sip.as_ref() else {
            return;
        };
        for key in sip.connections.idle(now_ms, idle_ms) {
            self.metrics.guard(crate::server::metrics::Guard::Idle, 1);
            self.sip_close(key, None);
        }
    }

    /// Closes connection `key`; `flushed` says why, when a flush did.
    fn sip_close(&mut self, key: usize, flushed: Option<Flushed>) {
        let Some(sip) = self.sip.as_mut() else {
            return;
        };
        if let Some(connection) = sip.connections.remove(key, self.poll.registry()) {
            self.front_connection_closed(connection.peer, flushed);
        }
    }
}
