//! The io_uring backend: the same loop as epoll's, fed by completions
//! instead of readiness.
//!
//! - **Accept**: one multishot accept on the loop's listener descriptor;
//!   each new connection goes through the same admission and hand-off as
//!   with epoll (`accept.rs`).
//! - **Receive**: one multishot receive per connection into a ring of
//!   provided buffers (`ring.rs`); frames are handled in place in the
//!   buffer, as epoll's path handles them in its read buffer, and only a
//!   partial frame is copied to the connection. The buffer goes back to
//!   the kernel as soon as its bytes are handled. A held connection
//!   (read-your-writes, WAIT_INDEX) keeps what arrives in its input, up to
//!   `HELD_INPUT_BYTES_MAX`; past that its receive is cancelled, and
//!   armed again when the hold ends: TCP's window then holds the client
//!   back, as with epoll, where a held socket is not read.
//! - **Send**: one send request per dirty connection and iteration (a copy
//!   of its unsent answers, kept until the completion); every request of
//!   the iteration goes to the kernel in the next wait's single
//!   `io_uring_enter`. A short send moves `sent` on by what went; the rest
//!   goes in the next request. One send per connection is in flight at a
//!   time, so answers keep their order.
//! - **UDP**: a multishot `recvmsg` into a second buffer group; the source
//!   address comes in the buffer; answers go with `sendto` as with epoll.
//! - **Waker**: other loops and the log wake this one through the mio
//!   waker of its poll, as with epoll; the ring watches the poll's
//!   descriptor (a multishot poll) and an empty `epoll_wait` clears it.

mod ring;

pub use ring::RingError;

use super::{Backend, Worker};
use crate::server::capture::Direction;
use crate::server::conn::Connection;
use mio::net::TcpStream;
use ring::{Completion, Ring};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::os::fd::AsRawFd;
use std::time::Duration;

/// After an accept or datagram receive failed (out of descriptors, say),
/// it is armed again this much later: at once would spin on the error.
const REARM_AFTER_ERROR_MS: u64 = 100;

/// Input a held connection keeps receiving before its receive is
/// cancelled until the hold ends.
const HELD_INPUT_BYTES_MAX: usize = 64 * 1024;

/// What the backend knows of one connection slot.
#[derive(Clone, Copy, Default)]
struct Slot {
    /// The generation of the connection the requests below belong to.
    generation: u32,
    /// Its multishot receive has not delivered its last completion.
    receiving: bool,
    /// A send is in flight.
    sending: bool,
    /// Its receive was cancelled (a hold kept enough input).
    paused: bool,
}

/// The backend's state in one loop.
pub(super) struct Uring {
    ring: Ring,
    slots: Vec<Slot>,
    completions: Vec<Completion>,
    /// Clears the waker's readiness.
    events: mio::Events,
    accepting: bool,
    receiving_datagrams: bool,
    waker_watched: bool,
    /// The loop's clock (ms) before which a failed accept or datagram
    /// receive is not armed again.
    rearm_at_ms: u64,
}

/// Builds a ring as an event loop would and drops it: `Server::start`
/// refuses an `io = "uring"` the kernel refuses before it touches the data
/// directory.
pub fn probe() -> Result<(), RingError> {
    Ring::new().map(drop)
}

impl Uring {
    /// Builds the ring (disabled until the loop's thread enables it).
    pub(super) fn new() -> Result<Uring, RingError> {
        Ok(Uring {
            ring: Ring::new()?,
            slots: Vec::new(),
            completions: Vec::with_capacity(1024),
            events: mio::Events::with_capacity(64),
            accepting: false,
            receiving_datagrams: false,
            waker_watched: false,
            rearm_at_ms: 0,
        })
    }

    /// Submits the iteration's requests and waits for a completion.
    pub(super) fn submit_and_wait(&mut self, timeout: Duration) -> std::io::Result<()> {
        self.ring.submit_and_wait(timeout)
    }

