//! The epoll backend (`mio`): readiness, then the loop reads and writes
//! each ready socket itself. Edge triggered: a socket is read until it
//! would block (or a short read shows it empty), and the listener and the
//! UDP socket until they would block.

use super::{Framing, Worker, ENUM, LISTENER, UDP, WAKER};
use crate::server::conn::Connection;
use mio::{Events, Token};
use std::io::{ErrorKind, Read, Write};

/// Readiness events taken per wait.
const EVENTS_MAX: usize = 1024;

/// The epoll backend's own state (the poll itself is the loop's).
pub(super) struct Epoll {
    pub(super) events: Events,
}

impl Epoll {
    pub(super) fn new() -> Epoll {
        Epoll {
            events: Events::with_capacity(EVENTS_MAX),
        }
    }
}

/// What one `send` attempt on a connection did.
pub(super) enum Sent {
    /// `n` bytes went.
    Bytes(usize),
    /// The socket is full: wait for writability.
    Full,
    /// The connection is broken.
    Broken,
}

/// Sends `conn`'s unsent output now, one `send` (a short one, when the
/// socket fills, ends the attempt).
pub(super) fn send(conn: &mut Connection) -> Sent {
    loop {
        return match conn.stream.write(&conn.output[conn.sent..]) {
            Ok(0) => Sent::Broken,
            Ok(n) => Sent::Bytes(n),
            Err(error) if error.kind() == ErrorKind::WouldBlock => Sent::Full,
            Err(error) if error.kind() == ErrorKind::Interrupted => continue,
            Err(_) => Sent::Broken,
        };
    }
}

impl Worker {
    /// Handles the readiness events of the last wait.
    pub(super) fn epoll_events(&mut self) {
        let super::Backend::Epoll(epoll) = &mut self.io else {
            return;
        };
        let events = std::mem::replace(&mut epoll.events, Events::with_capacity(0));
        for event in &events {
            match event.token() {
                LISTENER if !self.draining => self.accept_ready(),
                UDP if !self.draining => self.read_datagrams(),
                ENUM => self.enum_woken(),
                WAKER | LISTENER | UDP => {}
                token if super::sip::owns(token) => self.sip_event(event),
                Token(token) => {
                    if event.is_readable() {
                        self.read_ready(token, event.is_read_closed());
                    }
                    if event.is_writable() {
                        self.mark_dirty(token);
                    }
                    if event.is_read_closed() && event.is_write_closed() {
                        self.close(token);
                    }
                }
            }
        }
        if let super::Backend::Epoll(epoll) = &mut self.io {
            epoll.events = events;
        }
    }

    /// Accepts every connection waiting on the listener.
    fn accept_ready(&mut self) {
        loop {
            let Some(listener) = self.listener.as_ref() else {
                return;
            };
            match listener.accept() {
                Ok((stream, peer)) => self.admit_connection(stream, peer),
                Err(error) if error.kind() == ErrorKind::WouldBlock => return,
                Err(error) if error.kind() == ErrorKind::Interrupted => {}
                Err(error) => {
                    self.accept_failed(&error);
                    return;
                }
            }
        }
    }

    /// Reads and serves a readable connection. `peer_closed` (the event
    /// also reported the peer's FIN) makes it read on to the end of stream.
    pub(super) fn read_ready(&mut self, token: usize, peer_closed: bool) {
        loop {
            let Some(conn) = self.conns.get_mut(token) else {
                return;
            };
            // A held connection is read again once its writes are answered
            // (`resume_held`); a finished or closing one never.
            if conn.closing || conn.held || conn.peer_finished {
                return;
            }
            if self.draining {
                conn.refusing = true;
            }
            let mut buffer = std::mem::take(&mut self.read_buffer);
            let carried = conn.input.len();
            buffer[..carried].copy_from_slice(&conn.input);
            let space = buffer.len() - carried;
            let read = conn.stream.read(&mut buffer[carried..]);
            let outcome = match read {
                Ok(0) => {
                    self.read_buffer = buffer;
                    self.peer_finished(token);
                    return;
                }
                Ok(n) => Some((self.take_input(token, &buffer[..carried + n], carried), n)),
                Err(error) if error.kind() == ErrorKind::WouldBlock => None,
                Err(error) if error.kind() == ErrorKind::Interrupted => {
                    self.read_buffer = buffer;
                    continue;
                }
                Err(_) => {
                    self.read_buffer = buffer;
                    self.close(token);
                    return;
                }
            };
            self.read_buffer = buffer;
            match outcome {
                None => return,
                // A short read emptied the socket: epoll (edge triggered)
                // reports the next arrival, so the read that would only say
                // "would block" is skipped, one system call less per
                // connection and iteration.
                Some((Framing::Keep, n)) if n < space && !peer_closed => return,
                Some((Framing::Keep, _)) => {}
                Some((framing, _)) => {
                    self.settle(token, framing);
                    return;
                }
            }
        }
    }
}
