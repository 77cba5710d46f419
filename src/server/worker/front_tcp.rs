//! A front-end's TCP connection (SIP, ENUM), kept and moved the same way
//! whatever the framing on it: the bytes read and not yet used, the answers
//! not yet sent, the lookups still owed to it, when it was last heard from,
//! and a generation that tells an answer for a closed connection from one
//! for the connection that took its slab key since.
//!
//! The framing (SIP's Content-Length, DNS's two-byte length) stays with
//! each front-end; so do their sockets and polls. What they share is here:
//! one read, one flush, the rule for when a connection is closed, the idle
//! sweep, and the bookkeeping of a close (deregister, release the
//! connection slot, `x700_connections`), so both front-ends obey step 5's
//! limits in one way and count their connections where the binary
//! protocol's are counted.

use super::Worker;
use crate::server::metrics::Guard;
use mio::net::TcpStream;
use mio::{Interest, Registry, Token};
use slab::Slab;
use std::io::{ErrorKind, Read, Write};
use std::net::SocketAddr;

/// One front-end connection.
pub(super) struct FrontConnection {
    /// The socket.
    stream: TcpStream,
    /// Who connected (its connection slot is released on close).
    pub(super) peer: SocketAddr,
    /// Tells this connection from a later one under the same slab key.
    pub(super) generation: u32,
    /// Bytes read and not yet framed into a whole message.
    pub(super) input: Vec<u8>,
    /// Answers not yet written, from `sent` on.
    output: Vec<u8>,
    sent: usize,
    /// Lookups out for this connection's messages.
    pub(super) in_flight: u32,
    /// The loop's clock (`Worker::now_ms`) when it last sent something.
    active_ms: u64,
    /// Nothing more is read: the peer closed its side, or sent what cannot
    /// be framed. The connection closes once it owes nothing.
    pub(super) finished: bool,
    /// Listed in `FrontConnections::marked`.
    marked: bool,
}

/// What one read did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Received {
    /// Bytes were added to `input`.
    Bytes,
    /// The socket has nothing now.
    Nothing,
    /// The peer closed its side: `finished` is set.
    Finished,
    /// The socket failed: close the connection.
    Broken,
}

/// What `FrontConnections::read` found.
pub(super) enum Reading {
    /// New input: all the connection's unused bytes, taken out of it.
    Input {
        peer: SocketAddr,
        generation: u32,
        input: Vec<u8>,
    },
    /// Nothing to serve now.
    Idle,
    /// The socket failed: close the connection.
    Broken,
}

/// What a flush leaves.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Flushed {
    /// The connection stays open.
    Open,
    /// It owes nothing more and is finished, or its socket failed: close.
    Done,
    /// Its peer stopped reading with more than `output_buffer_bytes_max`
    /// unsent: close, counted as `unread_output`.
    UnreadOutput,
}

impl FrontConnection {
    /// Reads once into `input` through `buffer`.
    fn receive(&mut self, buffer: &mut [u8], now_ms: u64) -> Received {
        loop {
            return match self.stream.read(buffer) {
                Ok(0) => {
                    self.finished = true;
                    Received::Finished
                }
                Ok(n) => {
                    self.input.extend_from_slice(&buffer[..n]);
                    self.active_ms = now_ms;
                    Received::Bytes
                }
                Err(error) if error.kind() == ErrorKind::Interrupted => continue,
                Err(error) if error.kind() == ErrorKind::WouldBlock => Received::Nothing,
                Err(_) => Received::Broken,
            };
        }
    }

    /// Queues `bytes` to send with the next flush.
    pub(super) fn queue(&mut self, bytes: &[u8]) {
        self.output.extend_from_slice(bytes);
    }

    /// Writes what is queued until the socket would block, and says whether
    /// the connection must now close (`output_max`: the node's
    /// `output_buffer_bytes_max`).
    pub(super) fn flush(&mut self, output_max: usize) -> Flushed {
        let mut broken = false;
        while self.sent < self.output.len() {
            match self.stream.write(&self.output[self.sent..]) {
                Ok(0) => {
                    broken = true;
                    break;
                }
                Ok(n) => self.sent += n,
                Err(error) if error.kind() == ErrorKind::Interrupted => {}
                Err(error) if error.kind() == ErrorKind::WouldBlock => break,
                Err(_) => {
                    broken = true;
                    break;
                }
            }
        }
        if self.sent == self.output.len() {
            self.output.clear();
            self.sent = 0;
        }
        let unsent = self.output.len() - self.sent;
        if broken || (self.finished && self.in_flight == 0 && unsent == 0) {
            Flushed::Done
        } else if unsent > output_max {
            Flushed::UnreadOutput
        } else {
            Flushed::Open
        }
    }
}

/// A loop's connections of one front-end.
pub(super) struct FrontConnections {
    slab: Slab<FrontConnection>,
    next_generation: u32,
    /// Connections with output to write or a close to decide at the end of
    /// the iteration (`flush_marked`): one write per connection per
    /// iteration, however many answers it got.
    marked: Vec<usize>,
}

impl FrontConnections {
    /// None yet.
    pub(super) fn new() -> FrontConnections {
        FrontConnections {
            slab: Slab::new(),
            next_generation: 1,
            marked: Vec::new(),
        }
    }