    /// Starts receiving connection `token`; false if it cannot be served.
    pub(super) fn adopt(&mut self, stream: &TcpStream, token: usize, generation: u32) -> bool {
        if token >= ring::TOKENS_MAX {
            return false;
        }
        if self.slots.len() <= token {
            self.slots.resize(token + 1, Slot::default());
        }
        if self
            .ring
            .receive(stream.as_raw_fd(), token, generation)
            .is_err()
        {
            return false;
        }
        self.slots[token] = Slot {
            generation,
            receiving: true,
            sending: false,
            paused: false,
        };
        true
    }

    /// Connection `token` closed: its requests in flight are cancelled.
    pub(super) fn closed(&mut self, token: usize, generation: u32) {
        let Some(slot) = self.slots.get_mut(token) else {
            return;
        };
        if slot.generation != generation {
            return;
        }
        if slot.receiving {
            self.ring.cancel_receive(token, generation);
        }
        if slot.sending {
            self.ring.cancel_sends(token, generation);
        }
        *slot = Slot::default();
    }

    /// Queues a send of `conn`'s unsent answers, unless one is in flight
    /// (its completion queues the rest). False if the send cannot be
    /// queued: the connection is broken.
    pub(super) fn send(&mut self, token: usize, conn: &Connection) -> bool {
        let Some(slot) = self.slots.get_mut(token) else {
            return false;
        };
        if slot.sending || conn.sent == conn.output.len() {
            return true;
        }
        let fd = conn.stream.as_raw_fd();
        let bytes = &conn.output[conn.sent..];
        if self.ring.send(fd, token, conn.generation, bytes).is_err() {
            return false;
        }
        slot.sending = true;
        true
    }

    /// Stops accepting and receiving datagrams (the node stops).
    pub(super) fn stop_intake(&mut self) {
        if self.accepting {
            self.ring.cancel_accept();
        }
        if self.receiving_datagrams {
            self.ring.cancel_datagrams();
        }
    }

    /// Takes the completions and drops them, giving buffers back.
    pub(super) fn discard(&mut self) {
        self.ring.complete(&mut self.completions);
        for completion in self.completions.drain(..) {
            match completion {
                Completion::Received {
                    chunk: Some(chunk), ..
                }
                | Completion::Datagram {
                    chunk: Some(chunk), ..
                } => self.ring.recycle(chunk),
                Completion::Accepted { result, .. } if result >= 0 => {
                    drop(ring::accepted_stream(result));
                }
                _ => {}
            }
        }
        self.ring.publish();
    }

    /// Cancels connection `token`'s receive while a hold keeps enough of
    /// its input, once.
    fn pause(&mut self, token: usize, generation: u32) {
        let Some(slot) = self.slots.get_mut(token) else {
            return;
        };
        if slot.generation == generation && slot.receiving && !slot.paused {
            slot.paused = true;
            self.ring.cancel_receive(token, generation);
        }
    }
}

impl Worker {
    fn uring(&mut self) -> Option<&mut Uring> {
        match &mut self.io {
            Backend::Uring(uring) => Some(uring),
            Backend::Epoll(_) => None,
        }
    }

    /// On the loop's own thread: enables the ring and arms the accept,
    /// the datagram receive and the waker.
    pub(super) fn uring_start(&mut self) {
        let index = self.index;
        let Some(uring) = self.uring() else {
            return;
        };
        if let Err(error) = uring.ring.enable() {
            eprintln!("x700: event loop {index}: io_uring: enable: {error}");
        }
        self.arm_accept();
        self.arm_datagrams();
        self.arm_waker();
    }

    fn arm_accept(&mut self) {
        let Some(fd) = self.listener.as_ref().map(AsRawFd::as_raw_fd) else {
            return;
        };
        let (draining, now_ms) = (self.draining, self.now_ms);
        let Some(uring) = self.uring() else {
            return;
        };
        if !draining && !uring.accepting && now_ms >= uring.rearm_at_ms {
            uring.accepting = uring.ring.accept(fd).is_ok();
        }
    }

