//! TCP stream reassembly, one direction of one connection at a time: from
//! segments as captured (out of order, retransmitted, overlapping, some
//! missing) to the byte stream the receiver read, in order, with the holes
//! marked.
//!
//! Positions are kept as offsets into the stream (a `u64` that never wraps);
//! a segment's sequence number becomes an offset by its signed distance
//! from the next expected sequence number, so streams longer than 4 GiB and
//! sequence numbers that wrap read correctly. A capture that starts
//! mid-stream starts the stream at the first segment seen.
//!
//! Memory is bounded: segments that arrive ahead of a hole are held up to
//! `PENDING_BYTES_MAX`; beyond that the hole is declared lost (a `Gap`)
//! and the stream goes on from the first held segment.

use std::collections::BTreeMap;

/// Bytes one direction may hold ahead of a hole before the hole is given
/// up as lost.
pub const PENDING_BYTES_MAX: usize = 1024 * 1024;
/// Segments one direction may hold ahead of a hole.
pub const PENDING_SEGMENTS_MAX: usize = 4096;

/// What reassembly hands on, in stream order.
#[derive(Clone, PartialEq, Eq, Debug)]
pub enum Piece {
    /// Bytes that follow the previous piece directly.
    Data {
        /// Capture time of the segment that carried them.
        time_ns: u64,
        /// The bytes.
        bytes: Vec<u8>,
    },
    /// Bytes the capture does not hold (never captured, or given up).
    Gap {
        /// How many.
        bytes: u64,
    },
}

/// One direction of a TCP connection.
#[derive(Default, Debug)]
pub struct HalfStream {
    /// The wire sequence number of the next byte in order.
    next_seq: Option<u32>,
    /// Stream offset of the next byte in order.
    delivered: u64,
    /// Segments ahead of a hole, by stream offset.
    pending: BTreeMap<u64, (u64, Vec<u8>)>,
    pending_bytes: usize,
    /// A SYN was seen: the stream is read from its first byte.
    pub from_start: bool,
    /// A FIN or RST was seen.
    pub closed: bool,
    /// Bytes seen twice (retransmissions and overlaps).
    pub repeated_bytes: u64,
    /// Holes declared (each a `Gap` piece).
    pub gaps: u64,
}

impl HalfStream {
    /// Takes one segment; appends to `out` whatever it makes readable.
    pub fn segment(
        &mut self,
        time_ns: u64,
        seq: u32,
        syn: bool,
        fin_or_rst: bool,
        payload: &[u8],
        out: &mut Vec<Piece>,
    ) {
        let mut data_seq = seq;
        if syn {
            // The SYN takes one sequence number before the first byte.
            data_seq = seq.wrapping_add(1);
            if self.next_seq.is_none() {
                self.next_seq = Some(data_seq);
                self.from_start = true;
            }
        }
        if fin_or_rst {
            self.closed = true;
        }
        if payload.is_empty() {
            return;
        }
        let next_seq = *self.next_seq.get_or_insert(data_seq);
        // Signed distance: a retransmission is a little behind, a segment
        // after a hole a little ahead, whatever the wrap.
        let distance = i64::from(data_seq.wrapping_sub(next_seq) as i32);
        let Some(offset) = self.delivered.checked_add_signed(distance) else {
            self.repeated_bytes += payload.len() as u64;
            return;
        };
        if offset > self.delivered {
            self.hold(offset, time_ns, payload, out);
        } else {
            self.deliver(offset, time_ns, payload, out);
            self.drain(out);
        }
    }

    /// Gives up every hole that remains (the capture ended) and hands on
    /// what was held behind them.
    pub fn finish(&mut self, out: &mut Vec<Piece>) {
        while let Some(&first) = self.pending.keys().next() {
            self.skip_to(first, out);
            self.drain(out);
        }
    }