    /// Registers `stream` with `registry` (readable and writable, under
    /// `token_of(key)`) and keeps it; `None` if it cannot be registered.
    pub(super) fn adopt(
        &mut self,
        mut stream: TcpStream,
        peer: SocketAddr,
        registry: &Registry,
        token_of: impl Fn(usize) -> Token,
        now_ms: u64,
    ) -> Option<usize> {
        // Answers are small and owed at once: do not let Nagle hold them.
        let _ = stream.set_nodelay(true);
        let key = self.slab.vacant_key();
        registry
            .register(
                &mut stream,
                token_of(key),
                Interest::READABLE | Interest::WRITABLE,
            )
            .ok()?;
        let generation = self.next_generation;
        self.next_generation = self.next_generation.wrapping_add(1);
        Some(self.slab.insert(FrontConnection {
            stream,
            peer,
            generation,
            input: Vec::new(),
            output: Vec::new(),
            sent: 0,
            in_flight: 0,
            active_ms: now_ms,
            finished: false,
            marked: false,
        }))
    }

    /// Reads connection `key` once, unless nothing more is to be read from
    /// it. New bytes come back with the connection's input, taken out so
    /// that the front-end can frame and serve it while it calls the worker
    /// (`restore` puts the rest back). A peer that closed its side gets its
    /// owed answers flushed (it is marked) before it closes.
    pub(super) fn read(&mut self, key: usize, buffer: &mut [u8], now_ms: u64) -> Reading {
        let Some(connection) = self.slab.get_mut(key) else {
            return Reading::Idle;
        };
        if connection.finished {
            return Reading::Idle;
        }
        match connection.receive(buffer, now_ms) {
            Received::Bytes => Reading::Input {
                peer: connection.peer,
                generation: connection.generation,
                input: std::mem::take(&mut connection.input),
            },
            Received::Nothing => Reading::Idle,
            Received::Finished => {
                self.mark(key);
                Reading::Idle
            }
            Received::Broken => Reading::Broken,
        }
    }

    /// Puts back what `read` took and the front-end did not use; the
    /// connection, if it is still the one of `generation`.
    pub(super) fn restore(
        &mut self,
        key: usize,
        generation: u32,
        input: Vec<u8>,
    ) -> Option<&mut FrontConnection> {
        let connection = self.current(key, generation)?;
        connection.input = input;
        Some(connection)
    }

    /// Connection `key`, whichever generation.
    pub(super) fn get_mut(&mut self, key: usize) -> Option<&mut FrontConnection> {
        self.slab.get_mut(key)
    }

    /// Connection `key` if it is still the one of `generation` (an answer
    /// for a closed connection finds none).
    pub(super) fn current(&mut self, key: usize, generation: u32) -> Option<&mut FrontConnection> {
        self.slab
            .get_mut(key)
            .filter(|c| c.generation == generation)
    }

    /// The connection of `key` and `generation` has one lookup fewer out.
    pub(super) fn answered(&mut self, key: usize, generation: u32) {
        if let Some(connection) = self.current(key, generation) {
            connection.in_flight = connection.in_flight.saturating_sub(1);
        }
    }

    /// Flushes connection `key` at the end of this iteration.
    pub(super) fn mark(&mut self, key: usize) {
        if let Some(connection) = self.slab.get_mut(key) {
            if !connection.marked {
                connection.marked = true;
                self.marked.push(key);
            }
        }
    }

    /// Flushes every marked connection; those that must close now are
    /// added to `closing` with the reason.
    pub(super) fn flush_marked(&mut self, output_max: usize, closing: &mut Vec<(usize, Flushed)>) {
        let mut marked = std::mem::take(&mut self.marked);
        for &key in &marked {
            let Some(connection) = self.slab.get_mut(key) else {
                continue;
            };
            connection.marked = false;
            let flushed = connection.flush(output_max);
            if flushed != Flushed::Open {
                closing.push((key, flushed));
            }
        }
        // The list's memory is kept for the next iteration.
        marked.clear();
        self.marked = marked;
    }

    /// Keys of the connections silent for `idle_ms` or more that owe no
    /// answer (none when `idle_ms` is 0).
    pub(super) fn idle(&self, now_ms: u64, idle_ms: u64) -> Vec<usize> {
        if idle_ms == 0 {
            return Vec::new();
        }
        self.slab
            .iter()
            .filter(|(_, c)| c.in_flight == 0 && now_ms.saturating_sub(c.active_ms) >= idle_ms)
            .map(|(key, _)| key)
            .collect()
    }

    /// Removes connection `key` and deregisters it; returns it so the
    /// worker can release its slot (`Worker::front_connection_closed`).
    pub(super) fn remove(&mut self, key: usize, registry: &Registry) -> Option<FrontConnection> {
        let mut connection = self.slab.try_remove(key)?;
        let _ = registry.deregister(&mut connection.stream);
        Some(connection)
    }
}

impl Worker {
    /// A front-end accepted `peer` (already checked against its networks):
    /// true if the node's connection caps leave it a slot
    /// (`connections_max`, `connections_per_source_max`), which is then
    /// taken and counted in `x700_connections`.
    pub(super) fn take_front_connection_slot(&mut self, peer: SocketAddr) -> bool {
        if !self.take_connection_slot(peer) {
            return false;
        }
        self.metrics.connections += 1;
        true
    }

    /// Gives back what `take_front_connection_slot` took, for a connection
    /// that closed or could not be registered; `flushed` says why it
    /// closed, when a flush said so.
    pub(super) fn front_connection_closed(&mut self, peer: SocketAddr, flushed: Option<Flushed>) {
        if flushed == Some(Flushed::UnreadOutput) {
            self.metrics.guard(Guard::UnreadOutput, 1);
        }
        self.release_connection_slot(peer.ip());
        self.metrics.connections -= 1;
    }
}