    fn arm_datagrams(&mut self) {
        let Some(fd) = self.udp.as_ref().map(AsRawFd::as_raw_fd) else {
            return;
        };
        let (draining, now_ms) = (self.draining, self.now_ms);
        let Some(uring) = self.uring() else {
            return;
        };
        if !draining && !uring.receiving_datagrams && now_ms >= uring.rearm_at_ms {
            uring.receiving_datagrams = uring.ring.receive_datagrams(fd).is_ok();
        }
    }

    fn arm_waker(&mut self) {
        let fd = self.poll.as_raw_fd();
        let Some(uring) = self.uring() else {
            return;
        };
        if !uring.waker_watched {
            uring.waker_watched = uring.ring.watch_waker(fd).is_ok();
        }
    }

    /// Handles every completion the last wait brought, then gives the
    /// kernel back the buffers handled.
    pub(super) fn uring_completions(&mut self) {
        let Some(uring) = self.uring() else {
            return;
        };
        let rearm = !uring.accepting || !uring.receiving_datagrams;
        let mut completions = std::mem::take(&mut uring.completions);
        uring.ring.complete(&mut completions);
        for completion in completions.drain(..) {
            self.on_completion(completion);
        }
        if let Some(uring) = self.uring() {
            uring.completions = completions;
            uring.ring.publish();
        }
        if rearm {
            self.arm_accept();
            self.arm_datagrams();
        }
    }

    /// A failed accept or datagram receive waits before it is armed again.
    fn back_off(&mut self) {
        let now_ms = self.now_ms;
        if let Some(uring) = self.uring() {
            uring.rearm_at_ms = now_ms + REARM_AFTER_ERROR_MS;
        }
    }

    fn on_completion(&mut self, completion: Completion) {
        match completion {
            Completion::Accepted { result, more } => {
                if result >= 0 {
                    let stream = ring::accepted_stream(result);
                    match stream.peer_addr() {
                        Ok(peer) if !self.draining => self.admit_connection(stream, peer),
                        _ => drop(stream),
                    }
                } else if result != -libc::ECANCELED {
                    self.accept_failed(&std::io::Error::from_raw_os_error(-result));
                    self.back_off();
                }
                if !more {
                    if let Some(uring) = self.uring() {
                        uring.accepting = false;
                    }
                    self.arm_accept();
                }
            }
            Completion::Woken { more } => {
                // Clears the waker's edge so the next wake shows again;
                // the inbox itself is drained every iteration, and the
                // ENUM sockets' own poll is looked at (it may be what woke).
                self.enum_woken();
                if let Backend::Uring(uring) = &mut self.io {
                    let _ = self.poll.poll(&mut uring.events, Some(Duration::ZERO));
                    if !more {
                        uring.waker_watched = false;
                    }
                }
                // The SIP front-end's sockets are in the poll too.
                if self.sip.is_some() {
                    if let Backend::Uring(uring) = &mut self.io {
                        let events =
                            std::mem::replace(&mut uring.events, mio::Events::with_capacity(0));
                        self.sip_events(&events);
                        if let Backend::Uring(uring) = &mut self.io {
                            uring.events = events;
                        }
                    }
                }
                self.arm_waker();
            }
            Completion::Datagram {
                result,
                chunk,
                more,
            } => {
                if let Some(chunk) = chunk {
                    let draining = self.draining;
                    let parsed = self.uring().and_then(|uring| uring.ring.datagram(&chunk));
                    if let Some((name, payload)) = parsed {
                        if let Some(peer) = socket_address(name) {
                            if result > 0 && !draining {
                                self.datagram_arrived(payload, peer);
                            }
                        }
                    }
                    if let Some(uring) = self.uring() {
                        uring.ring.recycle(chunk);
                    }
                }
                if !more {
                    if let Some(uring) = self.uring() {
                        uring.receiving_datagrams = false;
                    }
                    if result < 0 && result != -libc::ENOBUFS && result != -libc::ECANCELED {
                        self.back_off();
                    }
                    self.arm_datagrams();
                }
            }
            Completion::Received {
                token,
                generation,
                result,
                chunk,
                more,
            } => self.received(token, generation, result, chunk, more),
            Completion::Sent {
                token,
                generation,
                result,
            } => self.sent(token, generation, result),
            Completion::Cancelled => {}
        }
    }

