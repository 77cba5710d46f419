//! The read path: bytes from a socket into frames, and three promises kept
//! on the way.
//!
//! - **Read-your-writes.** A LOOKUP or QUERY that arrives on a connection
//!   with writes still waiting for the log is *held*: it stays, with every
//!   frame behind it, in the connection's input until those writes are
//!   answered, and the socket is not read meanwhile. By then the writes are
//!   applied on every loop that owns their shards, so the read sees them
//!   wherever its X lives. A connection that only reads (a switch) never
//!   has a write pending and never waits.
//! - **Waiting for an index.** A WAIT_INDEX (PROTOCOL.md 7.10) is a read
//!   too: held behind the connection's pending writes, so it answers an
//!   index that covers them. If this node has not applied the index it
//!   asks for, the connection is held the same way, its later frames
//!   unread, until the index is applied (OK) or the wait's time is up
//!   (BEHIND); the loop looks once per iteration (`end_index_waits`), so
//!   a follower serves "read what I wrote at the leader" with a LOOKUP
//!   pipelined behind a WAIT_INDEX.
//! - **Half-close.** A FIN from the peer ends reading, not the connection:
//!   every request read before it is answered, then the connection closes.
//! - **The stop.** Once the node is stopping, requests read from then on
//!   are answered `UNAVAILABLE` and the connection closes after them, so a
//!   switch fails over at once.

use super::{Framing, Worker};
use crate::protocol::frame::{next_frame, push_frame, HEADER_BYTES};
use crate::protocol::{opcode, status};
use crate::server::capture::Direction;
use crate::server::config::Limits;
use crate::server::conn::{IndexWait, INPUT_BYTES};
use crate::server::metrics::Guard;

/// The loop's read buffer: one `recv` of up to `INPUT_BYTES` behind the
/// longest carried-over partial frame.
pub(super) fn read_buffer_bytes(limits: &Limits) -> usize {
    INPUT_BYTES + limits.request_frame_bytes_max as usize
}

/// Reads that must see the connection's earlier writes.
fn is_read(op: u8) -> bool {
    op == opcode::LOOKUP || op == opcode::QUERY || op == opcode::WAIT_INDEX
}

impl Worker {
    /// Reads connection `token` on, if it may be read: after a held read
    /// resumed, and once when the stop begins. `peer_closed` (epoll: the
    /// peer's FIN was reported) reads on to the end of stream.
    pub(super) fn read_connection(&mut self, token: usize, peer_closed: bool) {
        match self.io {
            super::Backend::Epoll(_) => self.read_ready(token, peer_closed),
            super::Backend::Uring(_) => self.uring_read(token),
        }
    }

    /// Serves `bytes`, received on connection `token`: its carried input
    /// (`bytes[..carried]`) followed by what just arrived, which the
    /// capture records.
    pub(super) fn take_input(&mut self, token: usize, bytes: &[u8], carried: usize) -> Framing {
        let Some(conn) = self.conns.get_mut(token) else {
            return Framing::CutOff;
        };
        conn.active_ms = self.now_ms;
        self.capture_from_client(token, &bytes[carried..]);
        self.process_input(token, bytes)
    }

    /// Hands bytes just received on connection `token` to the capture.
    pub(super) fn capture_from_client(&mut self, token: usize, fresh: &[u8]) {
        if !self.shared.capture.on() {
            return;
        }
        let Some(conn) = self.conns.get(token) else {
            return;
        };
        let direction = Direction::FromClient;
        let at = super::capture_offset(&mut self.capture_offsets, token, direction, fresh.len());
        self.shared.capture.tcp(
            super::capture_key(self.index, token, conn.generation),
            (conn.peer, self.tcp_local),
            direction,
            at,
            fresh,
        );
    }

    /// Acts on what serving a connection's input left it in.
    pub(super) fn settle(&mut self, token: usize, framing: Framing) {
        match framing {
            Framing::Keep => {}
            Framing::Lost => {
                // Nothing after a bad length can be trusted: stop reading,
                // send the answers already made (the client learns which
                // requests were done), then close.
                if let Some(conn) = self.conns.get_mut(token) {
                    conn.closing = true;
                }
                self.mark_dirty(token);
            }
            Framing::CutOff => {
                self.metrics.guard(Guard::UnreadOutput, 1);
                self.close(token);
            }
        }
    }

