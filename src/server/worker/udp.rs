//! UDP: a datagram holds LOOKUP frames back to back; its answer datagram
//! holds their answers in the same order, sent once the last one (perhaps
//! from another core) is in. Only switch networks are answered.

use super::{Worker, DATAGRAMS_PER_EVENT, LOOKUPS_PER_DATAGRAM_MAX, LOOKUP_ANSWER_BYTES};
use crate::protocol::codec;
use crate::protocol::frame::{next_frame, HEADER_BYTES};
use crate::protocol::{opcode, status};
use crate::server::capture::Direction;
use crate::server::cross::Origin;
use crate::server::dispatch;
use crate::server::metrics::Guard;
use std::io::ErrorKind;
use std::net::SocketAddr;

/// A UDP datagram whose lookups are being answered.
pub(super) struct PendingDatagram {
    pub(super) peer: SocketAddr,
    pub(super) answers: Vec<([u8; LOOKUP_ANSWER_BYTES], u8)>,
    pub(super) remaining: usize,
}

impl Worker {
    /// Reads up to `DATAGRAMS_PER_EVENT` datagrams. Readiness is edge
    /// triggered: if the socket may hold more, `udp_more` makes the loop
    /// come back for them next iteration without waiting for a new arrival.
    pub(super) fn read_datagrams(&mut self) {
        self.udp_more = false;
        for _ in 0..DATAGRAMS_PER_EVENT {
            let Some(socket) = self.udp.as_ref() else {
                return;
            };
            let (length, peer) = match socket.recv_from(&mut self.datagram_buffer) {
                Ok(received) => received,
                Err(error) if error.kind() == ErrorKind::WouldBlock => return,
                Err(_) => return,
            };
            let buffer = std::mem::take(&mut self.datagram_buffer);
            self.datagram_arrived(&buffer[..length], peer);
            self.datagram_buffer = buffer;
        }
        self.udp_more = true;
    }

    /// Serves a datagram from `peer` (epoll: read into the loop's buffer;
    /// io_uring: in place in a provided buffer), if `peer` is on a switch
    /// network.
    pub(super) fn datagram_arrived(&mut self, buffer: &[u8], peer: SocketAddr) {
        if !self.is_switch_network(peer) {
            return;
        }
        if self.shared.capture.on() {
            self.shared
                .capture
                .udp(peer, self.udp_local, Direction::FromClient, buffer);
        }
        let length = buffer.len();
        let frame_max = self.shared.config.limits.request_frame_bytes_max;
        let mut frames = Vec::new();
        let mut offset = 0;
        while offset < length {
            match next_frame(&buffer[offset..length], frame_max) {
                Ok(Some((header, frame))) if frames.len() < LOOKUPS_PER_DATAGRAM_MAX => {
                    frames.push((header, offset + HEADER_BYTES, offset + frame.len()));
                    offset += frame.len();
                }
                _ => break,
            }
        }
        if let Some(rate) = self.shared.udp_rate.as_ref() {
            // Whole datagrams are answered or dropped: a partial answer
            // would look like lost lookups. Nothing is sent back for a
            // dropped one: an answer would make the node an amplifier for
            // whoever spoofs the source.
            let wanted = u32::try_from(frames.len()).unwrap_or(u32::MAX);
            if rate.take(peer.ip(), self.now_s, wanted) < wanted {
                self.metrics.guard(Guard::UdpRateLimited, u64::from(wanted));
                return;
            }
        }
        if !frames.is_empty() && frames.len() <= usize::from(u16::MAX) {
            let key = self.datagrams.insert(PendingDatagram {
                peer,
                answers: vec![([0u8; LOOKUP_ANSWER_BYTES], 0); frames.len()],
                remaining: frames.len(),
            });
            let datagram = u32::try_from(key).unwrap_or(u32::MAX);
            for (slot, (header, body_start, body_end)) in frames.into_iter().enumerate() {
                // At most u16::MAX frames, checked above.
                let slot = u16::try_from(slot).unwrap_or(u16::MAX);
                let origin = Origin::Udp { datagram, slot };
                let body = &buffer[body_start..body_end];
                let checked = if header.opcode != opcode::LOOKUP {
                    Err(status::UNKNOWN_OPCODE)
                } else if body.len() != codec::LOOKUP_BYTES {
                    Err(status::BAD_FRAME)
                } else {
                    codec::decode_lookup(body)
                        .map_err(|e| e.status)
                        .and_then(|(query, _)| dispatch::check_lookup(&query, self.policy))
                };
                match checked {
                    Ok(query) => self.route_lookup(origin, header.request_id, query),
                    Err(code) => {
                        self.deliver_status(origin, header.opcode, code, header.request_id);
                    }
                }
            }
        }
    }

    pub(super) fn deliver_datagram_answer(&mut self, datagram: usize, slot: u16, frame: &[u8]) {
        let Some(pending) = self.datagrams.get_mut(datagram) else {
            return;
        };
        let (bytes, length) = &mut pending.answers[usize::from(slot)];
        let n = frame.len().min(LOOKUP_ANSWER_BYTES);
        bytes[..n].copy_from_slice(&frame[..n]);
        // n <= 44: fits u8.
        *length = u8::try_from(n).unwrap_or(0);
        pending.remaining -= 1;
        if pending.remaining == 0 {
            let pending = self.datagrams.remove(datagram);
            self.send_datagram(&pending);
        }
    }

    pub(super) fn send_datagram(&mut self, pending: &PendingDatagram) {
        let mut datagram = Vec::with_capacity(pending.answers.len() * LOOKUP_ANSWER_BYTES);
        for (bytes, length) in &pending.answers {
            datagram.extend_from_slice(&bytes[..usize::from(*length)]);
        }
        if let Some(socket) = self.udp.as_ref() {
            // UDP: an answer that cannot be sent now is lost, as the switch
            // expects; it retries on its own timer.
            let sent = socket.send_to(&datagram, pending.peer);
            if sent.is_ok() && self.shared.capture.on() {
                self.shared.capture.udp(
                    pending.peer,
                    self.udp_local,
                    Direction::ToClient,
                    &datagram,
                );
            }
        }
    }
}