    fn is_live(&self, token: usize, generation: u32) -> bool {
        self.conns
            .get(token)
            .is_some_and(|c| c.generation == generation)
    }

    /// A receive completion of connection `token`.
    fn received(
        &mut self,
        token: usize,
        generation: u32,
        result: i32,
        chunk: Option<ring::Chunk>,
        more: bool,
    ) {
        if let Some(chunk) = chunk {
            if result > 0 && self.is_live(token, generation) {
                self.uring_input(token, chunk.bytes());
            }
            if let Some(uring) = self.uring() {
                uring.ring.recycle(chunk);
            }
        }
        if !self.is_live(token, generation) {
            return;
        }
        if result == 0 {
            self.peer_finished(token);
        } else if result < 0 && result != -libc::ENOBUFS && result != -libc::ECANCELED {
            self.close(token);
            return;
        }
        if !more {
            if let Some(slot) = self.uring().and_then(|u| u.slots.get_mut(token)) {
                slot.receiving = false;
                slot.paused = false;
            }
            self.uring_read(token);
        }
    }

    /// Serves bytes received on connection `token`, in place unless a
    /// partial frame waits before them.
    fn uring_input(&mut self, token: usize, bytes: &[u8]) {
        let Some(conn) = self.conns.get_mut(token) else {
            return;
        };
        // As with epoll, whose reads stop there.
        if conn.closing || conn.peer_finished {
            return;
        }
        if self.draining {
            conn.refusing = true;
        }
        if conn.held {
            // Kept until the hold ends (`resume_held` serves it).
            conn.active_ms = self.now_ms;
            conn.input.extend_from_slice(bytes);
            let (generation, paused) = (conn.generation, conn.input.len() >= HELD_INPUT_BYTES_MAX);
            self.capture_from_client(token, bytes);
            if paused {
                if let Some(uring) = self.uring() {
                    uring.pause(token, generation);
                }
            }
            return;
        }
        let carried = conn.input.len();
        let framing = if carried == 0 {
            self.take_input(token, bytes, 0)
        } else if carried + bytes.len() <= self.read_buffer.len() {
            let mut buffer = std::mem::take(&mut self.read_buffer);
            buffer[..carried].copy_from_slice(&conn.input);
            buffer[carried..carried + bytes.len()].copy_from_slice(bytes);
            let framing = self.take_input(token, &buffer[..carried + bytes.len()], carried);
            self.read_buffer = buffer;
            framing
        } else {
            // Frames a hold kept, longer than the read buffer: joined in
            // the connection's own input (rare: only after a hold).
            let mut joined = std::mem::take(&mut conn.input);
            joined.extend_from_slice(bytes);
            self.take_input(token, &joined, carried)
        };
        self.settle(token, framing);
    }

    /// Receives connection `token` again if its receive ended and it may
    /// be read (after a hold, or a receive that ran out of buffers); marks
    /// it refusing once the node stops.
    pub(super) fn uring_read(&mut self, token: usize) {
        let draining = self.draining;
        let Some(conn) = self.conns.get_mut(token) else {
            return;
        };
        if conn.closing || conn.peer_finished {
            return;
        }
        if draining && !conn.held {
            conn.refusing = true;
        }
        if conn.held && conn.input.len() >= HELD_INPUT_BYTES_MAX {
            return;
        }
        let generation = conn.generation;
        let fd = conn.stream.as_raw_fd();
        let Some(uring) = self.uring() else {
            return;
        };
        let Some(slot) = uring.slots.get_mut(token) else {
            return;
        };
        if slot.generation != generation || slot.receiving {
            return;
        }
        if uring.ring.receive(fd, token, generation).is_ok() {
            slot.receiving = true;
        } else {
            self.close(token);
        }
    }

