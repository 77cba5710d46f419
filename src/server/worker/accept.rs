//! Connections come and go: accept (node-wide and per-source caps), the
//! hand-off that spreads connections over the loops, the HELLO deadline and
//! the idle timeout, and close.
//!
//! Every loop polls the one listening socket (there is no `SO_REUSEPORT`:
//! another process cannot bind the node's address and take a share of its
//! traffic). Whichever loop wakes first accepts, and hands each connection
//! to the next loop in turn, so connections spread evenly whoever accepts.

use super::Worker;
use crate::server::conn::Connection;
use crate::server::cross::Message;
use crate::server::metrics::Guard;
use mio::net::TcpStream;
use mio::{Interest, Token};
use std::net::SocketAddr;
use std::sync::atomic::Ordering;

impl Worker {
    /// An accept failed: out of descriptors (EMFILE) and the like. The
    /// connection waits in the backlog; say so, rarely.
    pub(super) fn accept_failed(&mut self, error: &std::io::Error) {
        if let Some(suppressed) = self.client_log.admit(self.now_s) {
            eprintln!("x700: accept: {error} ({suppressed} similar lines suppressed)");
        }
    }

    /// Counts a connection just accepted (binary protocol, SIP or ENUM)
    /// against the node-wide and per-source caps; false (counted and
    /// logged) if either is full, and the caller closes it.
    pub(super) fn take_connection_slot(&mut self, peer: SocketAddr) -> bool {
        let limits = &self.shared.config.limits;
        let open = self.shared.connections.fetch_add(1, Ordering::SeqCst);
        if open >= limits.connections_max {
            self.shared.connections.fetch_sub(1, Ordering::SeqCst);
            self.metrics.guard(Guard::RefusedNodeFull, 1);
            return false;
        }
        if !self
            .shared
            .sources
            .admit(peer.ip(), limits.connections_per_source_max)
        {
            self.shared.connections.fetch_sub(1, Ordering::SeqCst);
            self.metrics.guard(Guard::RefusedPerSource, 1);
            if let Some(suppressed) = self.client_log.admit(self.now_s) {
                eprintln!(
                    "x700: refused a connection from {peer}: it already holds \
                     connections_per_source_max = {} ({suppressed} similar lines suppressed)",
                    limits.connections_per_source_max
                );
            }
            return false;
        }
        true
    }

    /// Gives back the slot `take_connection_slot` counted for a connection
    /// from `peer` that is closed (or could not be registered).
    pub(super) fn release_connection_slot(&self, peer: std::net::IpAddr) {
        self.shared.connections.fetch_sub(1, Ordering::SeqCst);
        self.shared.sources.release(peer);
    }

    /// True if `peer` is on one of the switch networks, the only sources
    /// UDP lookups, SIP and ENUM are answered for.
    pub(super) fn is_switch_network(&self, peer: SocketAddr) -> bool {
        self.shared
            .switch_networks
            .iter()
            .any(|n| n.contains(peer.ip()))
    }

    /// Admits a connection just accepted (the node-wide and per-source
    /// caps), then serves it here or hands it to the next loop in turn.
    pub(super) fn admit_connection(&mut self, stream: TcpStream, peer: SocketAddr) {
        if !self.take_connection_slot(peer) {
            drop(stream);
            return;
        }
        let workers = self.shared.workers;
        let target = self.shared.accept_next.fetch_add(1, Ordering::Relaxed) % workers;
        if target == self.index {
            self.adopt(stream, peer);
            return;
        }
        let message = Message::Adopt { stream, peer };
        match self.shared.senders[target].try_send(message) {
            Ok(()) => {
                let _ = self.shared.wakers[target].wake();
            }
            // That loop's inbox is full: keep the connection here.
            Err(
                crossbeam_channel::TrySendError::Full(Message::Adopt { stream, peer })
                | crossbeam_channel::TrySendError::Disconnected(Message::Adopt { stream, peer }),
            ) => self.adopt(stream, peer),
            Err(_) => {}
        }
    }

    /// Serves a connection accepted here or by another loop (already
    /// counted node-wide and per source).
    pub(super) fn adopt(&mut self, mut stream: TcpStream, peer: SocketAddr) {
        let _ = stream.set_nodelay(true);
        let token = self.conns.vacant_key();
        let generation = self.next_generation;
        let registered = match &mut self.io {
            super::Backend::Epoll(_) => self
                .poll
                .registry()
                .register(
                    &mut stream,
                    Token(token),
                    Interest::READABLE | Interest::WRITABLE,
                )
                .is_ok(),
            super::Backend::Uring(uring) => uring.adopt(&stream, token, generation),
        };
        if !registered {
            self.release_connection_slot(peer.ip());
            return;
        }
        self.next_generation = self.next_generation.wrapping_add(1);
        if self.shared.capture.on() {
            let node = stream.local_addr().unwrap_or(self.tcp_local);
            let key = super::capture_key(self.index, token, generation);
            self.shared.capture.open(key, peer, node);
            if let Some(offsets) = self.capture_offsets.get_mut(token) {
                *offsets = [0, 0];
            }
        }
        let mut conn = Connection::new(stream, peer, generation, self.now_ms);
        // A connection adopted while the node stops is told so at once.
        conn.refusing = self.draining;
        self.conns.insert(conn);
        self.metrics.connections += 1;
    }

    pub(super) fn close(&mut self, token: usize) {
        if let Some(mut conn) = self.conns.try_remove(token) {
            if self.shared.capture.on() {
                let key = super::capture_key(self.index, token, conn.generation);
                self.shared.capture.close(key);
            }
            match &mut self.io {
                super::Backend::Epoll(_) => {
                    let _ = self.poll.registry().deregister(&mut conn.stream);
                }
                // Its requests in flight are cancelled; a late completion
                // finds a newer generation or none and only gives back
                // memory.
                super::Backend::Uring(uring) => uring.closed(token, conn.generation),
            }
            self.release_connection_slot(conn.peer.ip());
            self.output_bytes -= conn.output_counted;
            self.metrics.connections -= 1;
        }
    }

    /// Closes connections that never said HELLO within the deadline, and
    /// sessions silent for longer than the idle timeout. A connection the
    /// node still owes answers to is not idle.
    pub(super) fn sweep_connections(&mut self) {
        let limits = &self.shared.config.limits;
        let hello_deadline_ms = limits.hello_deadline_ms;
        let idle_ms = limits.idle_timeout_s.saturating_mul(1000);
        let now_ms = self.now_ms;
        let mut expired = Vec::new();
        for (token, conn) in &self.conns {
            if conn.session.is_none() {
                if now_ms.saturating_sub(conn.opened_ms) >= hello_deadline_ms {
                    expired.push((token, Guard::HelloDeadline));
                }
            } else if idle_ms > 0
                && conn.in_flight == 0
                && !conn.held
                && now_ms.saturating_sub(conn.active_ms) >= idle_ms
            {
                expired.push((token, Guard::Idle));
            }
        }
        for (token, guard) in expired {
            self.metrics.guard(guard, 1);
            self.close(token);
        }
    }
}
