//! One TCP connection's state: the bytes of its requests not yet framed, its
//! unsent answers, its session, and what it is waiting for.

use super::auth::Session;
use mio::net::TcpStream;
use std::net::SocketAddr;

/// Bytes read per `recv`, at most: many frames per system call. The buffer
/// belongs to the event loop, not to the connection (see `Connection::input`).
pub const INPUT_BYTES: usize = 64 * 1024;

/// Answer bytes a connection keeps allocated once its output has been sent:
/// a burst beyond this is given back, so a client that pipelined megabytes
/// of answers once does not pin that memory for its whole life.
pub const OUTPUT_RETAINED_BYTES: usize = 64 * 1024;

/// Unprocessed input bytes a connection keeps allocated between reads (a
/// held connection may need more for a moment; it is given back after).
pub const INPUT_RETAINED_BYTES: usize = 4 * 1024;

/// A WAIT_INDEX not answered yet.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct IndexWait {
    /// The log index waited for.
    pub index: u64,
    /// The loop's clock (`Worker::now_ms`) at which the wait ends BEHIND.
    pub until_ms: u64,
    /// The request's id, for its answer.
    pub request_id: u32,
}

/// A client connection.
pub struct Connection {
    /// The socket.
    pub stream: TcpStream,
    /// The peer's address (per-source limits, logs).
    pub peer: SocketAddr,
    /// Distinguishes this connection from a later one in the same slot, so a
    /// late answer from another core is never delivered to a stranger.
    pub generation: u32,
    /// Received bytes not yet handled: a partial frame, or the frames behind
    /// a held read. Requests are framed straight out of the event loop's
    /// read buffer; only what is left over lives here, so an idle
    /// connection costs no input buffer.
    pub input: Vec<u8>,
    /// Answers not yet sent: `output[sent..]`.
    pub output: Vec<u8>,
    /// Bytes of `output` already sent.
    pub sent: usize,
    /// Unsent output bytes counted in the node's total (see
    /// `Worker::account_output`).
    pub output_counted: usize,
    /// Set by a successful HELLO.
    pub session: Option<Session>,
    /// Requests answered later (by another core or the log) and not yet
    /// answered.
    pub in_flight: u32,
    /// Writes (BIND, UPDATE, UNBIND) sent to the log and not yet answered.
    pub writes_pending: u32,
    /// A read (LOOKUP, QUERY) waits at the front of `input` for
    /// `writes_pending` to reach zero: read-your-writes.
    pub held: bool,
    /// A WAIT_INDEX waits for this node to apply a log index; the
    /// connection is `held` meanwhile (PROTOCOL.md 7.10).
    pub index_wait: Option<IndexWait>,
    /// The peer sent its FIN: answer what was read, then close.
    pub peer_finished: bool,
    /// The node is stopping: every request read from now on is answered
    /// `UNAVAILABLE`, then the connection closes.
    pub refusing: bool,
    /// Close once the output is flushed (after a refused HELLO).
    pub closing: bool,
    /// Already in the loop's list of connections to write.
    pub queued_for_write: bool,
    /// The peer is on loopback (protected mode).
    pub peer_is_loopback: bool,
    /// When the connection was accepted, milliseconds on the loop's clock.
    pub opened_ms: u64,
    /// When its last bytes arrived, milliseconds on the loop's clock.
    pub active_ms: u64,
}

impl Connection {
    /// A new connection with empty buffers (nothing allocated yet).
    pub fn new(stream: TcpStream, peer: SocketAddr, generation: u32, now_ms: u64) -> Connection {
        Connection {
            stream,
            peer,
            generation,
            input: Vec::new(),
            output: Vec::new(),
            sent: 0,
            output_counted: 0,
            session: None,
            in_flight: 0,
            writes_pending: 0,
            held: false,
            index_wait: None,
            peer_finished: false,
            refusing: false,
            closing: false,
            queued_for_write: false,
            peer_is_loopback: is_loopback(peer.ip()),
            opened_ms: now_ms,
            active_ms: now_ms,
        }
    }

    /// Unsent answer bytes.
    pub fn pending_output(&self) -> usize {
        self.output.len() - self.sent
    }

    /// Once everything is sent: forgets the sent bytes and gives back a
    /// buffer a burst made large.
    pub fn reset_output(&mut self) {
        if self.sent == self.output.len() {
            self.sent = 0;
            if self.output.capacity() > OUTPUT_RETAINED_BYTES {
                self.output = Vec::new();
            } else {
                self.output.clear();
            }
        }
    }

    /// Keeps `rest` as the unprocessed input, giving back a buffer that a
    /// held burst made large.
    pub fn keep_input(&mut self, rest: &[u8]) {
        self.input.clear();
        if self.input.capacity() > INPUT_RETAINED_BYTES && rest.len() <= INPUT_RETAINED_BYTES {
            self.input = Vec::new();
        }
        self.input.extend_from_slice(rest);
    }

    /// True once the connection owes nothing and is owed nothing: it may
    /// close if it is closing or its peer has finished.
    pub fn finished(&self) -> bool {
        let done_reading = self.closing || (self.peer_finished && !self.held);
        done_reading && self.pending_output() == 0 && self.in_flight == 0
    }
}

/// Loopback, including IPv4-mapped loopback (`::ffff:127.0.0.1`), which a
/// listener on `[::]` sees for IPv4 clients.
pub fn is_loopback(ip: std::net::IpAddr) -> bool {
    match ip {
        std::net::IpAddr::V4(v4) => v4.is_loopback(),
        std::net::IpAddr::V6(v6) => {
            v6.is_loopback() || v6.to_ipv4_mapped().is_some_and(|v4| v4.is_loopback())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::is_loopback;

    /// Guards the bug where protected mode refused `::ffff:127.0.0.1`, the
    /// address an IPv4 loopback client has on a `[::]` listener.
    #[test]
    fn mapped_loopback_is_loopback() {
        assert!(is_loopback("127.0.0.1".parse().unwrap()));
        assert!(is_loopback("::1".parse().unwrap()));
        assert!(is_loopback("::ffff:127.0.0.1".parse().unwrap()));
        assert!(is_loopback("::ffff:127.3.2.1".parse().unwrap()));
        assert!(!is_loopback("::ffff:10.0.0.1".parse().unwrap()));
        assert!(!is_loopback("10.0.0.1".parse().unwrap()));
    }
}