    /// A send of connection `token` completed.
    fn sent(&mut self, token: usize, generation: u32, result: i32) {
        if !self.is_live(token, generation) {
            return;
        }
        if let Some(slot) = self.uring().and_then(|u| u.slots.get_mut(token)) {
            slot.sending = false;
        }
        if result > 0 {
            let n = usize::try_from(result).unwrap_or(0);
            if self.shared.capture.on() {
                let direction = Direction::ToClient;
                let at = super::capture_offset(&mut self.capture_offsets, token, direction, n);
                if let Some(conn) = self.conns.get(token) {
                    let end = (conn.sent + n).min(conn.output.len());
                    self.shared.capture.tcp(
                        super::capture_key(self.index, token, conn.generation),
                        (conn.peer, self.tcp_local),
                        direction,
                        at,
                        &conn.output[conn.sent..end],
                    );
                }
            }
            if let Some(conn) = self.conns.get_mut(token) {
                conn.sent = (conn.sent + n).min(conn.output.len());
            }
            // The rest of a short send, and answers made meanwhile, go next.
            self.mark_dirty(token);
        } else if result == -libc::ECANCELED || result == -libc::EINTR {
            self.mark_dirty(token);
        } else {
            self.close(token);
        }
    }
}

/// A socket address as `recvmsg` wrote it (`sockaddr_in` or
/// `sockaddr_in6`).
fn socket_address(name: &[u8]) -> Option<SocketAddr> {
    let family = i32::from(u16::from_ne_bytes(name.get(..2)?.try_into().ok()?));
    let port = u16::from_be_bytes(name.get(2..4)?.try_into().ok()?);
    match family {
        libc::AF_INET => {
            let octets: [u8; 4] = name.get(4..8)?.try_into().ok()?;
            Some(SocketAddr::new(IpAddr::V4(Ipv4Addr::from(octets)), port))
        }
        libc::AF_INET6 => {
            let octets: [u8; 16] = name.get(8..24)?.try_into().ok()?;
            let flow = u32::from_be_bytes(name.get(4..8)?.try_into().ok()?);
            let scope = u32::from_ne_bytes(name.get(24..28)?.try_into().ok()?);
            Some(SocketAddr::V6(std::net::SocketAddrV6::new(
                Ipv6Addr::from(octets),
                port,
                flow,
                scope,
            )))
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::socket_address;

    /// The source of a datagram is read back from `recvmsg`'s name bytes,
    /// for both families; anything else is no address.
    #[test]
    fn socket_addresses_parse() {
        let mut v4 = [0u8; 16];
        v4[..2].copy_from_slice(&(libc::AF_INET as u16).to_ne_bytes());
        v4[2..4].copy_from_slice(&7700u16.to_be_bytes());
        v4[4..8].copy_from_slice(&[127, 0, 0, 1]);
        assert_eq!(socket_address(&v4), Some("127.0.0.1:7700".parse().unwrap()));
        let mut v6 = [0u8; 28];
        v6[..2].copy_from_slice(&(libc::AF_INET6 as u16).to_ne_bytes());
        v6[2..4].copy_from_slice(&53u16.to_be_bytes());
        v6[23] = 1;
        assert_eq!(socket_address(&v6), Some("[::1]:53".parse().unwrap()));
        assert_eq!(socket_address(&v4[..3]), None);
        assert_eq!(socket_address(&[0u8; 16]), None);
    }
}