    /// Hands on the part of a segment at `offset` (at or before
    /// `delivered`) that is new.
    fn deliver(&mut self, offset: u64, time_ns: u64, payload: &[u8], out: &mut Vec<Piece>) {
        let seen = usize::try_from(self.delivered - offset).unwrap_or(usize::MAX);
        if seen >= payload.len() {
            self.repeated_bytes += payload.len() as u64;
            return;
        }
        self.repeated_bytes += seen as u64;
        let fresh = &payload[seen..];
        self.advance(fresh.len() as u64);
        out.push(Piece::Data {
            time_ns,
            bytes: fresh.to_vec(),
        });
    }

    fn hold(&mut self, offset: u64, time_ns: u64, payload: &[u8], out: &mut Vec<Piece>) {
        let held = self.pending.entry(offset).or_insert((time_ns, Vec::new()));
        if held.1.len() < payload.len() {
            self.pending_bytes += payload.len() - held.1.len();
            *held = (time_ns, payload.to_vec());
        } else {
            self.repeated_bytes += payload.len() as u64;
        }
        while self.pending_bytes > PENDING_BYTES_MAX || self.pending.len() > PENDING_SEGMENTS_MAX {
            let Some(&first) = self.pending.keys().next() else {
                break;
            };
            self.skip_to(first, out);
            self.drain(out);
        }
    }

    /// Hands on every held segment that now joins the stream.
    fn drain(&mut self, out: &mut Vec<Piece>) {
        while let Some(entry) = self.pending.first_entry() {
            if *entry.key() > self.delivered {
                return;
            }
            let (offset, (time_ns, payload)) = entry.remove_entry();
            self.pending_bytes -= payload.len();
            self.deliver(offset, time_ns, &payload, out);
        }
    }

    /// Declares the bytes up to `offset` lost.
    fn skip_to(&mut self, offset: u64, out: &mut Vec<Piece>) {
        if offset > self.delivered {
            let missing = offset - self.delivered;
            self.advance(missing);
            self.gaps += 1;
            out.push(Piece::Gap { bytes: missing });
        }
    }

    fn advance(&mut self, bytes: u64) {
        self.delivered += bytes;
        // Sequence numbers count modulo 2^32: the truncation is the wrap.
        let step = bytes as u32;
        self.next_seq = self.next_seq.map(|seq| seq.wrapping_add(step));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stream(pieces: &[Piece]) -> (Vec<u8>, u64) {
        let mut bytes = Vec::new();
        let mut gaps = 0;
        for piece in pieces {
            match piece {
                Piece::Data { bytes: data, .. } => bytes.extend_from_slice(data),
                Piece::Gap { bytes: missing } => gaps += missing,
            }
        }
        (bytes, gaps)
    }

    #[test]
    fn reordered_overlapping_and_wrapping_segments_read_in_order() {
        let mut half = HalfStream::default();
        let mut out = Vec::new();
        let isn = u32::MAX - 3;
        half.segment(1, isn, true, false, b"", &mut out);
        half.segment(2, isn.wrapping_add(5), false, false, b"efgh", &mut out);
        half.segment(3, isn.wrapping_add(1), false, false, b"abc", &mut out);
        half.segment(4, isn.wrapping_add(2), false, false, b"bcd", &mut out);
        half.segment(5, isn.wrapping_add(1), false, false, b"abc", &mut out);
        assert_eq!(stream(&out), (b"abcdefgh".to_vec(), 0));
        assert!(half.from_start);
        assert_eq!(half.repeated_bytes, 2 + 3);
    }

    #[test]
    fn a_hole_left_at_the_end_becomes_a_gap() {
        let mut half = HalfStream::default();
        let mut out = Vec::new();
        half.segment(1, 100, false, false, b"ab", &mut out);
        half.segment(2, 105, false, false, b"fg", &mut out);
        half.finish(&mut out);
        assert_eq!(stream(&out), (b"abfg".to_vec(), 3));
        assert!(!half.from_start);
    }
}
