//! The write path: answers into connections' output buffers, one `send`
//! per connection and iteration (epoll: now; io_uring: one request, all of
//! the iteration's submitted together), and the node-wide bound on unsent
//! output.

use super::Worker;
use crate::protocol::frame::{push_frame, Header, HEADER_BYTES};
use crate::server::capture::Direction;
use crate::server::cross::Origin;
use crate::server::metrics::Guard;
use std::sync::atomic::Ordering;

impl Worker {
    /// Answers a request of connection `token` here and now.
    pub(super) fn answer(
        &mut self,
        token: usize,
        op_code: u8,
        status_code: u8,
        request_id: u32,
        body: &[u8],
    ) {
        if let Some(conn) = self.conns.get_mut(token) {
            push_frame(&mut conn.output, op_code, status_code, request_id, body);
            self.metrics.answered(op_code, status_code);
        }
    }

    /// Puts one answer frame where its request came from.
    pub(super) fn deliver(&mut self, origin: Origin, frame: &[u8]) {
        let header = frame
            .first_chunk::<HEADER_BYTES>()
            .map(Header::read)
            .unwrap_or_default();
        self.metrics.answered(header.opcode, header.status);
        match origin {
            Origin::Tcp { token, generation } => {
                let token = token as usize;
                if let Some(conn) = self.conns.get_mut(token) {
                    if conn.generation == generation {
                        conn.output.extend_from_slice(frame);
                        if !conn.queued_for_write {
                            conn.queued_for_write = true;
                            self.dirty.push(token);
                        }
                    }
                }
            }
            Origin::Udp { datagram, slot } => {
                self.deliver_datagram_answer(datagram as usize, slot, frame);
            }
            Origin::Enum { query } => self.deliver_enum_answer(query as usize, frame),
            Origin::Sip { pending } => self.deliver_sip_answer(pending as usize, frame),
        }
    }

    /// Delivers an answer with an empty body (an error status) to
    /// `origin`, building it in the loop's scratch buffer: no allocation.
    pub(super) fn deliver_status(&mut self, origin: Origin, op: u8, code: u8, request_id: u32) {
        let mut frame = std::mem::take(&mut self.scratch);
        frame.clear();
        push_frame(&mut frame, op, code, request_id, &[]);
        self.deliver(origin, &frame);
        self.scratch = frame;
    }

    /// Queues connection `token` for this iteration's writes.
    pub(super) fn mark_dirty(&mut self, token: usize) {
        if let Some(conn) = self.conns.get_mut(token) {
            if !conn.queued_for_write {
                conn.queued_for_write = true;
                self.dirty.push(token);
            }
        }
    }

    /// Sends each queued connection's answers, closes what is finished or
    /// must be cut off, and counts what stays unsent.
    pub(super) fn write_dirty(&mut self) {
        let limit = self.shared.config.limits.output_buffer_bytes_max;
        let mut dirty = std::mem::take(&mut self.dirty);
        for &token in &dirty {
            let Some(conn) = self.conns.get_mut(token) else {
                continue;
            };
            conn.queued_for_write = false;
            let mut broken = false;
            match &mut self.io {
                super::Backend::Epoll(_) => {
                    while conn.sent < conn.output.len() {
                        match super::epoll::send(conn) {
                            super::epoll::Sent::Bytes(n) => {
                                if self.shared.capture.on() {
                                    let direction = Direction::ToClient;
                                    let at = super::capture_offset(
                                        &mut self.capture_offsets,
                                        token,
                                        direction,
                                        n,
                                    );
                                    self.shared.capture.tcp(
                                        super::capture_key(self.index, token, conn.generation),
                                        (conn.peer, self.tcp_local),
                                        direction,
                                        at,
                                        &conn.output[conn.sent..conn.sent + n],
                                    );
                                }
                                conn.sent += n;
                            }
                            super::epoll::Sent::Full => break,
                            super::epoll::Sent::Broken => {
                                broken = true;
                                break;
                            }
                        }
                    }
                }
                // One send request, submitted with the next wait; its
                // completion moves `sent` on (`uring::sent`).
                super::Backend::Uring(uring) => broken = !uring.send(token, conn),
            }
            conn.reset_output();
            let pending = conn.pending_output();
            self.output_bytes = self.output_bytes + pending - conn.output_counted;
            conn.output_counted = pending;
            // A client that stops reading is cut off once its answers pile
            // up past the limit; nobody else waits for it.
            let cut_off = pending > limit;
            if cut_off {
                self.metrics.guard(Guard::UnreadOutput, 1);
            }
            // Answers still owed by another core or the log must arrive
            // first.
            if broken || cut_off || conn.finished() {
                self.close(token);
            }
        }
        dirty.clear();
        self.dirty = dirty;
    }

    /// Publishes this loop's unsent output into the node-wide total, once
    /// per iteration.
    pub(super) fn publish_output(&mut self) {
        let (now, before) = (self.output_bytes, self.output_bytes_published);
        if now > before {
            self.shared
                .output_bytes
                .fetch_add(now - before, Ordering::Relaxed);
        } else if now < before {
            self.shared
                .output_bytes
                .fetch_sub(before - now, Ordering::Relaxed);
        }
        self.output_bytes_published = now;
    }
}