    /// Handles every complete frame of `bytes` (the connection's carried
    /// input followed by what was just read) and keeps the rest.
    pub(super) fn process_input(&mut self, token: usize, bytes: &[u8]) -> Framing {
        let frame_max = self.shared.config.limits.request_frame_bytes_max;
        let mut start = 0;
        let mut framing = Framing::Keep;
        while start < bytes.len() {
            let Some(conn) = self.conns.get_mut(token) else {
                return Framing::CutOff;
            };
            // A WAIT_INDEX just held the connection: what follows waits.
            if conn.closing || conn.held {
                break;
            }
            // One test per frame on the common path: a session that is not
            // stopping and has no write pending.
            let special = conn.refusing || conn.writes_pending > 0;
            match next_frame(&bytes[start..], frame_max) {
                Ok(Some((header, frame))) if !special => {
                    self.handle_frame(token, &header, &frame[HEADER_BYTES..]);
                    start += frame.len();
                }
                Ok(Some((header, frame))) => {
                    if conn.refusing {
                        // The node is stopping: nothing read now is done.
                        push_frame(
                            &mut conn.output,
                            header.opcode,
                            status::UNAVAILABLE,
                            header.request_id,
                            &[],
                        );
                        self.metrics.answered(header.opcode, status::UNAVAILABLE);
                        start += frame.len();
                        continue;
                    }
                    if conn.writes_pending > 0 && conn.session.is_some() && is_read(header.opcode) {
                        conn.held = true;
                        break;
                    }
                    self.handle_frame(token, &header, &frame[HEADER_BYTES..]);
                    start += frame.len();
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
        if conn.refusing {
            // Answered UNAVAILABLE: close once those answers are out.
            conn.closing = true;
        }
        if conn.closing {
            conn.input.clear();
        } else {
            conn.keep_input(&bytes[start..]);
        }
        if conn.pending_output() > self.shared.config.limits.output_buffer_bytes_max {
            return Framing::CutOff;
        }
        if conn.pending_output() > 0 || conn.closing {
            self.mark_dirty(token);
        }
        framing
    }

    /// The peer sent its FIN: everything it sent has been read. The
    /// connection closes once every request read is answered (`write.rs`).
    pub(super) fn peer_finished(&mut self, token: usize) {
        if let Some(conn) = self.conns.get_mut(token) {
            conn.peer_finished = true;
        }
        self.mark_dirty(token);
    }

    /// A write of `token`'s connection was answered: one less pending; the
    /// last one releases a held read.
    pub(super) fn write_answered(&mut self, token: usize, generation: u32) {
        let Some(conn) = self.conns.get_mut(token) else {
            return;
        };
        if conn.generation != generation {
            return;
        }
        conn.writes_pending = conn.writes_pending.saturating_sub(1);
        if conn.writes_pending == 0 && conn.held && conn.index_wait.is_none() {
            conn.held = false;
            self.resumed.push(token);
        }
    }

    /// WAIT_INDEX: answers at once if this node has applied `index` (or
    /// the wait is zero), else holds the connection until it has, or
    /// until `timeout_ms` passed (`end_index_waits`).
    pub(super) fn wait_index(
        &mut self,
        token: usize,
        request_id: u32,
        index: u64,
        timeout_ms: u32,
    ) {
        let applied = self.applied_index();
        if applied >= index || timeout_ms == 0 {
            let code = if applied >= index {
                status::OK
            } else {
                status::BEHIND
            };
            self.answer(
                token,
                opcode::WAIT_INDEX,
                code,
                request_id,
                &applied.to_le_bytes(),
            );
            return;
        }
        let until_ms = self.now_ms.saturating_add(u64::from(timeout_ms));
        let Some(conn) = self.conns.get_mut(token) else {
            return;
        };
        conn.index_wait = Some(IndexWait {
            index,
            until_ms,
            request_id,
        });
        conn.held = true;
        self.index_waits.push(token);
    }

    /// The node's applied index, as WAIT_INDEX reports it (0 before the
    /// write path has started).
    fn applied_index(&self) -> u64 {
        self.shared
            .replica
            .get()
            .map_or(0, |replica| replica.applied_index())
    }

    /// Answers the WAIT_INDEX requests whose index is applied (OK), whose
    /// time is up (BEHIND) or whose node is stopping (UNAVAILABLE), and
    /// lets their connections go on.
    pub(super) fn end_index_waits(&mut self) {
        if self.index_waits.is_empty() {
            return;
        }
        let applied = self.applied_index();
        let mut waits = std::mem::take(&mut self.index_waits);
        waits.retain(|&token| {
            let Some(conn) = self.conns.get_mut(token) else {
                return false;
            };
            // A slot reused by a later connection has no wait.
            let Some(wait) = conn.index_wait else {
                return false;
            };
            let code = if applied >= wait.index {
                status::OK
            } else if self.draining {
                status::UNAVAILABLE
            } else if self.now_ms >= wait.until_ms {
                status::BEHIND
            } else {
                return true;
            };
            conn.index_wait = None;
            conn.held = false;
            let body = applied.to_le_bytes();
            let body: &[u8] = if code == status::UNAVAILABLE {
                &[]
            } else {
                &body
            };
            push_frame(
                &mut conn.output,
                opcode::WAIT_INDEX,
                code,
                wait.request_id,
                body,
            );
            self.metrics.answered(opcode::WAIT_INDEX, code);
            self.resumed.push(token);
            if !conn.queued_for_write {
                conn.queued_for_write = true;
                self.dirty.push(token);
            }
            false
        });
        self.index_waits = waits;
    }

    /// Serves the frames that held connections kept, now that their writes
    /// are answered, then reads on what the socket holds.
    pub(super) fn resume_held(&mut self) {
        while let Some(token) = self.resumed.pop() {
            let Some(conn) = self.conns.get_mut(token) else {
                continue;
            };
            if conn.held || conn.closing {
                continue;
            }
            let input = std::mem::take(&mut conn.input);
            match self.process_input(token, &input) {
                Framing::Keep => {
                    let peer_finished = self.conns.get(token).is_some_and(|c| c.peer_finished);
                    if peer_finished {
                        self.mark_dirty(token);
                    } else {
                        // Edge-triggered readiness may have fired while the
                        // connection was held: read until the socket is
                        // empty (io_uring: receive again if it stopped).
                        self.read_connection(token, true);
                    }
                }
                framing => self.settle(token, framing),
            }
        }
    }
}
