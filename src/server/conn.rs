//! One TCP connection's state: input and output buffers, its session, and
//! how many of its requests are waiting on another core.

use super::auth::Session;
use mio::net::TcpStream;

/// Bytes read per `recv`, at most: many frames per system call.
pub const INPUT_BYTES: usize = 64 * 1024;

/// A client connection.
pub struct Connection {
    /// The socket.
    pub stream: TcpStream,
    /// Distinguishes this connection from a later one in the same slot, so a
    /// late answer from another core is never delivered to a stranger.
    pub generation: u32,
    /// Received bytes not yet framed: `input[start..end]`.
    pub input: Box<[u8]>,
    /// Start of unconsumed input.
    pub start: usize,
    /// End of received input.
    pub end: usize,
    /// Answers not yet sent: `output[sent..]`.
    pub output: Vec<u8>,
    /// Bytes of `output` already sent.
    pub sent: usize,
    /// Set by a successful HELLO.
    pub session: Option<Session>,
    /// Requests forwarded to another core and not yet answered.
    pub in_flight: u32,
    /// Close once the output is flushed (after a refused HELLO).
    pub closing: bool,
    /// Already in the loop's list of connections to write.
    pub queued_for_write: bool,
    /// The peer is on loopback (protected mode).
    pub peer_is_loopback: bool,
}

impl Connection {
    /// A new connection with empty buffers.
    pub fn new(
        stream: TcpStream,
        generation: u32,
        input_bytes: usize,
        peer_is_loopback: bool,
    ) -> Connection {
        Connection {
            stream,
            generation,
            input: vec![0u8; input_bytes].into_boxed_slice(),
            start: 0,
            end: 0,
            output: Vec::with_capacity(16 * 1024),
            sent: 0,
            session: None,
            in_flight: 0,
            closing: false,
            queued_for_write: false,
            peer_is_loopback,
        }
    }

    /// Unsent answer bytes.
    pub fn pending_output(&self) -> usize {
        self.output.len() - self.sent
    }

    /// Moves unconsumed input to the front so the next read has room.
    pub fn compact_input(&mut self) {
        if self.start == self.end {
            self.start = 0;
            self.end = 0;
        } else if self.start > 0 {
            self.input.copy_within(self.start..self.end, 0);
            self.end -= self.start;
            self.start = 0;
        }
    }
}
